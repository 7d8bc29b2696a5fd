"""Validation of telemetry records: one function that says what is wrong with a reading, shared by
the MQTT ingest bridge and the score agents."""

from __future__ import annotations

import math
import re
from typing import Any

BATTERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")
#: Longest event id accepted, characters (ours are 36-character UUIDs).
EVENT_ID_MAX = 128
#: Largest telemetry value accepted, bytes. A valid reading is about 150 bytes and cannot pass
#: ~400 (every string field is bounded); anything larger is refused before it is decoded.
MAX_RECORD_BYTES = 4096

#: Plausible ranges of the numeric fields: (low, high, unit). Outside = a broken sensor or a bug.
RANGES: dict[str, tuple[float, float, str]] = {
    "soc": (0.0, 100.0, "%"),
    "soh": (0.0, 100.0, "%"),
    "voltage": (0.0, 1000.0, "V"),
    "current": (-1500.0, 1500.0, "A"),
    "temperature": (-50.0, 150.0, "°C"),
    "charge_cycles": (0, 100_000, "cycles"),
    "power_consumption": (-1000.0, 1000.0, "kW"),
    "ambient_temperature": (-60.0, 70.0, "°C"),
    "cell_voltage_min": (0.0, 5.0, "V"),
    "cell_voltage_max": (0.0, 5.0, "V"),
    "service_days": (0.0, 36_500.0, "days"),
}


def telemetry_problem(record: dict[str, Any], now_ms: int, max_future_ms: int,
                      max_age_ms: int) -> str | None:
    """Return why ``record`` is not a valid reading, or ``None`` when it is.

    Args:
        record: A decoded telemetry record (timestamps in epoch milliseconds).
        now_ms: The current time, epoch milliseconds (UTC).
        max_future_ms: How far ahead of ``now_ms`` a reading may be, milliseconds.
        max_age_ms: How far behind ``now_ms`` a reading may be, milliseconds.
    """
    battery_id = record.get("battery_id")
    if not isinstance(battery_id, str) or not BATTERY_ID.fullmatch(battery_id):
        return (f"battery_id {battery_id!r} is not 1-50 characters of [A-Za-z0-9_.-] "
                "starting with a letter or digit")
    event_id = record.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        return "event_id is empty"
    if len(event_id) > EVENT_ID_MAX:
        return f"event_id of {len(event_id)} characters (at most {EVENT_ID_MAX})"
    for field, (low, high, unit) in RANGES.items():
        value = record.get(field)
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return f"{field} is {value} (not a finite number)"
        if not low <= value <= high:
            return f"{field} {value} {unit} outside {low:g}..{high:g} {unit}"
    vmin, vmax = record.get("cell_voltage_min"), record.get("cell_voltage_max")
    if vmin is not None and vmax is not None and vmin > vmax:
        return f"cell_voltage_min {vmin} V above cell_voltage_max {vmax} V"
    ts = record.get("timestamp")
    if not isinstance(ts, int):
        return f"timestamp {ts!r} is not epoch milliseconds"
    if ts > now_ms + max_future_ms:
        return f"timestamp {ts} is {(ts - now_ms) / 1000:.0f} s in the future (limit {max_future_ms / 1000:.0f} s)"
    if ts < now_ms - max_age_ms:
        return f"timestamp {ts} is {(now_ms - ts) / 1000:.0f} s old (limit {max_age_ms / 1000:.0f} s)"
    return None


def key_problem(key: bytes | None, battery_id: str) -> str | None:
    """Why a valid reading's Kafka record ``key`` does not fit it, or ``None``.

    The key must be the reading's ``battery_id`` (UTF-8): the partition follows the key, and a
    pack's twin state (``streams.state``) and alert episodes live in the partition its readings
    arrive on — a reading under another key, or none, would land elsewhere and start a second,
    empty twin of the same pack.
    """
    if key is not None and key == battery_id.encode():
        return None
    shown = "no key" if key is None else f"key {key[:60]!r}"
    return (f"{shown} for battery_id {battery_id!r}: the record key must be the battery_id, so that "
            "all readings of a pack share a partition (and its twin state)")


def oversized(value: bytes | None) -> str | None:
    """Why ``value`` is too large to be a telemetry record, or ``None``."""
    if value is not None and len(value) > MAX_RECORD_BYTES:
        return f"record of {len(value):,} bytes, more than the {MAX_RECORD_BYTES:,} a reading can take"
    return None


class DuplicateEvents:
    """Remembers the event ids a score worker has seen lately, to refuse a reading sent twice.

    A record delivered again — the same partition and offset, after a retried batch or a
    rebalance — is not a duplicate; the same event id at another offset is. Two generations of
    ``capacity`` ids each bound the memory: an id is remembered for between ``capacity`` and
    ``2 * capacity`` events of this replica (about 170 bytes per id). Partitions that move to
    another replica start there with no memory of their ids.

    Args:
        capacity: Ids per generation.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._current: dict[str, int] = {}
        self._previous: dict[str, int] = {}

    def problem(self, event_id: str, partition: int, offset: int) -> str | None:
        """Remember ``event_id`` at ``partition``/``offset``; return why it is a duplicate, or
        ``None`` the first time (and when the same record comes again)."""
        where = (offset << 16) | partition
        first = self._current.get(event_id)
        if first is None:
            first = self._previous.get(event_id)
            if first is None:
                if len(self._current) >= self.capacity:
                    self._previous, self._current = self._current, {}
                self._current[event_id] = where
                return None
        if first == where:
            return None
        return (f"duplicate event_id {event_id}: first seen at partition {first & 0xFFFF} "
                f"offset {first >> 16}")


__all__ = ["BATTERY_ID", "EVENT_ID_MAX", "MAX_RECORD_BYTES", "RANGES", "DuplicateEvents", "key_problem",
           "oversized", "telemetry_problem"]
