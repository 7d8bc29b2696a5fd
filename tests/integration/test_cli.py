"""``evtwin topics``: produce and consume round-trip records through the real broker, in both
framings; bad input gives one clear error line, a non-zero exit, and loses nothing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from streams.topics import topic_specs
from tests.support.cli import cli_env, run_cli


def _telemetry(battery: str, n: int) -> list[dict[str, object]]:
    return [
        {"event_id": str(uuid.uuid4()), "battery_id": battery, "timestamp": "2025-10-20T10:30:15.123Z",
         "seq": i, "soc": 80.0 - i, "soh": 95.2, "voltage": 380.5, "current": 105.3,
         "temperature": 32.1, "charge_cycles": 150, "power_consumption": 40.1}
        for i in range(n)
    ]


def _consume_battery(env: dict[str, str], battery: str) -> list[dict[str, object]]:
    result = run_cli(["topics", "consume", "ev.telemetry.v1", "--from-beginning"], env)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return [r for r in records if r["battery_id"] == battery]


@pytest.mark.parametrize("framing", ["single-object", "confluent"])
def test_produce_then_consume_round_trips(stack, framing: str) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    env = cli_env(settings.state_dir)
    battery = f"BAT_{framing.upper().replace('-', '_')}"
    sent = _telemetry(battery, 5)
    lines = "\n".join(json.dumps(r) for r in sent) + "\n"
    result = run_cli(["topics", "produce", "ev.telemetry.v1", "--framing", framing], env, stdin=lines)
    assert result.returncode == 0, result.stderr
    assert f"produced 5 record(s) to ev.telemetry.v1 ({framing} framing)" in result.stderr
    got = _consume_battery(env, battery)
    assert [r["event_id"] for r in got] == [r["event_id"] for r in sent]  # all, in order
    assert got[0]["timestamp"] == "2025-10-20T10:30:15.123Z"
    assert got[0]["soc"] == 80.0 and got[0]["mode"] == "UNKNOWN"


def test_consume_with_meta_and_limit(stack) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    env = cli_env(settings.state_dir)
    sent = _telemetry("BAT_META", 3)
    run_cli(["topics", "produce", "ev.telemetry.v1"], env,
            stdin="\n".join(json.dumps(r) for r in sent))
    result = run_cli(["topics", "consume", "ev.telemetry.v1", "--from-beginning", "--limit", "2",
                      "--with-meta"], env)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    assert {"topic", "partition", "offset", "key", "value"} <= set(rows[0])


def test_malformed_line_fails_clearly_and_keeps_what_came_before(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    env = cli_env(settings.state_dir)
    good = _telemetry("BAT_BADLINE", 2)
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(good[0]) + "\n" + json.dumps(good[1]) + "\n{not json\n")
    result = run_cli(["topics", "produce", "ev.telemetry.v1", "--file", str(path)], env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "evtwin: error: line 3: invalid JSON (Expecting property name enclosed in double quotes "
        "at column 2); 2 record(s) before it were produced"
    ]
    assert [r["event_id"] for r in _consume_battery(env, "BAT_BADLINE")] == [g["event_id"] for g in good]


def test_record_missing_a_field_fails_clearly(stack) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    record = _telemetry("BAT_MISSING", 1)[0]
    del record["voltage"]
    result = run_cli(["topics", "produce", "ev.telemetry.v1"], cli_env(settings.state_dir),
                     stdin=json.dumps(record))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 1" in lines[0] and "voltage" in lines[0]


def test_unknown_topic_fails_clearly(stack) -> None:  # type: ignore[no-untyped-def]
    settings, _ = stack
    result = run_cli(["topics", "consume", "ev.nope.v1"], cli_env(settings.state_dir))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "evtwin: error: unknown topic 'ev.nope.v1'; our topics are: "
        + ", ".join(t.name for t in topic_specs())
    ]
    assert "ev.telemetry.v1, ev.predictions.v1, ev.alerts.v1" in result.stderr


def test_no_running_stack_says_how_to_start_one(state_dir: Path) -> None:
    result = run_cli(["topics", "list"], cli_env(state_dir))
    assert result.returncode == 1
    assert "start one with `evtwin services`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_port_in_use_fails_clearly(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    busy = ep.kafka_bootstrap_servers.rsplit(":", 1)[1]
    result = run_cli(["services", "--kafka-port", busy], cli_env(state_dir))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"evtwin: error: kafka: port {busy} on 127.0.0.1 is in use; stop what uses it, or set "
        "EVTWIN_EMBEDDED_KAFKA_PORT to another port (0 picks a free one)"
    ]


def test_invalid_setting_is_named(state_dir: Path) -> None:
    result = run_cli(["topics", "list"], cli_env(state_dir, EVTWIN_TOPIC_PARTITIONS="many"))
    assert result.returncode == 2
    assert "EVTWIN_TOPIC_PARTITIONS" in result.stderr


def test_help_names_environment_variables(state_dir: Path) -> None:
    result = run_cli(["topics", "consume", "--help"], cli_env(state_dir))
    assert result.returncode == 0
    for var in ("EVTWIN_CONSUME_LIMIT", "EVTWIN_CONSUME_FOLLOW", "EVTWIN_CONSUME_FROM_BEGINNING"):
        assert var in result.stdout
    result = run_cli(["up", "--help"], cli_env(state_dir))
    assert "EVTWIN_KAFKA_BROKER" in result.stdout and "EVTWIN_TOPIC_PARTITIONS" in result.stdout
