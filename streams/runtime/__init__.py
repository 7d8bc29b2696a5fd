"""What every stream app shares: the Faust app and its batch delivery, the one batch-agent runner
(handle → retry → ack), typed records and batches, codec lookup, metrics, logs and partition state."""
