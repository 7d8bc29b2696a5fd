"""Property-based tests (hypothesis) of the telemetry validator: every plausible reading passes;
one implausible field — NaN or infinite, out of its range, a timestamp outside the window, a
battery id of an unknown format, an empty or overlong event id — is refused with a reason that names it; no record the codec can
decode makes the validator raise. An event id seen again at another offset is a duplicate; the
same record delivered again is not."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from streams.scoring.validation import (
    BATTERY_ID,
    EVENT_ID_MAX,
    MAX_RECORD_BYTES,
    RANGES,
    DuplicateEvents,
    key_problem,
    oversized,
    telemetry_problem,
)
from tests.unit.test_codec_property import telemetry

NOW_MS = 1_780_000_000_000
FUTURE_MS, AGE_MS = 300_000, 30 * 86_400_000
REQUIRED = ("soc", "soh", "voltage", "current", "temperature", "charge_cycles", "power_consumption")


def _in_range(field: str) -> st.SearchStrategy[Any]:
    low, high, _ = RANGES[field]
    if field == "charge_cycles":
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False)


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """A reading every field of which is plausible."""
    record = {field: draw(_in_range(field)) for field in REQUIRED}
    for field in ("ambient_temperature", "service_days"):
        record[field] = draw(st.none() | _in_range(field))
    vmin, vmax = sorted(draw(st.tuples(_in_range("cell_voltage_min"), _in_range("cell_voltage_max"))))
    record["cell_voltage_min"], record["cell_voltage_max"] = draw(st.sampled_from([(vmin, vmax), (None, None)]))
    record["battery_id"] = draw(st.from_regex(BATTERY_ID, fullmatch=True))
    record["event_id"] = draw(st.uuids().map(str))
    record["timestamp"] = draw(st.integers(NOW_MS - AGE_MS, NOW_MS + FUTURE_MS))
    record["seq"], record["mode"] = draw(st.integers(0, 2**40)), "DRIVING"
    return record


def _problem(record: dict[str, Any]) -> str | None:
    return telemetry_problem(record, NOW_MS, FUTURE_MS, AGE_MS)


@given(plausible())
def test_every_plausible_reading_passes(record: dict[str, Any]) -> None:
    assert _problem(record) is None


@given(plausible(), st.sampled_from([f for f in RANGES if f != "charge_cycles"]),
       st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_non_finite_value_is_refused_by_name(record: dict[str, Any], field: str, value: float) -> None:
    record[field] = value
    problem = _problem(record)
    assert problem is not None and problem.startswith(f"{field} is ") and "not a finite number" in problem


@given(plausible(), st.sampled_from(sorted(RANGES)), st.booleans(), st.floats(1e-6, 1e9))
def test_a_value_out_of_its_range_is_refused_by_name(record: dict[str, Any], field: str, above: bool,
                                                      by: float) -> None:
    low, high, unit = RANGES[field]
    value = high + by if above else low - by
    if field == "charge_cycles":
        value = int(high) + max(1, int(by)) if above else int(low) - max(1, int(by))
    assume(not low <= value <= high)
    record[field] = value
    problem = _problem(record)
    assert problem is not None and problem.startswith(f"{field} {value}") and "outside" in problem, problem


@given(plausible(), st.integers(1, 10**15), st.booleans())
def test_a_timestamp_outside_the_window_is_refused(record: dict[str, Any], by: int, future: bool) -> None:
    record["timestamp"] = NOW_MS + FUTURE_MS + by if future else NOW_MS - AGE_MS - by
    problem = _problem(record)
    assert problem is not None and problem.startswith("timestamp ")
    assert ("in the future" if future else "old") in problem


@given(plausible(), st.text(max_size=80))
def test_a_battery_id_of_an_unknown_format_is_refused(record: dict[str, Any], battery_id: str) -> None:
    assume(not BATTERY_ID.fullmatch(battery_id))
    record["battery_id"] = battery_id
    problem = _problem(record)
    assert problem is not None and problem.startswith(f"battery_id {battery_id!r} is not")


@given(telemetry(), st.integers(-(2**63), 2**63 - 1))
def test_no_decodable_record_makes_the_validator_raise(record: dict[str, Any], now_ms: int) -> None:
    problem = telemetry_problem(record, now_ms, FUTURE_MS, AGE_MS)
    assert problem is None or (isinstance(problem, str) and problem)


@given(plausible(), st.text(min_size=EVENT_ID_MAX + 1, max_size=EVENT_ID_MAX + 50) | st.just(""))
def test_an_empty_or_overlong_event_id_is_refused(record: dict[str, Any], event_id: str) -> None:
    record["event_id"] = event_id
    problem = _problem(record)
    assert problem is not None and problem.startswith("event_id")


@given(st.integers(0, 3 * MAX_RECORD_BYTES))
def test_only_records_over_the_limit_are_oversized(size: int) -> None:
    assert (oversized(b"x" * size) is not None) == (size > MAX_RECORD_BYTES)
    assert oversized(None) is None


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3), st.integers(0, 5)), max_size=60))
def test_a_duplicate_is_an_event_id_seen_before_at_another_offset(events: list[tuple[str, int, int]]) -> None:
    seen = DuplicateEvents(capacity=8)  # more than the 8 ids drawn: nothing is forgotten here
    first: dict[str, tuple[int, int]] = {}
    for event_id, partition, offset in events:
        problem = seen.problem(event_id, partition, offset)
        where = first.setdefault(event_id, (partition, offset))
        if where == (partition, offset):
            assert problem is None  # the first time, or the same record delivered again
        else:
            assert problem == f"duplicate event_id {event_id}: first seen at partition {where[0]} offset {where[1]}"


def test_ids_are_forgotten_after_two_generations_only() -> None:
    seen = DuplicateEvents(capacity=3)
    for i in range(3):
        assert seen.problem(f"e{i}", 0, i) is None
    assert seen.problem("e3", 0, 3) is None  # starts a new generation; e0..e2 still remembered
    assert seen.problem("e0", 1, 99) is not None
    for i in range(4, 7):
        seen.problem(f"e{i}", 0, i)  # a third generation: e0..e2 are gone
    assert seen.problem("e0", 1, 99) is None


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}", fullmatch=True), st.one_of(st.none(), st.binary(max_size=60)))
def test_the_record_key_must_be_the_battery_id(battery_id: str, key: bytes | None) -> None:
    assert key_problem(battery_id.encode(), battery_id) is None
    problem = key_problem(key, battery_id)
    if key == battery_id.encode():
        assert problem is None
    else:
        assert problem is not None and f"for battery_id {battery_id!r}: the record key must be" in problem
        assert problem.startswith("no key" if key is None else "key ")
