"""The HTTP API against the real embedded stack: rows written by the sink's own writer into a fresh
database, the API served by uvicorn on a loopback port, every endpoint compared with SQL; paging,
filters, sorting; 404/422/401/429; export streams CSV and Parquet; the topics page data."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from connectors.endpoints import Endpoints
from connectors.timescale import TimescaleWriter
from streams.api.security import hash_key
from streams.api.server import ThreadedServer
from tests.support.database import drop_database, fresh_database
from tests.support.sink_records import alert, ms, prediction
from tests.support.stack_settings import free_port_settings

KEY = "test-key-" + uuid.uuid4().hex
N_BATTERIES = 30
READINGS = 40
NOW = datetime.now(UTC).replace(microsecond=0)


def _endpoints(ep: Endpoints, db_url: str) -> Endpoints:
    return Endpoints(kafka_bootstrap_servers=ep.kafka_bootstrap_servers, database_url=db_url,
                     mqtt_url=ep.mqtt_url, schema_registry_url=ep.schema_registry_url,
                     mlflow_tracking_uri=None)


def _fill(db_url: str) -> None:
    """30 packs x 40 readings, one every 30 s up to NOW; failure probability rising with the
    pack number (low/medium/high); every fifth pack flagged faulty from its 30th reading on (its
    fault score rising through the run); open and resolved alerts."""
    rows = []
    for b in range(N_BATTERIES):
        bid = f"APITEST_{b:04d}"
        for k in range(READINGS):
            t = NOW - timedelta(seconds=30 * (READINGS - 1 - k))
            rows.append(prediction(bid, ms(t), soc=50.0 + k * 0.5, soh=80.0 + b * 0.6,
                                   temperature=25.0 + k * 0.1, failure_probability=b / N_BATTERIES,
                                   rul_cycles=2000.0 - 50 * b, rul_p10=1800.0 - 50 * b,
                                   rul_p90=2200.0 - 50 * b, charge_cycles=100 + b, seq=k,
                                   fault_score=round(0.01 * k + 0.002 * b, 4),
                                   fault_flag=b % 5 == 0 and k >= 30))
    alerts = [alert(f"open-{b}", f"APITEST_{b:04d}", "OPENED", ms(NOW - timedelta(minutes=b)))
              for b in range(0, N_BATTERIES, 3)]
    alerts += [alert(f"closed-{b}", f"APITEST_{b:04d}", "OPENED", ms(NOW - timedelta(hours=2)),
                     rule="low_soc", severity="CRITICAL") for b in range(1, 5)]
    resolved = [dict(a, status="RESOLVED", resolved_at=ms(NOW - timedelta(hours=1)))
                for a in alerts[-4:]]
    with TimescaleWriter(db_url, retry_for_s=5) as writer:
        writer.write_predictions(rows)
        writer.write_alerts(alerts)
        writer.write_alerts(resolved)


@pytest.fixture(scope="module")
def db_url(stack) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_api")
    _fill(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def api(stack, db_url: str, state_root: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    _, ep = stack
    settings = free_port_settings(state_root / "api-int", api_keys=hash_key(KEY),
                                  api_rate_per_s=0, api_write_rate_per_min=0)
    with ThreadedServer(settings, _endpoints(ep, db_url)) as server:
        yield server.url


@pytest.fixture(scope="module")
def client(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=30) as c:
        yield c


def sql(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[call-overload, no-any-return]


# --- batteries -------------------------------------------------------------------------------------

def test_battery_list_pages_through_every_pack_in_order(client: httpx.Client, db_url: str) -> None:
    seen, offset = [], 0
    while True:
        page = client.get("/api/batteries", params={"limit": 7, "offset": offset}).json()
        assert page["total"] == N_BATTERIES and page["limit"] == 7
        seen += [item["battery_id"] for item in page["items"]]
        offset += 7
        if offset >= page["total"]:
            break
    assert seen == [r[0] for r in sql(db_url, "SELECT battery_id FROM battery_state ORDER BY 1")]


def test_battery_list_filters_and_sorts(client: httpx.Client, db_url: str) -> None:
    high = client.get("/api/batteries", params={"risk": "high", "limit": 100}).json()
    want = sql(db_url, "SELECT battery_id FROM battery_state WHERE failure_probability >= 0.7 ORDER BY 1")
    assert [i["battery_id"] for i in high["items"]] == [r[0] for r in want]
    assert high["total"] == len(want) and {i["risk"] for i in high["items"]} == {"high"}

    band = client.get("/api/batteries", params={"soh_min": 85, "soh_max": 90, "sort": "soh",
                                                "order": "desc"}).json()
    want = sql(db_url, "SELECT battery_id FROM battery_state WHERE soh BETWEEN 85 AND 90 "
                       "ORDER BY soh DESC, battery_id")
    assert [i["battery_id"] for i in band["items"]] == [r[0] for r in want]

    with_alerts = client.get("/api/batteries", params={"alert": "open", "limit": 100}).json()
    want = sql(db_url, "SELECT DISTINCT battery_id FROM ev_alerts WHERE resolved_at IS NULL ORDER BY 1")
    assert [i["battery_id"] for i in with_alerts["items"]] == [r[0] for r in want]
    flagged = client.get("/api/batteries", params={"fault": "flagged", "sort": "fault_score",
                                                   "order": "desc"}).json()
    want = sql(db_url, "SELECT battery_id, fault_score FROM battery_state WHERE fault_flag "
                       "ORDER BY fault_score DESC, battery_id")
    assert [(i["battery_id"], i["fault_score"]) for i in flagged["items"]] == want
    assert len(want) == N_BATTERIES // 5 and all(i["fault_flag"] for i in flagged["items"])
    clear = client.get("/api/batteries", params={"fault": "clear", "limit": 100}).json()
    assert clear["total"] == N_BATTERIES - len(want) and not any(i["fault_flag"] for i in clear["items"])
    assert all(i["open_alerts"] >= 1 for i in with_alerts["items"])
    prefix = client.get("/api/batteries", params={"q": "APITEST_001"}).json()
    assert [i["battery_id"] for i in prefix["items"]] == [f"APITEST_{b:04d}" for b in range(10, 20)]


def test_battery_twin_equals_its_rows(client: httpx.Client, db_url: str) -> None:
    twin = client.get("/api/batteries/APITEST_0027").json()
    (time_, soc, soh, rul, p10, p90, fp, fault_score, fault_flag), = sql(
        db_url, "SELECT time, soc, soh, rul_prediction, rul_p10, rul_p90, failure_probability, "
                "fault_score, fault_flag FROM battery_state WHERE battery_id = 'APITEST_0027'")
    assert datetime.fromisoformat(twin["reported"]["time"]) == time_
    assert twin["reported"]["soc"] == soc and twin["reported"]["soh"] == soh
    pred = twin["prediction"]
    assert (pred["rul_cycles"], pred["rul_p10"], pred["rul_p90"]) == (rul, p10, p90)
    assert pred["failure_probability"] == fp and pred["risk"] == "high"
    assert (pred["fault_score"], pred["fault_flag"]) == (fault_score, fault_flag) == (0.444, False)
    flagged = client.get("/api/batteries/APITEST_0025").json()["prediction"]
    assert (flagged["fault_score"], flagged["fault_flag"]) == (0.44, True)
    assert [a["alert_id"] for a in twin["open_alerts"]] == ["open-27"]
    assert twin["desired"] == {**twin["desired"], "battery_id": "APITEST_0027", "desired": None,
                               "converged": False}


def test_history_raw_and_downsampled(client: httpx.Client, db_url: str) -> None:
    frm, to = (NOW - timedelta(minutes=30)).isoformat(), (NOW + timedelta(seconds=1)).isoformat()
    raw = client.get("/api/batteries/APITEST_0003/history",
                     params={"from": frm, "to": to, "resolution": "raw"}).json()
    want = sql(db_url, "SELECT time, soc, fault_score FROM ev_telemetry WHERE battery_id = 'APITEST_0003' "
                       "AND time >= %s AND time < %s ORDER BY time", NOW - timedelta(minutes=30),
               NOW + timedelta(seconds=1))
    assert [(datetime.fromisoformat(p["time"]), p["soc"], p["fault_score"]) for p in raw["points"]] == want
    assert raw["source"] == "ev_telemetry" and "from" in raw
    five = client.get("/api/batteries/APITEST_0003/history",
                      params={"from": frm, "to": to, "resolution": "5m"}).json()
    assert sum(p["samples"] for p in five["points"]) == len(want)
    assert max(p["fault_score"] for p in five["points"]) == max(f for _, _, f in want)
    assert len(five["points"]) <= 7
    auto = client.get("/api/batteries/APITEST_0003/history").json()  # last hour
    assert auto["resolution"] in ("1m", "5m") and sum(p["samples"] for p in auto["points"]) == READINGS
    week = client.get("/api/batteries/APITEST_0003/history",
                      params={"from": (NOW - timedelta(days=7)).isoformat()}).json()
    assert week["resolution"] == "1h" and week["source"] == "ev_telemetry_hourly"


def test_fleet_summary_counts_match_sql(client: httpx.Client, db_url: str) -> None:
    summary = client.get("/api/fleet/summary").json()
    assert summary["batteries"] == N_BATTERIES
    (low, medium, high), = sql(db_url, "SELECT count(*) FILTER (WHERE failure_probability < 0.3), "
                               "count(*) FILTER (WHERE failure_probability >= 0.3 AND failure_probability < 0.7), "
                               "count(*) FILTER (WHERE failure_probability >= 0.7) FROM battery_state")
    assert summary["by_risk"] == {"low": low, "medium": medium, "high": high, "unknown": 0}
    (open_n,), = sql(db_url, "SELECT count(*) FROM ev_alerts WHERE resolved_at IS NULL")
    assert summary["open_alerts"] == open_n
    (flagged_n,), = sql(db_url, "SELECT count(*) FROM battery_state WHERE fault_flag")
    assert summary["fault_flagged"] == flagged_n == N_BATTERIES // 5
    assert sum(b["count"] for b in summary["soh_histogram"]) == N_BATTERIES
    assert sum(b["count"] for b in summary["rul_histogram"]) == N_BATTERIES
    assert len(summary["points"]) == N_BATTERIES


def test_alerts_open_resolved_and_paged(client: httpx.Client, db_url: str) -> None:
    opened = client.get("/api/alerts", params={"status": "open", "limit": 4}).json()
    want = sql(db_url, "SELECT alert_id FROM ev_alerts WHERE resolved_at IS NULL "
                       "ORDER BY opened_at DESC, alert_id")
    assert opened["total"] == len(want)
    assert [a["alert_id"] for a in opened["items"]] == [r[0] for r in want[:4]]
    resolved = client.get("/api/alerts", params={"status": "resolved"}).json()
    assert {a["alert_id"] for a in resolved["items"]} == {f"closed-{b}" for b in range(1, 5)}
    assert all(a["status"] == "RESOLVED" and a["resolved_at"] for a in resolved["items"])
    mine = client.get("/api/batteries/APITEST_0003/alerts", params={"status": "all"}).json()
    assert {a["alert_id"] for a in mine["items"]} == {"open-3", "closed-3"}


def test_seed_paths(client: httpx.Client, db_url: str) -> None:
    latest = client.get("/api/telemetry/latest").json()
    assert latest["count"] == N_BATTERIES
    one = client.get("/api/telemetry/latest", params={"battery": "APITEST_0005"}).json()["items"]
    (soc,), = sql(db_url, "SELECT soc FROM battery_state WHERE battery_id = 'APITEST_0005'")
    assert [i["soc"] for i in one] == [soc]
    current = client.get("/api/predictions/current", params={"battery": "APITEST_0005"}).json()
    assert current["items"][0]["rul_cycles"] == 2000.0 - 50 * 5


# --- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/batteries/NOPE_1", "/api/batteries/NOPE_1/history",
                                  "/api/batteries/NOPE_1/desired",
                                  "/api/telemetry/latest?battery=NOPE_1",
                                  "/api/export?battery=NOPE_1"])
def test_unknown_battery_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and "NOPE_1" in response.json()["detail"]


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"), ({"sort": "password"}, "sort"),
    ({"risk": "extreme"}, "risk"), ({"soh_min": 95, "soh_max": 90}, "soh_min"),
])
def test_bad_list_parameters_are_422_with_the_field(client: httpx.Client, params: dict[str, Any],
                                                    field: str) -> None:
    response = client.get("/api/batteries", params=params)
    assert response.status_code == 422
    assert any(field in err["loc"] for err in response.json()["detail"])


def test_bad_history_range_is_422(client: httpx.Client) -> None:
    r = client.get("/api/batteries/APITEST_0001/history",
                   params={"from": NOW.isoformat(), "to": (NOW - timedelta(hours=1)).isoformat()})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "from"]
    r = client.get("/api/batteries/APITEST_0001/history", params={"from": "yesterday"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "from"]


def test_writes_need_a_valid_key(client: httpx.Client) -> None:
    body = {"max_soc": 80}
    assert client.put("/api/batteries/APITEST_0001/desired", json=body).status_code == 401
    r = client.put("/api/batteries/APITEST_0001/desired", json=body, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = client.post("/api/battery/configure", json={"battery_id": "APITEST_0001", **body})
    assert r.status_code == 401


def test_bad_desired_state_is_422_with_the_field(client: httpx.Client) -> None:
    key = {"X-API-Key": KEY}
    r = client.put("/api/batteries/APITEST_0001/desired", json={"max_soc": 120}, headers=key)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "max_soc"]
    r = client.put("/api/batteries/APITEST_0001/desired", json={"fault": "meltdown"}, headers=key)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "fault"]
    r = client.put("/api/batteries/NOPE_1/desired", json={"max_soc": 80}, headers=key)
    assert r.status_code == 404


def test_desired_state_write_is_stored_and_sent_as_avro(client: httpx.Client, db_url: str,
                                                       stack) -> None:  # type: ignore[no-untyped-def]
    from streams.runtime.codecs import codec_for
    from streams.topics import COMMANDS
    from tests.support.topic_reader import read_topic

    _, ep = stack
    r = client.put("/api/batteries/APITEST_0002/desired", json={"max_soc": 85, "climate": "hot"},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["desired"]["max_soc"] == 85 and view["converged"] is False
    r2 = client.post("/api/battery/configure", headers={"X-API-Key": KEY},
                     json={"battery_id": "APITEST_0002", "max_soc": 90})
    assert r2.json()["desired_version"] > view["desired_version"]
    (desired, version), = sql(db_url, "SELECT desired, version FROM battery_desired_state "
                                      "WHERE battery_id = 'APITEST_0002'")
    assert desired["max_soc"] == 90 and desired["climate"] is None
    codec = codec_for(COMMANDS, ep)
    msgs = read_topic(ep.kafka_bootstrap_servers, COMMANDS, lambda m: m.key() == b"APITEST_0002", 2)
    mine = sorted((codec.decode(m.value()) for m in msgs), key=lambda c: c["version"])
    assert [c["version"] for c in mine] == [view["desired_version"], version]
    assert mine[-1]["max_soc"] == 90.0 and mine[-1]["battery_id"] == "APITEST_0002"


# --- export, topics, health ------------------------------------------------------------------------

def test_export_csv_and_parquet_hold_the_rows(client: httpx.Client, db_url: str, tmp_path: Path) -> None:
    params = {"battery": "APITEST_0005", "from": (NOW - timedelta(hours=1)).isoformat(),
              "to": (NOW + timedelta(seconds=1)).isoformat()}
    want = sql(db_url, "SELECT time, soc, fault_score, fault_flag FROM ev_telemetry "
                       "WHERE battery_id = 'APITEST_0005' ORDER BY time")
    with client.stream("GET", "/api/export", params={**params, "format": "csv"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        text = "".join(r.iter_text())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(datetime.fromisoformat(x["time"]), float(x["soc"]), float(x["fault_score"]),
             x["fault_flag"] == "true") for x in rows] == want
    assert sum(f for *_, f in want) == READINGS - 30  # flagged from its 30th reading
    r = client.get("/api/export", params={**params, "format": "parquet"})
    path = tmp_path / "x.parquet"
    path.write_bytes(r.content)
    table = pq.read_table(path)
    assert table.num_rows == len(want)
    assert list(zip(table.column("soc").to_pylist(), table.column("fault_score").to_pylist(),
                    table.column("fault_flag").to_pylist(), strict=True)) == [w[1:] for w in want]


def test_topics_page_data(client: httpx.Client) -> None:
    overview = client.get("/api/topics").json()
    names = {t["name"]: t for t in overview["topics"]}
    assert "ev.commands.v1" in names and names["ev.commands.v1"]["schema_name"] == "command"
    assert all(p["high"] >= p["low"] for t in overview["topics"] for p in t["partitions"])
    client.put("/api/batteries/APITEST_0006/desired", json={"dc_share": 0.5}, headers={"X-API-Key": KEY})
    records = client.get("/api/topics/ev.commands.v1/records", params={"limit": 50}).json()
    assert any(r["key"] == "APITEST_0006" and r["value"]["dc_share"] == 0.5 for r in records["records"])
    assert client.get("/api/topics/no.such.topic/records").status_code == 404


def test_health_reports_each_dependency(client: httpx.Client) -> None:
    body = client.get("/api/health").json()
    assert set(body["dependencies"]) == {"broker", "database", "mqtt", "model"}
    assert body["dependencies"]["database"]["ok"] and body["dependencies"]["broker"]["ok"]
    assert body["model_version"] == "ev-twin@1"


def test_health_is_503_when_the_database_is_down(stack, state_root: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    url = fresh_database(ep.database_url, "evtwin_api_down")
    settings = free_port_settings(state_root / "api-down", api_rate_per_s=0)
    with ThreadedServer(settings, _endpoints(ep, url)) as server:
        assert httpx.get(server.url + "/api/health", timeout=30).json()["dependencies"]["database"]["ok"]
        drop_database(url)  # terminates the API's connections; reconnecting fails
        r = httpx.get(server.url + "/api/health", timeout=30)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "degraded" and not body["dependencies"]["database"]["ok"]
    assert body["dependencies"]["broker"]["ok"]


def test_rate_limit_answers_429_with_retry_after(stack, db_url: str, state_root: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    # one request per 5 s per client (a bucket of one), one write per minute per key
    settings = free_port_settings(state_root / "api-rate", api_rate_per_s=0.2, api_keys=hash_key(KEY),
                                  api_write_rate_per_min=1)
    with ThreadedServer(settings, _endpoints(ep, db_url)) as server, \
            httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/fleet/summary").status_code == 200
        r = c.get("/api/fleet/summary")
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 5
        # another key has its own bucket; its writes have their own (1 per minute) limit
        key = {"X-API-Key": KEY}
        first = c.put("/api/batteries/APITEST_0008/desired", json={"max_soc": 70}, headers=key)
        second = c.put("/api/batteries/APITEST_0008/desired", json={"max_soc": 71}, headers=key)
        assert first.status_code == 200, first.text
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1


def test_cors_is_closed_by_default(client: httpx.Client) -> None:
    r = client.options("/api/batteries", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/batteries", "/api/batteries/{battery_id}", "/api/batteries/{battery_id}/desired",
                 "/api/battery/configure", "/api/fleet/summary", "/api/export", "/api/health"):
        assert path in spec["paths"]
    assert client.get("/docs").status_code == 200


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route_and_twin_lookups_by_query(api: str) -> None:
    import asyncio

    route = "/api/batteries/{battery_id}"
    with httpx.Client(base_url=api, timeout=30) as c:
        before = c.get("/metrics").text
        assert c.get("/api/batteries/APITEST_0003").status_code == 200
        assert c.get("/api/batteries/NO_SUCH_PACK").status_code == 404

    async def concurrent() -> list[int]:
        async with httpx.AsyncClient(base_url=api, timeout=30) as ac:
            got = await asyncio.gather(*(ac.get(f"/api/batteries/APITEST_{i % N_BATTERIES:04d}") for i in range(60)))
            return [r.status_code for r in got]

    assert asyncio.run(concurrent()) == [200] * 60
    with httpx.Client(base_url=api, timeout=30) as c:
        response = c.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")
    ok = _metric(after, "evtwin_api_requests_total", method="GET", route=route, status="200")
    assert ok - _metric(before, "evtwin_api_requests_total", method="GET", route=route, status="200") == 61
    missing = _metric(after, "evtwin_api_requests_total", method="GET", route=route, status="404")
    assert missing - _metric(before, "evtwin_api_requests_total", method="GET", route=route, status="404") == 1
    assert _metric(after, "evtwin_api_request_seconds_count", method="GET", route=route) >= 62
    lookups = _metric(after, "evtwin_api_twin_lookups_total") - _metric(before, "evtwin_api_twin_lookups_total")
    queries = _metric(after, "evtwin_api_twin_queries_total") - _metric(before, "evtwin_api_twin_queries_total")
    assert lookups == 62 and 1 <= queries < lookups  # the 60 concurrent ones shared queries
    assert _metric(after, "evtwin_api_ws_clients", stream="fleet") == 0
    assert _metric(after, "process_resident_memory_bytes") > 10e6
