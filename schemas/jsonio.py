"""JSON <-> Avro record conversion for people: ISO-8601 or epoch-millisecond timestamps in, ISO-8601
out; base64 for bytes. Used by ``evtwin topics produce`` and ``consume``."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

from schemas import EncodeError, load_schema


def _kinds(field_type: Any) -> set[str]:
    """The logical or primitive kinds a field can hold (looking through unions)."""
    types = field_type if isinstance(field_type, list) else [field_type]
    kinds = set()
    for t in types:
        if isinstance(t, dict):
            kinds.add(t.get("logicalType") or str(t.get("type")))
        else:
            kinds.add(str(t))
    return kinds


@cache
def _field_kinds(schema_name: str) -> dict[str, set[str]]:
    return {f["name"]: _kinds(f["type"]) for f in load_schema(schema_name)["fields"]}


def parse_timestamp(value: Any, field: str) -> int:
    """Return epoch milliseconds from an int (ms) or an ISO-8601 string (naive = UTC)."""
    if isinstance(value, bool):
        raise EncodeError(f"field {field!r}: expected a timestamp, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EncodeError(
                f"field {field!r}: {value!r} is not an ISO-8601 time (e.g. 2025-10-20T10:30:15.123Z) "
                "or epoch milliseconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    raise EncodeError(f"field {field!r}: expected a timestamp, got {type(value).__name__}")


def record_from_json(schema_name: str, obj: Any) -> dict[str, Any]:
    """Turn a decoded JSON object into a record of ``schema_name``, ready to encode.

    Telemetry without an ``event_id`` gets a fresh UUID. Missing fields without a default are
    reported by the encoder.
    """
    if not isinstance(obj, dict):
        raise EncodeError(f"expected a JSON object, got {type(obj).__name__}")
    record = dict(obj)
    kinds = _field_kinds(schema_name)
    unknown = sorted(set(record) - set(kinds))
    if unknown:
        raise EncodeError(f"unknown field(s) {', '.join(unknown)} for schema {schema_name}")
    if "event_id" in kinds and "event_id" not in record and schema_name == "telemetry":
        record["event_id"] = str(uuid.uuid4())
    for name, value in record.items():
        k = kinds[name]
        if value is None:
            continue
        if "timestamp-millis" in k:
            record[name] = parse_timestamp(value, name)
        elif "bytes" in k and isinstance(value, str):
            record[name] = base64.b64decode(value)
    return record


def record_to_json(schema_name: str, record: dict[str, Any]) -> dict[str, Any]:
    """Turn a decoded record into JSON-ready values (ISO-8601 UTC times, base64 bytes)."""
    kinds = _field_kinds(schema_name)
    out = {}
    for name, value in record.items():
        k = kinds.get(name, set())
        if value is not None and "timestamp-millis" in k and isinstance(value, int):
            value = datetime.fromtimestamp(value / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        out[name] = value
    return out


__all__ = ["parse_timestamp", "record_from_json", "record_to_json"]
