"""The Confluent framing against the real schema registry of the embedded stack: the golden
telemetry record encodes to the registry's schema id plus the same Avro body as the single-object
framing, and decodes back from both framings."""

from __future__ import annotations

import json

import pytest

from schemas import DecodeError, load_schema
from schemas.codec import AvroCodec
from tests.support.golden import TELEMETRY


def test_confluent_golden_bytes_and_round_trip(stack) -> None:  # type: ignore[no-untyped-def]
    from schemas.registry import SchemaRegistryClient

    _, endpoints = stack
    registry = SchemaRegistryClient(endpoints.schema_registry_url)
    codec = AvroCodec("telemetry", topic="golden.test.v1", registry=registry)
    data = codec.encode(TELEMETRY)
    schema_id = registry.register("golden.test.v1-value", json.dumps(load_schema("telemetry")))
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    single = AvroCodec("telemetry").encode(TELEMETRY)
    assert data[5:] == single[10:]  # same Avro body, different framing
    # A reader with a registry reads both framings; one without reads single-object only.
    assert codec.decode(data) == codec.decode(single) == TELEMETRY
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        AvroCodec("telemetry").decode(data)
    with pytest.raises(DecodeError, match="unknown schema id 23552370"):
        codec.decode(b"\x00\x01garbage bytes")
