"""``evtwin sink`` and ``evtwin mqtt-bridge``: the fan-out of predictions and alerts."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.endpoints import resolve_endpoints
from streams.cli import CliError
from streams.settings import Settings


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("sink", help="write predictions and alerts to PostgreSQL/TimescaleDB",
                       description="Consume ev.predictions.v1 and ev.alerts.v1 and write them in "
                       "batches to ev_telemetry, battery_state and ev_alerts (migrations run at "
                       "start). Offsets are committed after the rows are durable; replays change "
                       "no row; a database outage pauses the sink, which retries.")
    opt.setting(p, "--strategy", "sink_strategy", "batch write strategy", choices=["copy", "executemany"])
    opt.setting(p, "--metrics-port", "metrics_port", "Prometheus /metrics port; 0 = none", type=int)
    p.set_defaults(handler=run_sink_cmd)

    p = sub.add_parser("mqtt-bridge", help="publish twin state and alerts to MQTT",
                       description="Consume ev.predictions.v1 and ev.alerts.v1 and publish "
                       "ev/battery/<id>/state (retained), ev/battery/<id>/alert (QoS 1) and "
                       "ev/fleet/summary (retained). Alerts survive broker outages in a bounded "
                       "buffer.")
    opt.setting(p, "--metrics-port", "metrics_port", "Prometheus /metrics port; 0 = none", type=int)
    p.set_defaults(handler=run_bridge_cmd)


def run_sink_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from streams.sinks.app import run_sink

    endpoints = resolve_endpoints(settings)
    if not endpoints.database_url:
        raise CliError("no database: set EVTWIN_DATABASE_URL or start the stack with `evtwin services`")
    return run_sink(settings, endpoints)


def run_bridge_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from streams.sinks.app import run_bridge

    endpoints = resolve_endpoints(settings)
    if not endpoints.mqtt_url:
        raise CliError("no MQTT broker: set EVTWIN_MQTT_URL or start the stack with `evtwin services`")
    return run_bridge(settings, endpoints)
