"""Avro codec for our topics: Avro single-object encoding, or the Confluent wire format.

Framing on the wire (``DESIGN.md``):

* **Single-object encoding** (Avro specification): ``C3 01`` + the 8-byte little-endian CRC-64-AVRO
  fingerprint of the writer schema's Parsing Canonical Form + the Avro binary body. Used when no
  schema registry is configured.
* **Confluent wire format**: ``00`` + the 4-byte big-endian schema id from the registry + the body.
  Used when a schema registry is configured (Redpanda ships one; Console then decodes the topics).

The decoder accepts both, resolves older published writer schemas to the current reader schema,
and raises :class:`~schemas.DecodeError` on anything else. Timestamps travel as ``timestamp-millis``
and are handed to Python as integers (milliseconds since the Unix epoch, UTC): the per-event path
does not pay for ``datetime`` objects.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from schemas import (
    SCHEMA_NAMES,
    DecodeError,
    EncodeError,
    RegistryError,
    load_schema,
    published_versions,
)
from schemas.compiled import compile_reader, compile_writer

if TYPE_CHECKING:
    from schemas.registry import SchemaRegistryClient

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

_CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_CRC64_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    """Return the CRC-64-AVRO fingerprint of ``data`` (Avro specification, "Schema Fingerprints")."""
    fp = _CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _CRC64_TABLE[(fp ^ byte) & 0xFF]
    return fp


def fingerprint(schema: Mapping[str, Any]) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of ``schema``'s canonical form."""
    canonical = to_parsing_canonical_form(dict(schema))
    return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")


def _strip_logical_types(node: Any) -> Any:
    """Return a copy of a schema without ``logicalType`` (timestamps decode as int milliseconds)."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def _parse(schema: Mapping[str, Any]) -> Any:
    return fastavro.parse_schema(_strip_logical_types(copy.deepcopy(dict(schema))), _force=True)


def full_name(schema: Mapping[str, Any]) -> str:
    """Return ``namespace.name`` of a record schema."""
    ns = schema.get("namespace")
    return f"{ns}.{schema['name']}" if ns else str(schema["name"])


@cache
def _known_fingerprints() -> dict[bytes, str]:
    """Fingerprints of every current and published schema, mapped to the schema's full name."""
    known: dict[bytes, str] = {}
    for name in SCHEMA_NAMES:
        for version in [*published_versions(name), load_schema(name)]:
            known[fingerprint(version)] = full_name(version)
    return known


class AvroCodec:
    """Encodes and decodes the records of one schema (and so of one topic).

    Args:
        schema_name: One of :data:`schemas.SCHEMA_NAMES`, e.g. ``"telemetry"``.
        topic: The topic the records travel on; names the registry subject (TopicNameStrategy:
            ``<topic>-value``). Required with a registry.
        registry: A schema registry client. With one, :meth:`encode` writes the Confluent wire
            format; without one, Avro single-object encoding.
    """

    def __init__(
        self,
        schema_name: str,
        *,
        topic: str | None = None,
        registry: SchemaRegistryClient | None = None,
    ) -> None:
        self.schema_name = schema_name
        self.schema = load_schema(schema_name)
        self.full_name = full_name(self.schema)
        self.topic = topic
        self.registry = registry
        if registry is not None and topic is None:
            raise ValueError("a topic is needed to encode with a schema registry")
        self._reader = _parse(self.schema)
        # Records of the current schema: a reader compiled from it (None: fastavro reads them).
        self._fast = compile_reader(_strip_logical_types(self.schema))
        self._fast_write = compile_writer(_strip_logical_types(self.schema))  # None: fastavro writes
        self._fingerprint = fingerprint(self.schema)
        self._header_single = SINGLE_OBJECT_MAGIC + self._fingerprint
        self._header_confluent: bytes | None = None
        # Writer schemas we can read, by single-object fingerprint: the current one and every
        # published version of the same record.
        self._writers: dict[bytes, Any] = {self._fingerprint: None}
        for version in published_versions(schema_name):
            fp = fingerprint(version)
            if fp != self._fingerprint:
                self._writers[fp] = _parse(version)
        self._writers_by_id: dict[int, Any] = {}

    @property
    def framing(self) -> str:
        """``"confluent"`` with a registry, else ``"single-object"``."""
        return "confluent" if self.registry is not None else "single-object"

    def _confluent_header(self) -> bytes:
        if self._header_confluent is None:
            assert self.registry is not None and self.topic is not None
            schema_id = self.registry.register(f"{self.topic}-value", json.dumps(self.schema))
            self._header_confluent = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._writers_by_id[schema_id] = None
        return self._header_confluent

    @property
    def header(self) -> bytes:
        """The framing header this codec writes (registers the schema on first use)."""
        return self._confluent_header() if self.registry is not None else self._header_single

    def current_body_offset(self, data: bytes) -> int | None:
        """Where the Avro body of ``data`` starts, if it was written with the current schema
        (the same bytes a fresh encode of its fields would give); ``None`` otherwise."""
        if data[:2] == SINGLE_OBJECT_MAGIC and data[2:10] == self._fingerprint:
            return 10
        if data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            schema_id = int.from_bytes(data[1:5], "big")
            if schema_id in self._writers_by_id and self._writers_by_id[schema_id] is None:
                return 5
        return None

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Return the framed Avro bytes of ``record``.

        Raises:
            EncodeError: when the record misses a field without default, has an unknown field, or
                holds a value of the wrong type.
        """
        header = self._confluent_header() if self.registry is not None else self._header_single
        if self._fast_write is not None:
            try:
                return self._fast_write(record, header)
            except Exception:  # noqa: S110 - not plainly the schema's: fastavro writes it or says why
                pass
        out = io.BytesIO()
        out.write(header)
        try:
            fastavro.schemaless_writer(out, self._reader, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"record does not match schema {self.full_name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Return the record in ``data``, resolved to the current schema.

        Raises:
            DecodeError: for empty or unframed bytes, an unknown or foreign schema, or a body that
                does not parse completely.
        """
        if not data:
            raise DecodeError("empty value: expected an Avro record")
        if self._fast is not None:  # the common case first: the current schema, compiled reader
            if data[:10] == self._header_single:
                return self._decode_fast(data, 10)
            if self._header_confluent is not None and data[:5] == self._header_confluent:
                return self._decode_fast(data, 5)
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer, offset = self._writer_for_fingerprint(bytes(data[2:10])), 10
        elif data[:1] == CONFLUENT_MAGIC and len(data) >= 5:
            writer, offset = self._writer_for_id(int.from_bytes(data[1:5], "big")), 5
        else:
            raise DecodeError(
                "not an Avro record: expected the single-object header C3 01 or the Confluent "
                f"magic byte 00, got {bytes(data[:4]).hex(' ')}"
            )
        if writer is None and self._fast is not None:
            return self._decode_fast(data, offset)
        return self._decode_resolved(data, offset, writer)

    def _decode_fast(self, data: bytes, offset: int) -> dict[str, Any]:
        """The compiled reader (:mod:`schemas.compiled`): a body of the current schema."""
        assert self._fast is not None
        try:
            record, end = self._fast(data, offset)
        except (IndexError, ValueError, struct.error) as exc:  # UnicodeDecodeError is a ValueError
            raise DecodeError(f"corrupt {self.full_name} body: {type(exc).__name__}: {exc}") from exc
        if end != len(data):
            raise DecodeError(f"{len(data) - end} trailing bytes after a {self.full_name} record")
        return record

    def _decode_resolved(self, data: bytes, offset: int, writer: Any) -> dict[str, Any]:
        """fastavro's reader: records of older schema versions (resolved to the current one),
        and schemas :func:`schemas.compiled.compile_reader` does not compile."""
        body = io.BytesIO(data)
        body.seek(offset)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self._reader, None)
            else:
                record = fastavro.schemaless_reader(body, writer, self._reader)
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"corrupt {self.full_name} body: {type(exc).__name__}: {exc}") from exc
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after a {self.full_name} record"
            )
        return record  # type: ignore[return-value]

    def _writer_for_fingerprint(self, fp: bytes) -> Any:
        try:
            return self._writers[fp]
        except KeyError:
            other = _known_fingerprints().get(fp)
            if other is not None:
                raise DecodeError(
                    f"record of schema {other} where {self.full_name} was expected"
                ) from None
            raise DecodeError(f"unknown schema fingerprint {fp.hex()}") from None

    def _writer_for_id(self, schema_id: int) -> Any:
        if schema_id in self._writers_by_id:
            return self._writers_by_id[schema_id]
        if self.registry is None:
            raise DecodeError(
                f"Confluent-framed record (schema id {schema_id}) but no schema registry is "
                "configured: set EVTWIN_SCHEMA_REGISTRY_URL"
            )
        try:
            writer_schema = json.loads(self.registry.schema_by_id(schema_id))
        except RegistryError as exc:
            if exc.status == 404:  # the record names a schema nobody registered: bad bytes
                raise DecodeError(f"unknown schema id {schema_id} in a Confluent-framed record") from exc
            raise  # the registry is unreachable: not the record's fault, so no dead letter
        if not isinstance(writer_schema, dict) or full_name(writer_schema) != self.full_name:
            name = full_name(writer_schema) if isinstance(writer_schema, dict) else "?"
            raise DecodeError(f"record of schema {name} where {self.full_name} was expected")
        parsed = None if fingerprint(writer_schema) == self._fingerprint else _parse(writer_schema)
        self._writers_by_id[schema_id] = parsed
        return parsed


__all__ = ["AvroCodec", "crc64_avro", "fingerprint", "full_name"]
