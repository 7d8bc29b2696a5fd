"""The API's online accuracy against the real embedded stack: pairs written by the accuracy job's own
writer into a fresh database, the API on uvicorn; GET /api/accuracy and the twin's ``accuracy``
equal the figures computed here from the pairs (window = the buckets of the last hour up to the
fleet's newest), the series is bounded by from/to, the packs come worst first, bad parameters 422."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.accuracy_store import AccuracyWriter
from connectors.endpoints import Endpoints
from connectors.timescale import TimescaleWriter
from streams.api.server import ThreadedServer
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import ms, prediction
from tests.support.stack_settings import free_port_settings

BUCKET_MS, WINDOW_MS = 300_000, 3_600_000
NOW_MS = ms(datetime.now(UTC).replace(microsecond=0)) // BUCKET_MS * BUCKET_MS
PACKS = [f"APIACC_{b}" for b in range(4)]
DETECTED = PACKS[3]


def _pairs() -> list[tuple[Any, ...]]:
    """Packs 0-3, a pair every 10 minutes over the last 3 hours; pack b's error is 10(b+1) to
    10(b+1)+2 cycles, every fourth pair outside the band; pack 3 flags its fault 120 s after onset;
    pack b predicts a failure probability of 0.1(b+1), every fifth truth says failure; pack 0's
    first pair lacks a failure probability (a prediction of an older model: not counted)."""
    out = []
    for b, battery in enumerate(PACKS):
        for k in range(18):
            t = NOW_MS - k * 600_000 + 1000 * b
            err = 10.0 * (b + 1) + k % 3
            delay = 120.0 if battery == DETECTED and k == 2 else None
            failure = None if (b, k) == (0, 0) else 0.1 * (b + 1)
            out.append((t, battery, f"{battery}-{k}", 500.0, 400.0, 500.0 + (200 if k % 4 == 0 else 0),
                        500.0 - err if k % 4 else 500.0 + err, err, k % 4 != 0, delay is not None,
                        "cooling_failure" if delay else "none", delay, failure, k % 5 == 0))
    return out


def _expected(pairs: list[tuple[Any, ...]], key: str | None, window: bool = True) -> dict[str, Any]:
    """The figures of ``key``'s pairs (``None``: the fleet) in the window, computed from the pairs."""
    newest = max(t - t % BUCKET_MS for t, *_ in pairs)
    chosen = [p for p in pairs if (key is None or p[1] == key)
              and (not window or p[0] - p[0] % BUCKET_MS > newest - WINDOW_MS)]
    n, delays = len(chosen), [p[11] for p in chosen if p[11] is not None]
    known = [(p[12], 1.0 if p[13] else 0.0) for p in chosen if p[12] is not None]
    rate = sum(y for _, y in known) / len(known)
    return {"pairs": n, "rul_mae_cycles": pytest.approx(sum(p[7] for p in chosen) / n),
            "rul_band_coverage": pytest.approx(sum(p[8] for p in chosen) / n),
            "fault_detections": len(delays),
            "fault_detection_delay_s_mean": pytest.approx(sum(delays) / len(delays)) if delays else None,
            "failure_pairs": len(known),
            "failure_mean_probability": pytest.approx(sum(q for q, _ in known) / len(known)),
            "failure_observed_rate": pytest.approx(rate),
            "failure_brier": pytest.approx(sum((q - y) ** 2 for q, y in known) / len(known)),
            "failure_baseline_brier": pytest.approx(rate * (1.0 - rate))}


@pytest.fixture(scope="module")
def api(stack, state_root: Path) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_apiacc")
    pairs = _pairs()
    with TimescaleWriter(url, retry_for_s=5) as writer:  # the packs' twin rows (battery_state)
        writer.write_predictions([prediction(b, NOW_MS) for b in [*PACKS, "APIACC_NOTRUTH"]])
    with AccuracyWriter(url, bucket_s=BUCKET_MS // 1000, retry_for_s=5) as accuracy:
        accuracy.write(pairs, [(DETECTED, "cooling_failure", NOW_MS - 1_320_000, NOW_MS - 1_200_000,
                                120.0, NOW_MS - 1_200_000)])
    settings = free_port_settings(state_root / "api-accuracy", api_rate_per_s=0)
    endpoints = Endpoints(kafka_bootstrap_servers=ep.kafka_bootstrap_servers, database_url=url,
                          mqtt_url=ep.mqtt_url, schema_registry_url=ep.schema_registry_url,
                          mlflow_tracking_uri=None)
    with ThreadedServer(settings, endpoints) as server:
        yield server.url, pairs
    drop_database(url)


def _when(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_fleet_figures_series_and_worst_packs_equal_the_pairs(api: tuple[str, list[tuple[Any, ...]]]) -> None:
    url, pairs = api
    body = httpx.get(f"{url}/api/accuracy", timeout=30).json()
    assert (body["window_s"], body["bucket_s"]) == (3600, 300)
    assert body["as_of"] == _when(NOW_MS)
    assert body["fleet"] == _expected(pairs, None)
    # Default series: the last 24 hours, every fleet bucket with pairs, oldest first.
    buckets = sorted({t - t % BUCKET_MS for t, *_ in pairs})
    assert [p["bucket"] for p in body["series"]] == [_when(b) for b in buckets]
    first = [p for p in pairs if p[0] - p[0] % BUCKET_MS == buckets[0]]
    assert body["series"][0]["pairs"] == len(first)
    assert body["series"][0]["rul_mae_cycles"] == pytest.approx(sum(p[7] for p in first) / len(first))
    known = [p for p in first if p[12] is not None]
    assert body["series"][0]["failure_pairs"] == len(known)
    assert body["series"][0]["failure_brier"] == pytest.approx(
        sum((p[12] - p[13]) ** 2 for p in known) / len(known))
    # Worst first: pack 3 has the largest errors.
    assert [b["battery_id"] for b in body["batteries"]] == PACKS[::-1]
    for item in body["batteries"]:
        assert {k: v for k, v in item.items() if k != "battery_id"} == _expected(pairs, item["battery_id"])
    assert body["batteries"][0]["fault_detections"] == 1  # 20 min ago: inside the window

    short = httpx.get(f"{url}/api/accuracy", params={"from": _when(NOW_MS - 3_600_000), "to": _when(NOW_MS),
                                                     "limit": 2}, timeout=30).json()
    assert [p["bucket"] for p in short["series"]] == [_when(b) for b in buckets if NOW_MS - 3_600_000 <= b < NOW_MS]
    assert len(short["batteries"]) == 2


def test_the_twin_carries_its_accuracy_and_fault(api: tuple[str, list[tuple[Any, ...]]]) -> None:
    url, pairs = api
    twin = httpx.get(f"{url}/api/batteries/{DETECTED}", timeout=30).json()
    acc = twin["accuracy"]
    assert {k: acc[k] for k in _expected(pairs, DETECTED)} == _expected(pairs, DETECTED)
    assert acc["window_s"] == 3600 and acc["fault"] == "cooling_failure"
    assert acc["fault_onset"] == _when(NOW_MS - 1_320_000) and acc["fault_detected_at"] == _when(NOW_MS - 1_200_000)
    assert acc["fault_detection_delay_s"] == 120.0
    calm = httpx.get(f"{url}/api/batteries/{PACKS[0]}", timeout=30).json()["accuracy"]
    assert calm["fault"] is None and calm["pairs"] == _expected(pairs, PACKS[0])["pairs"]
    assert httpx.get(f"{url}/api/batteries/APIACC_NOTRUTH", timeout=30).json()["accuracy"] is None


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": -1}, {"from": "yesterday"},
                                    {"from": _when(NOW_MS), "to": _when(NOW_MS - 60_000)}])
def test_bad_accuracy_parameters_are_422(api: tuple[str, list[tuple[Any, ...]]], params: dict[str, Any]) -> None:
    url, _ = api
    r = httpx.get(f"{url}/api/accuracy", params=params, timeout=30)
    assert r.status_code == 422, r.text
