"""Per-battery state kept by the score workers, partition by partition: alert episodes."""
