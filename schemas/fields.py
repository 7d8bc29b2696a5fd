"""Field lists and enums read from the ``.avsc`` contracts, so that code never restates them.

Everything here is derived from the current schema files at import time: add a field to
``telemetry.avsc`` and the simulator, the scorer's carried fields and the enums follow.
"""

from __future__ import annotations

from typing import Any

from schemas import load_schema


def field_names(schema: str) -> tuple[str, ...]:
    """The field names of schema ``schema``, in schema order."""
    return tuple(f["name"] for f in load_schema(schema)["fields"])


def _base_type(avro_type: Any) -> Any:
    """``"double"`` for ``"double"`` and ``["null", "double"]``; the type itself otherwise."""
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return rest[0] if len(rest) == 1 else avro_type
    return avro_type


def fields_of_type(schema: str, avro_type: str) -> tuple[str, ...]:
    """Fields of ``schema`` whose (non-null) type is the primitive ``avro_type``."""
    return tuple(f["name"] for f in load_schema(schema)["fields"] if _base_type(f["type"]) == avro_type)


def field_defaults(schema: str) -> dict[str, Any]:
    """The fields of ``schema`` that have a default, with it (what a reader fills in for a record
    written without them)."""
    return {f["name"]: f["default"] for f in load_schema(schema)["fields"] if "default" in f}


def enum_symbols(schema: str, field: str) -> tuple[str, ...]:
    """The symbols of the enum type of ``field`` in ``schema``."""
    for f in load_schema(schema)["fields"]:
        if f["name"] == field:
            t = _base_type(f["type"])
            if isinstance(t, dict) and t.get("type") == "enum":
                return tuple(t["symbols"])
            raise ValueError(f"{schema}.{field} is not an enum")
    raise ValueError(f"{schema} has no field {field!r}")


TELEMETRY_FIELDS: tuple[str, ...] = field_names("telemetry")
"""Fields of a telemetry reading (``telemetry.avsc``), in order."""
TELEMETRY_FLOAT_FIELDS: tuple[str, ...] = fields_of_type("telemetry", "double")
"""Telemetry fields that are real numbers (required or nullable), in order."""
PREDICTION_FIELDS: tuple[str, ...] = field_names("prediction")
"""Fields of a prediction (``prediction.avsc``), in order."""
CARRIED_FIELDS: tuple[str, ...] = tuple(f for f in PREDICTION_FIELDS if f in TELEMETRY_FIELDS)
"""Telemetry fields a prediction carries unchanged, in prediction order."""
OPERATING_MODES: tuple[str, ...] = enum_symbols("telemetry", "mode")
"""Operating modes of a reading (``OperatingMode``); index = mode code, 0 = ``UNKNOWN``."""

__all__ = [
    "CARRIED_FIELDS", "OPERATING_MODES", "PREDICTION_FIELDS", "TELEMETRY_FIELDS",
    "TELEMETRY_FLOAT_FIELDS", "enum_symbols", "field_defaults", "field_names", "fields_of_type",
]
