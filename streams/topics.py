"""The topic spec: every topic of the pipeline, in one place.

Topics carry Avro records keyed by ``battery_id``, so one battery's events stay in order on one
partition. The partition count (``EVTWIN_TOPIC_PARTITIONS``, default 12) caps how many score-agent
replicas can share the work.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000

TELEMETRY = "ev.telemetry.v1"
PREDICTIONS = "ev.predictions.v1"
ALERTS = "ev.alerts.v1"
TELEMETRY_DLQ = "ev.telemetry.dlq.v1"
GROUND_TRUTH = "ev.groundtruth.v1"
COMMANDS = "ev.commands.v1"
REPORTED = "ev.reported.v1"
ALERTS_DLQ = "ev.alerts.dlq.v1"
GROUND_TRUTH_DLQ = "ev.groundtruth.dlq.v1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, the schema of its values, and its configuration.

    Attributes:
        name: Topic name, ``<domain>.<what>.v<major>``.
        schema: Name of the Avro schema of its values (see :data:`schemas.SCHEMA_NAMES`).
        partitions: Number of partitions.
        retention_ms: How long records are kept, milliseconds.
        cleanup_policy: ``delete`` or ``compact``.
        doc: What the topic carries.
    """

    name: str
    schema: str
    partitions: int
    retention_ms: int
    cleanup_policy: str
    doc: str

    @property
    def config(self) -> dict[str, str]:
        """Topic-level configuration sent with CreateTopics."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def topic_specs(partitions: int = 12) -> list[TopicSpec]:
    """Return the spec of every topic, with ``partitions`` partitions each."""
    return [
        TopicSpec(TELEMETRY, "telemetry", partitions, 7 * DAY_MS, "delete",
                  "Battery telemetry from the simulator, devices (MQTT ingest) and vehicles."),
        TopicSpec(PREDICTIONS, "prediction", partitions, 7 * DAY_MS, "delete",
                  "One prediction per telemetry event: RUL with band, failure risk, anomaly."),
        TopicSpec(ALERTS, "alert", partitions, 30 * DAY_MS, "delete",
                  "Alert episodes: OPENED, then RESOLVED."),
        TopicSpec(TELEMETRY_DLQ, "dead_letter", partitions, 30 * DAY_MS, "delete",
                  "Telemetry that could not be decoded or failed validation, with the reason."),
        TopicSpec(GROUND_TRUTH, "ground_truth", partitions, 7 * DAY_MS, "delete",
                  "The simulator's true state per reading; for online accuracy, never a model input."),
        TopicSpec(COMMANDS, "command", partitions, 30 * DAY_MS, "delete",
                  "Desired state of a pack (usage, climate, charging policy, injected fault), from the API."),
        TopicSpec(REPORTED, "command_reported", partitions, 30 * DAY_MS, "delete",
                  "The desired state a pack applied, reported back by the simulator."),
        TopicSpec(ALERTS_DLQ, "dead_letter", partitions, 30 * DAY_MS, "delete",
                  "Alerts a notifier (e-mail, webhook) finally failed to deliver, with the reason."),
        TopicSpec(GROUND_TRUTH_DLQ, "dead_letter", partitions, 30 * DAY_MS, "delete",
                  "Ground truth the sinks could not decode or use (NaN, a bad id), with the reason."),
    ]


def state_topic_specs(app_id: str, partitions: int = 12) -> list[TopicSpec]:
    """The changelog topics of the partition state of app ``app_id`` (compacted; partition ``p``
    holds the state of source partition ``p``, so their counts must match)."""
    return [
        TopicSpec(f"{app_id}-alerts-changelog", "json", partitions, -1, "compact",
                  "Alert episodes per (battery, rule), JSON; the score workers' partition state."),
        TopicSpec(f"{app_id}-twin-changelog", "json", partitions, -1, "compact",
                  "The twin's state per battery (models.state, packed); the score workers' partition state."),
    ]


def spec_for(name: str, partitions: int = 12) -> TopicSpec | None:
    """Return the spec of topic ``name``, or ``None`` when it is not one of ours."""
    return next((t for t in topic_specs(partitions) if t.name == name), None)


__all__ = [
    "ALERTS", "ALERTS_DLQ", "COMMANDS", "GROUND_TRUTH", "GROUND_TRUTH_DLQ", "REPORTED", "PREDICTIONS", "TELEMETRY", "TELEMETRY_DLQ",
    "TopicSpec", "spec_for", "state_topic_specs", "topic_specs",
]
