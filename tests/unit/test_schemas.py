"""The Avro contracts: docs with units, golden bytes of both framings, typed decode errors, and
schema evolution that cannot break existing readers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas import SCHEMA_NAMES, DecodeError, EncodeError, load_schema, published_versions
from schemas.codec import AvroCodec, fingerprint
from schemas.compat import check
from tests.support.golden import GOLDEN, TELEMETRY


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_field_has_a_doc_and_timestamps_are_millis(name: str) -> None:
    schema = load_schema(name)
    assert schema.get("doc")
    for field in schema["fields"]:
        assert len(field.get("doc", "")) > 10, f"{name}.{field['name']} lacks a doc"
        if field["name"] in ("timestamp", "scored_at", "opened_at", "failed_at"):
            assert field["type"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_single_object_golden_bytes() -> None:
    data = AvroCodec("telemetry").encode(TELEMETRY)
    canonical = to_parsing_canonical_form(load_schema("telemetry"))
    # Header: C3 01 + CRC-64-AVRO fingerprint, little-endian (cross-checked with fastavro's).
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    assert data.hex() == (GOLDEN / "telemetry.single-object.hex").read_text().strip()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"garbage bytes", "not an Avro record"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown schema fingerprint"),
        (b"\xc3\x01" + b"\x12\x34", "not an Avro record"),
    ],
)
def test_decode_rejects_what_it_cannot_read(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        AvroCodec("telemetry").decode(data)


def test_decode_names_the_foreign_schema_and_catches_truncation() -> None:
    data = AvroCodec("telemetry").encode(TELEMETRY)
    with pytest.raises(DecodeError, match="ev.twin.Telemetry where ev.twin.Prediction"):
        AvroCodec("prediction").decode(data)
    with pytest.raises(DecodeError, match="corrupt"):
        AvroCodec("telemetry").decode(data[:30])
    with pytest.raises(DecodeError, match="trailing bytes"):
        AvroCodec("telemetry").decode(data + b"\x00")


def test_encode_names_the_missing_field() -> None:
    record = dict(TELEMETRY)
    del record["soc"]
    with pytest.raises(EncodeError, match="soc"):
        AvroCodec("telemetry").encode(record)


def test_fingerprint_ignores_docs() -> None:
    schema = load_schema("telemetry")
    changed = copy.deepcopy(schema)
    changed["fields"][0]["doc"] = "another text"
    assert fingerprint(schema) == fingerprint(changed)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_current_schema_is_fully_compatible_with_every_published_version(name: str) -> None:
    """Old data stays readable by new readers, and new data by old readers (FULL)."""
    versions = published_versions(name)
    assert versions, f"{name} has no published version in schemas/published/"
    for old in versions:
        assert check(old, load_schema(name), "FULL") == []


def test_compatibility_check_catches_breaking_changes() -> None:
    old = load_schema("telemetry")
    added = copy.deepcopy(old)
    added["fields"].append({"name": "odometer_km", "type": "double", "doc": "km"})
    assert any("without a default" in p for p in check(old, added, "BACKWARD"))
    removed = copy.deepcopy(old)
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "soc"]
    assert check(old, removed, "BACKWARD") == []  # new readers ignore it...
    assert any("soc" in p for p in check(old, removed, "FORWARD"))  # ...old readers need it
    retyped = copy.deepcopy(old)
    next(f for f in retyped["fields"] if f["name"] == "battery_id")["type"] = "int"
    assert check(old, retyped, "BACKWARD")


def test_older_published_writer_is_resolved_to_the_current_reader(tmp_path: Path) -> None:
    """A record written with a published version decodes with today's codec."""
    import io

    import fastavro

    from schemas.codec import SINGLE_OBJECT_MAGIC

    old = published_versions("telemetry")[0]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), TELEMETRY)
    data = SINGLE_OBJECT_MAGIC + fingerprint(old) + body.getvalue()
    assert AvroCodec("telemetry").decode(data)["battery_id"] == "BATTERY_001"
