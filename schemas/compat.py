"""Static Avro schema-resolution check: can a reader with one schema read data written with another?

Implements the resolution rules of the Avro specification ("Schema Resolution") for the types our
contracts use: records (reader fields need a writer field or a default), enums (writer symbols must
be known to the reader, or the reader has a default), unions, arrays, maps, and the numeric and
string/bytes promotions. Used by the schema-evolution test and the embedded schema registry.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
    ("long", "double"), ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"]) if not isinstance(schema["type"], (dict, list)) else _type_name(schema["type"])


def _unwrap(schema: Any) -> Any:
    """A ``{"type": "string", "logicalType": ...}`` wrapper around a primitive, or a nested
    ``{"type": {...}}``, stands for its type."""
    while isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        schema = schema["type"]
    if isinstance(schema, dict) and schema["type"] not in ("record", "enum", "array", "map", "fixed"):
        return schema["type"]
    return schema


def incompatibilities(writer: Any, reader: Any, path: str = "") -> list[str]:
    """Return why a reader with schema ``reader`` cannot read data written with ``writer`` (empty
    when it can)."""
    writer, reader = _unwrap(writer), _unwrap(reader)
    here = path or "<root>"
    if isinstance(writer, list):
        return [p for branch in writer for p in incompatibilities(branch, reader, path)]
    if isinstance(reader, list):
        if any(not incompatibilities(writer, branch, path) for branch in reader):
            return []
        return [f"{here}: writer type {_type_name(writer)} matches no branch of the reader's union"]
    w, r = _type_name(writer), _type_name(reader)
    if w != r:
        return [] if (w, r) in _PROMOTIONS else [f"{here}: writer type {w} cannot be read as {r}"]
    if w == "record":
        return _record(writer, reader, path)
    if w == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{here}: reader enum lacks symbols {sorted(missing)} and has no default"]
    if w == "array":
        return incompatibilities(writer["items"], reader["items"], path + "[]")
    if w == "map":
        return incompatibilities(writer["values"], reader["values"], path + "{}")
    if w == "fixed" and writer.get("size") != reader.get("size"):
        return [f"{here}: fixed sizes differ"]
    return []


def _record(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[str]:
    problems = []
    if writer["name"].split(".")[-1] != reader["name"].split(".")[-1]:
        problems.append(f"{path or '<root>'}: record {writer['name']} is not {reader['name']}")
    written = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        name = f"{path}.{field['name']}" if path else field["name"]
        source = written.get(field["name"])
        if source is None:
            aliases = [written[a] for a in field.get("aliases", []) if a in written]
            source = aliases[0] if aliases else None
        if source is None:
            if "default" not in field:
                problems.append(f"{name}: new field without a default")
            continue
        problems.extend(incompatibilities(source["type"], field["type"], name))
    return problems


def check(old: Any, new: Any, level: str = "BACKWARD") -> list[str]:
    """Return the problems that a change from schema ``old`` to ``new`` causes under a
    compatibility ``level`` (``BACKWARD``: new readers read old data; ``FORWARD``: old readers read
    new data; ``FULL``: both; ``NONE``: anything goes)."""
    level = level.upper().removesuffix("_TRANSITIVE")
    problems = []
    if level in ("BACKWARD", "FULL"):
        problems += [f"new reader, old data: {p}" for p in incompatibilities(old, new)]
    if level in ("FORWARD", "FULL"):
        problems += [f"old reader, new data: {p}" for p in incompatibilities(new, old)]
    return problems


__all__ = ["check", "incompatibilities"]
