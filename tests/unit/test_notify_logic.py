"""The notifiers' pure logic: routing, the rate limiter, Retry-After parsing, the journal, the
rendered message and the export sink's file names."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

from streams.sinks.export import file_name, period_start
from streams.sinks.notify import DeliveryJournal, RateLimiter, Route, battery_link, render
from streams.sinks.webhook import retry_after_s, slack_payload


def _alert(**kw: object) -> dict:
    a = {"alert_id": "a1", "battery_id": "BAT 7/x", "rule": "low_soc", "severity": "WARNING",
         "status": "OPENED", "value": 11.25, "threshold": 15.0, "message": "low", "event_id": "e",
         "opened_at": 0, "resolved_at": None}
    a.update(kw)
    return a


def test_route_by_minimum_severity_and_rule_list() -> None:
    route = Route.parse("WARNING", " low_soc, over_temperature ,")
    assert route.rules == frozenset({"low_soc", "over_temperature"})
    assert route.accepts(_alert())
    assert route.accepts(_alert(severity="CRITICAL", rule="over_temperature"))
    assert not route.accepts(_alert(severity="INFO"))
    assert not route.accepts(_alert(rule="anomaly"))
    assert Route.parse("INFO", "").accepts(_alert(rule="anything", severity="INFO"))


def test_rate_limiter_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one token per 10 s, bursts of 6
    assert limiter.available() == 6
    for _ in range(6):
        limiter.take()
    assert limiter.available() == 0 and 9.9 < limiter.wait_s() <= 10.0
    now[0] = 25.0
    assert limiter.available() == 2
    now[0] = 1000.0
    assert limiter.available() == 6  # never more than the burst


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s(None) == 5.0 and retry_after_s("soon") == 5.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_s(later) <= 31
    assert retry_after_s("-3") == 0.0


def test_journal_keeps_keys_across_reopen_and_compacts(tmp_path: Path) -> None:
    j = DeliveryJournal(tmp_path / "j.txt", keep=3)
    j.add(["a:OPENED", "b:OPENED", "a:OPENED"])
    j.add(["c:OPENED", "d:OPENED"])
    j.close()
    again = DeliveryJournal(tmp_path / "j.txt", keep=3)
    assert "d:OPENED" in again and "b:OPENED" in again and "a:OPENED" not in again
    again.close()
    assert (tmp_path / "j.txt").read_text().split() == ["b:OPENED", "c:OPENED", "d:OPENED"]


def test_message_names_battery_rule_values_and_an_escaped_link() -> None:
    msg = render(_alert(), "https://twin.example/")
    assert msg.subject == "[WARNING] low_soc OPENED on BAT 7/x"
    assert "Value:      11.25 (threshold 15)" in msg.body
    assert battery_link("https://twin.example/", "BAT 7/x") == "https://twin.example/battery.html?id=BAT%207%2Fx"
    assert msg.links[0] in msg.body and msg.links[0] in slack_payload(msg)["text"]


def test_export_file_names_sort_by_hour_partition_offset() -> None:
    start = period_start(1_764_738_123_456, 3600)  # 2025-12-03 05:02:03.456 UTC
    assert start == 1_764_738_000
    assert file_name(3, start, 120, 4567) == (
        "date=2025-12-03/ev_predictions-20251203T050000Z-p003-000000000120-000000004567.parquet")
