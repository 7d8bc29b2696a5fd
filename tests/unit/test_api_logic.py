"""The API's pure logic: key digests and constant-time checks, token buckets, the history
resolution, the WebSocket hub's fan-out and slow-client drop, risk bands, the desired-state view,
and the simulator side of commands (``fleet_arguments``, ``Fleet.configure``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from models.physics.errors import PhysicsError
from models.physics.faults import COOLING_FAILURE, NONE
from models.physics.fleet import Fleet
from streams.api.desired import view_of
from streams.api.hub import Hub, live_prediction
from streams.api.readmodel import choose_resolution
from streams.api.schemas import risk_band
from streams.api.security import (
    KeyChecker,
    KeyConfigError,
    RateLimiter,
    hash_key,
    parse_key_hashes,
    retry_after,
)
from streams.sources.commands import CommandApplier, fleet_arguments
from tests.support.sink_records import prediction


def test_keys_are_configured_as_digests_and_checked() -> None:
    digest = hash_key("s3cret")
    assert digest.startswith("sha256:") and "s3cret" not in digest
    checker = KeyChecker(parse_key_hashes(f" {digest} , {hash_key('other')}"))
    assert checker.check("s3cret") and checker.check("other")
    assert not checker.check("s3cret ") and not checker.check("") and not checker.check(None)
    with pytest.raises(KeyConfigError, match="never the key"):
        parse_key_hashes("s3cret")
    with pytest.raises(KeyConfigError):
        parse_key_hashes("sha256:abcd")
    assert not KeyChecker(parse_key_hashes(None)).check("anything")


def test_rate_limiter_allows_the_burst_then_says_how_long_to_wait() -> None:
    limiter = RateLimiter(rate=2.0, burst=3.0)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.4 < wait <= 0.5
    assert limiter.take("b") == 0.0  # another identity has its own bucket
    assert retry_after(wait) == "1" and retry_after(2.1) == "3"
    assert RateLimiter(rate=0, burst=0).take("x") == 0.0  # 0 = no limit


@pytest.mark.parametrize(("minutes", "wanted", "used"), [
    (5, "auto", "raw"), (60, "auto", "1m"), (24 * 60, "auto", "5m"), (3 * 24 * 60, "auto", "1h"),
    (5, "15m", "15m"),
])
def test_history_resolution(minutes: int, wanted: str, used: str) -> None:
    from datetime import UTC, datetime, timedelta

    end = datetime(2026, 12, 3, tzinfo=UTC)
    assert choose_resolution(end - timedelta(minutes=minutes), end, wanted) == used


def test_risk_bands() -> None:
    assert [risk_band(p) for p in (None, 0.0, 0.29, 0.3, 0.69, 0.7, 1.0)] == [
        None, "low", "low", "medium", "medium", "high", "high"]


def test_desired_view_converges_only_on_the_same_version_and_values() -> None:
    row: dict[str, Any] = {"desired": {"max_soc": 80.0}, "version": 5, "reported": {"max_soc": 80.0},
                           "reported_version": 4, "converged_at": None}
    assert not view_of("B", row).converged
    row.update(reported_version=5, converged_at="2026-12-03T00:00:00Z")
    view = view_of("B", row)
    assert view.converged and view.converged_at is not None
    assert view_of("B", None).desired is None


class FakeWs:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = code

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}


def test_hub_encodes_one_frame_per_window_and_drops_a_full_queue() -> None:
    async def scenario() -> tuple[Hub, Any, Any]:
        hub = Hub(batch_ms=1000, queue_size=2)
        await hub.start()
        fast, slow = FakeWs(), FakeWs()
        fast_task = asyncio.create_task(hub.serve(fast, "B1"))
        await asyncio.sleep(0.01)
        # a slow client: registered, but its sender never runs (its queue only fills)
        from streams.api.hub import Client

        slow_client = Client(slow, None, 2)
        hub.fleet.add(slow_client)
        preds = [live_prediction(prediction(b, 1_000 + i)) for i, b in enumerate(["B1", "B2", "B1"])]
        for _ in range(3):
            hub._ingest(preds, [])
            hub.flush()
            await asyncio.sleep(0.01)
        await hub.stop()
        fast_task.cancel()
        return hub, fast, slow_client

    hub, fast, slow_client = asyncio.run(scenario())
    frames = [json.loads(t) for t in fast.sent]
    assert frames[0]["type"] == "hello"
    assert [f["type"] for f in frames[1:]] == ["predictions"] * 3
    assert all([p["battery_id"] for p in f["data"]] == ["B1", "B1"] for f in frames[1:])
    assert slow_client.dropped and hub.dropped == 1 and slow_client not in hub.fleet


def test_commands_map_to_the_fleet_and_change_it() -> None:
    fleet = Fleet(3, seed=1)
    args = fleet_arguments({"usage_profile": "commercial", "climate": "hot", "max_soc": 75.0,
                            "dc_share": 0.5, "fault": "cooling_failure"})
    assert args == {"usage_profile": 2, "climate": 2, "max_soc": 0.75, "dc_share": 0.5, "fault": 2}
    fleet.configure(1, **args)
    assert fleet.usage.target_soc[1] == 0.75 and fleet.usage.dc_share[1] == 0.5
    assert fleet.usage.climate_mean_c[1] == fleet.params.usage.climate_mean_c[2]
    assert fleet.active_faults()[1] == COOLING_FAILURE
    fleet.configure(1, fault=NONE)
    assert fleet.active_faults()[1] == NONE
    with pytest.raises(PhysicsError):
        fleet.configure(1, max_soc=1.5)
    with pytest.raises(ValueError, match="climate"):
        fleet_arguments({"climate": "arctic"})


class FakeConsumer:
    def assign(self, partitions: Any) -> None:
        self.partitions = partitions


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.records.append((topic, value, key))


def test_applier_applies_newer_versions_only_and_reports() -> None:
    from schemas.codec import AvroCodec

    fleet = Fleet(2, seed=3)
    producer = FakeProducer()
    reported = AvroCodec("command_reported")
    applier = CommandApplier(FakeConsumer(), producer, AvroCodec("command"), reported, 4)
    bid = fleet.battery_ids[0]
    base = {"command_id": "c1", "battery_id": bid, "requested_at": 0, "usage_profile": None,
            "climate": None, "dc_share": None, "fault": None}
    assert applier.apply(fleet, {**base, "version": 2, "max_soc": 70.0}) == 1
    assert applier.apply(fleet, {**base, "version": 1, "max_soc": 90.0}) == 0  # older: skipped
    assert applier.apply(fleet, {**base, "version": 3, "battery_id": "NOT_MINE", "max_soc": 90.0}) == 0
    assert np.isclose(fleet.usage.target_soc[0], 0.70)
    reports = [reported.decode(v) for _, v, _ in producer.records]
    assert [(r["battery_id"], r["version"], r["status"], r["max_soc"]) for r in reports] == [
        (bid, 2, "APPLIED", 70.0)]


def test_live_values_are_rounded_below_what_sensors_resolve_and_frames_are_compact() -> None:
    record = prediction("B1", 1_000, soc=55.82812345678912, voltage=357.20812345678, current=None,
                        failure_probability=0.827712345678, rul_cycles=935.04999999, charge_cycles=7)
    live = live_prediction(record)
    assert live["soc"] == 55.828 and live["voltage"] == 357.208
    assert live["failure_probability"] == 0.82771 and live["rul_cycles"] == 935.0
    assert live["current"] is None and live["charge_cycles"] == 7  # nothing invented, ints kept

    async def one_frame() -> str:
        hub = Hub(batch_ms=1000, queue_size=4)
        await hub.start()
        ws = FakeWs()
        task = asyncio.create_task(hub.serve(ws, None))
        await asyncio.sleep(0.01)
        hub._ingest([live], [])
        hub.flush()
        await asyncio.sleep(0.01)
        await hub.stop()
        task.cancel()
        return ws.sent[-1]

    frame = asyncio.run(one_frame())
    assert ", " not in frame and '": ' not in frame  # no spaces after separators
    assert json.loads(frame)["data"] == [live]
