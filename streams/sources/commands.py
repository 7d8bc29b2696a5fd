"""The simulator's side of the twin's desired state: read ``ev.commands.v1``, apply each pack's
newest desired state to the simulated fleet, report what it applied on ``ev.reported.v1``.

The applier reads every partition of the commands topic from its beginning (no consumer group, no
committed offsets), so a restarted simulator applies the newest desired state of each pack again.
A command older than the version a pack already applied is skipped. A null field leaves that
value as it is. A command for a battery this simulator does not run is skipped without a report
(another simulator, or a real vehicle, may own it); one the fleet refuses is reported ``REJECTED``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from connectors.kafka import IdleRest
from models.physics.faults import FAULT_NAMES
from schemas.codec import AvroCodec
from schemas.errors import EvTwinError
from streams.topics import COMMANDS, REPORTED

log = logging.getLogger(__name__)

USAGE_PROFILES = ("private", "commuter", "commercial")
CLIMATES = ("cold", "temperate", "hot")
DESIRED_FIELDS = ("usage_profile", "climate", "max_soc", "dc_share", "fault")


def fleet_arguments(command: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :meth:`models.physics.fleet.Fleet.configure` for a command.

    Raises:
        ValueError: a value the fleet does not know (an unknown profile, climate or fault).
    """
    out: dict[str, Any] = {}
    if command.get("usage_profile") is not None:
        out["usage_profile"] = _index(USAGE_PROFILES, command["usage_profile"], "usage_profile")
    if command.get("climate") is not None:
        out["climate"] = _index(CLIMATES, command["climate"], "climate")
    if command.get("max_soc") is not None:
        out["max_soc"] = float(command["max_soc"]) / 100.0
    if command.get("dc_share") is not None:
        out["dc_share"] = float(command["dc_share"])
    if command.get("fault") is not None:
        out["fault"] = _index(FAULT_NAMES, command["fault"], "fault")
    return out


def _index(names: tuple[str, ...], value: str, field: str) -> int:
    try:
        return names.index(value)
    except ValueError:
        raise ValueError(f"{field} {value!r} is not one of {', '.join(names)}") from None


class CommandApplier:
    """Applies desired-state commands to a fleet and reports them.

    Args:
        consumer: A confluent-kafka consumer (its group is not used: partitions are assigned).
        producer: The simulator's producer, for the reports.
        command_codec: Codec of the ``command`` schema.
        reported_codec: Codec of the ``command_reported`` schema.
        partitions: Partitions of the commands topic.
    """

    def __init__(self, consumer: Any, producer: Any, command_codec: AvroCodec,
                 reported_codec: AvroCodec, partitions: int) -> None:
        self.consumer = consumer
        self.producer = producer
        self.command_codec = command_codec
        self.reported_codec = reported_codec
        self.applied_versions: dict[str, int] = {}
        self.applied = 0
        self.rejected = 0
        consumer.assign([TopicPartition(COMMANDS, p, OFFSET_BEGINNING) for p in range(partitions)])
        # Commands are rare: rest the consumer while the topic has nothing new (noida-db would
        # otherwise be fetched from back to back); a new command is applied at most ~0.5 s later.
        self.idle = IdleRest(consumer)

    def poll(self, fleet: Any, max_records: int = 1000) -> int:
        """Apply the commands that have arrived (without waiting); return how many were applied."""
        done = 0
        for msg in self.idle.consume(num_messages=max_records, timeout=0):
            if msg.error() is not None:
                log.warning("commands topic: %s", msg.error())
                continue
            try:
                command = self.command_codec.decode(msg.value())
            except EvTwinError as exc:
                log.error("undecodable command at %s[%d]@%d: %s", msg.topic(), msg.partition(),
                          msg.offset(), exc)
                continue
            done += self.apply(fleet, command)
        return done

    def apply(self, fleet: Any, command: dict[str, Any]) -> int:
        """Apply one command to ``fleet`` and report it; return 1 if applied, else 0."""
        battery_id, version = command["battery_id"], int(command["version"])
        if version <= self.applied_versions.get(battery_id, -1):
            return 0
        try:
            index = fleet.battery_ids.index(battery_id)
        except ValueError:
            log.debug("command for %s: not in this simulated fleet", battery_id)
            return 0
        try:
            fleet.configure(index, **fleet_arguments(command))
        except (ValueError, EvTwinError) as exc:
            self._report(command, "REJECTED", str(exc))
            self.rejected += 1
            return 0
        self.applied_versions[battery_id] = version
        self._report(command, "APPLIED", "")
        self.applied += 1
        log.info("applied desired state v%d to %s", version, battery_id)
        return 1

    def _report(self, command: dict[str, Any], status: str, message: str) -> None:
        record = {f: command.get(f) for f in DESIRED_FIELDS}
        record.update(command_id=command["command_id"], battery_id=command["battery_id"],
                      version=int(command["version"]), applied_at=int(time.time() * 1000),
                      status=status, message=message)
        self.producer.produce(REPORTED, self.reported_codec.encode(record),
                              command["battery_id"].encode())

    def close(self) -> None:
        self.consumer.close()


__all__ = ["CLIMATES", "DESIRED_FIELDS", "USAGE_PROFILES", "CommandApplier", "fleet_arguments"]
