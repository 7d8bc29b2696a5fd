"""Property-based tests (hypothesis) of the Avro codec and the fast prediction encoder: any
telemetry record survives a round trip in both framings; any bytes — random, or a valid record
cut short, grown or with a byte changed — decode to a record or raise DecodeError, never anything
else; the prediction built from the telemetry bytes equals a full encode for any record; the
reader compiled from each schema (schemas/compiled.py) reads what fastavro reads, record for
record, and accepts no damaged body that fastavro would read differently; the codec with its
compiled writer writes fastavro's bytes for any record and refuses what fastavro refuses."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_NAMES, DecodeError, EncodeError, RegistryError, load_schema
from schemas.codec import AvroCodec, _strip_logical_types
from schemas.fields import enum_symbols
from streams.scoring.batch import _prediction
from streams.scoring.fastencode import PredictionEncoder

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.text(max_size=60)
MODES = enum_symbols("telemetry", "mode")


def telemetry() -> st.SearchStrategy[dict[str, Any]]:
    """Any value the telemetry schema allows (not only plausible ones)."""
    return st.fixed_dictionaries({
        "event_id": TEXT, "battery_id": TEXT, "timestamp": LONG, "seq": LONG,
        "soc": DOUBLE, "soh": DOUBLE, "voltage": DOUBLE, "current": DOUBLE, "temperature": DOUBLE,
        "charge_cycles": INT, "power_consumption": DOUBLE,
        "ambient_temperature": st.none() | DOUBLE, "cell_voltage_min": st.none() | DOUBLE,
        "cell_voltage_max": st.none() | DOUBLE, "service_days": st.none() | DOUBLE,
        "mode": st.sampled_from(MODES),
    })


class MemoryRegistry:
    """A schema registry in a dict (the codec's registry interface), for the Confluent framing."""

    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}

    def register(self, subject: str, schema: str) -> int:
        for schema_id, known in self.schemas.items():
            if known == schema:
                return schema_id
        self.schemas[len(self.schemas) + 1] = schema
        return len(self.schemas)

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self.schemas:  # as the real registry answers an unknown id
            raise RegistryError(f"schema {schema_id} not found", status=404)
        return self.schemas[schema_id]


SINGLE = AvroCodec("telemetry")
CONFLUENT = AvroCodec("telemetry", topic="ev.telemetry.v1", registry=MemoryRegistry())  # type: ignore[arg-type]
PREDICTION = AvroCodec("prediction")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return bool(a == b)


@given(telemetry())
def test_any_telemetry_record_survives_a_round_trip_in_both_framings(record: dict[str, Any]) -> None:
    for codec in (SINGLE, CONFLUENT):
        back = codec.decode(codec.encode(record))
        assert set(back) == set(record)
        assert all(_same(back[k], record[k]) for k in record), (back, record)
    assert CONFLUENT.decode(SINGLE.encode(record)).keys() == record.keys()  # readers take both


def _decodes_or_refuses(data: bytes) -> None:
    try:
        record = CONFLUENT.decode(data)
    except DecodeError as exc:
        assert str(exc)  # a reason for the dead letter
    else:
        assert set(record) >= {"event_id", "battery_id", "timestamp"}


@example(b"\x00\x00\x00\x00\x00")  # a Confluent header naming schema id 0, which nobody registered
@example(b"\xc3\x01" + bytes(8))  # a single-object header with an unknown fingerprint
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@given(st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header_decode_or_raise_decode_error(body: bytes) -> None:
    _decodes_or_refuses(SINGLE.header + body)
    _decodes_or_refuses(CONFLUENT.header + body)


def _damage(encoded: bytes, data: st.DataObject, keep: int) -> tuple[str, bytes]:
    """``encoded`` cut short, grown or with one byte changed (not in its first ``keep`` bytes)."""
    value = bytearray(encoded)
    how = data.draw(st.sampled_from(["cut", "grow", "flip"]))
    if how == "cut":
        return how, bytes(value[:data.draw(st.integers(keep, len(value) - 1))])
    if how == "grow":
        return how, bytes(value) + data.draw(st.binary(min_size=1, max_size=20))
    i = data.draw(st.integers(keep, len(value) - 1))
    value[i] ^= data.draw(st.integers(1, 255))
    return how, bytes(value)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(telemetry(), st.data())
def test_a_damaged_record_decodes_or_raises_decode_error(record: dict[str, Any], data: st.DataObject) -> None:
    how, damaged = _damage(SINGLE.encode(record), data, 0)
    _decodes_or_refuses(damaged)
    if how == "grow":  # a record with bytes after it is refused, not half-read
        try:
            SINGLE.decode(damaged)
        except DecodeError:
            pass
        else:
            raise AssertionError("trailing bytes were accepted")


@given(telemetry(), st.tuples(DOUBLE, DOUBLE, DOUBLE, DOUBLE, DOUBLE), TEXT, LONG)
def test_the_prediction_built_from_the_telemetry_bytes_equals_a_full_encode(
        record: dict[str, Any], scores: tuple[float, ...], version: str, scored_at: int) -> None:
    encoder = PredictionEncoder(SINGLE, PREDICTION)
    raw = SINGLE.encode(record)
    decoded = SINGLE.decode(raw)
    fast = encoder.reuse(raw, decoded, scores, encoder.tail(version, scored_at))
    assert fast == PREDICTION.encode(_prediction(decoded, scores, version, scored_at))


def test_a_foreign_schema_under_our_subject_is_refused_by_name() -> None:
    registry = MemoryRegistry()
    codec = AvroCodec("telemetry", topic="ev.telemetry.v1", registry=registry)  # type: ignore[arg-type]
    foreign = {"type": "record", "name": "Reading", "namespace": "com.acme",
               "fields": [{"name": "vin", "type": "string"}]}
    schema_id = registry.register("ev.telemetry.v1-value", json.dumps(foreign))
    try:
        codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + b"\x06WVW")
    except DecodeError as exc:
        assert "com.acme.Reading where ev.twin.Telemetry was expected" in str(exc)
    else:
        raise AssertionError("a foreign schema was read as telemetry")


def _strategy(node: Any) -> st.SearchStrategy[Any]:
    """Any value of an Avro type as our schemas use them (logical types read as their base)."""
    if isinstance(node, list):
        return st.one_of(*[_strategy(n) for n in node])
    if isinstance(node, dict):
        if node["type"] == "enum":
            return st.sampled_from(node["symbols"])
        return _strategy(node["type"])
    small = st.integers(-300, 300)  # one- and two-byte varints, both signs: the common case
    return {"null": st.none(), "boolean": st.booleans(), "int": small | INT, "long": small | LONG, "double": DOUBLE,
            "float": st.floats(width=32), "string": TEXT, "bytes": st.binary(max_size=40)}[node]


def _records(name: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = _strip_logical_types(load_schema(name))
    return st.fixed_dictionaries({f["name"]: _strategy(f["type"]) for f in schema["fields"]})


CODECS = {name: AvroCodec(name) for name in SCHEMA_NAMES}


def test_every_schema_of_ours_gets_a_compiled_reader() -> None:
    assert {n for n, c in CODECS.items() if c._fast is None} == set()


def _fastavro(codec: AvroCodec, data: bytes) -> dict[str, Any] | None:
    try:
        return codec._decode_resolved(data, 10, None)
    except DecodeError:
        return None


def _compiled(codec: AvroCodec, data: bytes) -> dict[str, Any] | None:
    try:
        return codec.decode(data)
    except DecodeError:
        return None


def _equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.sampled_from(sorted(SCHEMA_NAMES)), st.data())
def test_the_compiled_reader_reads_what_fastavro_reads(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    record = data.draw(_records(name))
    raw = codec.encode(record)
    fast, slow = _compiled(codec, raw), _fastavro(codec, raw)
    assert fast is not None and slow is not None
    assert _equal(fast, slow), (fast, slow)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.sampled_from(sorted(SCHEMA_NAMES)), st.data())
def test_a_damaged_body_the_compiled_reader_accepts_reads_as_fastavro_reads_it(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    how, damaged = _damage(codec.encode(data.draw(_records(name))), data, 10)  # the header stays
    fast = _compiled(codec, damaged)
    if fast is not None:  # stricter than fastavro is allowed; reading something else is not
        slow = _fastavro(codec, damaged)
        assert slow is not None and _equal(fast, slow), (fast, slow)
    if how in ("cut", "grow"):
        assert fast is None, "a body cut short or with bytes after it was accepted"


def test_every_schema_of_ours_gets_a_compiled_writer() -> None:
    assert {n for n, c in CODECS.items() if c._fast_write is None} == set()


def _fastavro_bytes(codec: AvroCodec, record: dict[str, Any]) -> bytes | str:
    import io

    import fastavro

    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, codec._reader, record, strict_allow_default=True)
    except Exception as exc:  # what fastavro refuses
        return type(exc).__name__
    return codec.header + out.getvalue()


def _odd(node: Any) -> st.SearchStrategy[Any]:
    """Values of another type than ``node`` that Python code might hand over by mistake."""
    return st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), DOUBLE, TEXT, st.binary(max_size=5),
                     st.just(float("nan")), st.sampled_from(["UNKNOWN", "nope"]))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(st.sampled_from(sorted(SCHEMA_NAMES)), st.data())
def test_the_codec_writes_what_fastavro_writes_and_refuses_what_it_refuses(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    record = data.draw(_records(name))
    how = data.draw(st.sampled_from(["as is", "odd value", "missing", "extra"]))
    field = data.draw(st.sampled_from(sorted(record)))
    if how == "odd value":
        record[field] = data.draw(_odd(field))
    elif how == "missing":
        del record[field]
    elif how == "extra":
        record["unknown_field"] = 1
    expected = _fastavro_bytes(codec, record)
    try:
        written: bytes | str = codec.encode(record)
    except EncodeError:
        written = "refused"
    if isinstance(expected, bytes):
        assert written == expected, (how, field)
    else:
        assert written == "refused", (how, field, expected)
    if how == "as is":  # the compiled writer itself takes every record of the schema
        assert codec._fast_write is not None and codec._fast_write(record, codec.header) == expected
