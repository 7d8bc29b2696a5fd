"""A decoder compiled from a flat record schema: the hot path of :meth:`schemas.codec.AvroCodec.decode`.

fastavro's ``schemaless_reader`` walks the parsed schema for every record (type dispatch, option
handling, a file object): 7.3 µs CPU per telemetry record here, the largest stage of the score
worker. For the records we read most (telemetry, predictions, alerts) every field is a primitive, an
enum or a union of ``null`` and a primitive, so Python source with one straight-line read per
field can be generated once per schema: 2.6–3.0 µs for the same record, equal to fastavro's result
(property-tested against it in ``tests/unit/test_codec_property.py``).

Only the current schema is compiled (records written with an older published version still go
through fastavro's schema resolution), and any other shape (arrays, maps, nested records, fixed,
unions of more than ``null`` and one type) compiles to ``None``: the codec then uses fastavro.

Corrupt input raises ``IndexError``, ``struct.error``, ``UnicodeDecodeError`` or ``ValueError``
(the codec turns each into a :class:`schemas.errors.DecodeError`); a body that ends early also
shows as a position past the end, which the codec checks as it does for fastavro. Varints are
read as fastavro's compiled reader reads them (64-bit, zig-zag); the reader is stricter than
fastavro on input no writer produces (varints longer than 10 bytes, negative lengths, enum or
union indexes out of range all raise).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

FlatReader = Callable[[bytes, int], tuple[dict[str, Any], int]]
"""``reader(data, offset) -> (record, end)``: the record whose body starts at ``offset``."""

_MASK64 = (1 << 64) - 1
_FIXED = {"double": ("<d", 8), "float": ("<f", 4)}


def _varint(var: str, ind: str) -> list[str]:
    """Read one zig-zag varint at ``p`` into ``var`` (one byte: the common case, inline)."""
    return [
        f"{ind}x = b[p]",
        f"{ind}p += 1",
        f"{ind}if x < 128:",
        f"{ind}    {var} = (x >> 1) ^ -(x & 1)",
        f"{ind}else:",
        f"{ind}    n = x & 127",
        f"{ind}    s = 7",
        f"{ind}    while True:",
        f"{ind}        x = b[p]",
        f"{ind}        p += 1",
        f"{ind}        n |= (x & 127) << s",
        f"{ind}        if x < 128:",
        f"{ind}            break",
        f"{ind}        s += 7",
        f"{ind}        if s > 63:",
        f"{ind}            raise ValueError('varint longer than 10 bytes')",
        f"{ind}    n &= {_MASK64}",
        f"{ind}    {var} = (n >> 1) ^ -(n & 1)",
    ]


def _primitive(kind: str, var: str, ind: str) -> list[str] | None:
    if kind in ("long", "int"):
        return _varint(var, ind)
    if kind in _FIXED:
        size = _FIXED[kind][1]
        return [f"{ind}{var} = _{kind}(b, p)[0]", f"{ind}p += {size}"]
    if kind == "boolean":
        return [f"{ind}{var} = b[p] != 0", f"{ind}p += 1"]
    if kind in ("string", "bytes"):
        take = "str(b[p:q], 'utf-8')" if kind == "string" else "bytes(b[p:q])"
        return _varint("n_", ind) + [
            f"{ind}if n_ < 0:",
            f"{ind}    raise ValueError('negative length')",
            f"{ind}q = p + n_",
            f"{ind}if q > len(b):",
            f"{ind}    raise ValueError('ends inside a {kind}')",
            f"{ind}{var} = {take}",
            f"{ind}p = q",
        ]
    return None


def _kind(node: Any) -> Any:
    """The type of a field without its annotations (``{"type": "long", ...}`` -> ``"long"``)."""
    if isinstance(node, dict) and node.get("type") not in ("enum", "record", "array", "map", "fixed"):
        return node["type"]
    return node


def compile_reader(schema: Mapping[str, Any]) -> FlatReader | None:
    """A reader for records of ``schema`` (logical types stripped: timestamps as int), or None
    when a field is not a primitive, an enum or a union of ``null`` and a primitive."""
    if schema.get("type") != "record":
        return None
    lines = ["def read(b, p):"]
    consts: dict[str, Any] = {f"_{k}": struct.Struct(fmt).unpack_from for k, (fmt, _) in _FIXED.items()}
    names: list[tuple[str, str]] = []
    ind = "    "
    for i, field in enumerate(schema["fields"]):
        var, kind = f"v{i}", _kind(field["type"])
        names.append((field["name"], var))
        if isinstance(kind, dict) and kind.get("type") == "enum":
            consts[f"E{i}"] = tuple(kind["symbols"])
            lines += _varint("k", ind) + [
                f"{ind}if k < 0:",
                f"{ind}    raise ValueError('negative enum index')",
                f"{ind}{var} = E{i}[k]",
            ]
            continue
        if isinstance(kind, list):
            kinds = [_kind(k) for k in kind]
            if len(kinds) != 2 or "null" not in kinds:
                return None
            null = kinds.index("null")
            body = _primitive(kinds[1 - null], var, ind + "    ")
            if body is None:
                return None
            lines += _varint("k", ind) + [
                f"{ind}if k == {null}:",
                f"{ind}    {var} = None",
                f"{ind}elif k == {1 - null}:",
                *body,
                f"{ind}else:",
                f"{ind}    raise ValueError('union index out of range')",
            ]
            continue
        body = _primitive(kind, var, ind) if isinstance(kind, str) else None
        if body is None:
            return None
        lines += body
    lines.append(f"{ind}return {{" + ", ".join(f"{name!r}: {var}" for name, var in names) + "}, p")
    namespace: dict[str, Any] = dict(consts)
    exec(compile("\n".join(lines), f"<reader of {schema.get('name')}>", "exec"), namespace)  # noqa: S102 - our own schema
    reader: FlatReader = namespace["read"]
    return reader


__all__ = ["FlatReader", "compile_reader"]
