"""``evtwin sink`` and ``evtwin mqtt-bridge``: the fan-out of predictions and alerts."""

from __future__ import annotations

import argparse
from typing import Any

from connectors.endpoints import resolve_endpoints
from streams.settings import Settings
from streams.sinks import SINK_KINDS


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("sink", help="write predictions and alerts to PostgreSQL/TimescaleDB",
                       description="Consume ev.predictions.v1 and ev.alerts.v1 and write them in "
                       "batches to ev_telemetry, battery_state and ev_alerts (migrations run at "
                       "start). Offsets are committed after the rows are durable; replays change "
                       "no row; a database outage pauses the sink, which retries.")
    opt.setting(p, "--strategy", "sink_strategy", "batch write strategy", choices=["copy", "executemany"])
    opt.setting(p, "--metrics-port", "metrics_port", "Prometheus /metrics port; 0 = none", type=int)
    opt.env(p, "--kind", "EVTWIN_SINK_KIND", "which sink to run (one consumer group per kind): "
            + ", ".join(SINK_KINDS), default="database", choices=list(SINK_KINDS))
    p.set_defaults(handler=run_sink_cmd)

    p = sub.add_parser("mqtt-bridge", help="publish twin state and alerts to MQTT",
                       description="Consume ev.predictions.v1 and ev.alerts.v1 and publish "
                       "ev/battery/<id>/state (retained), ev/battery/<id>/alert (QoS 1) and "
                       "ev/fleet/summary (retained). Alerts survive broker outages in a bounded "
                       "buffer.")
    opt.setting(p, "--metrics-port", "metrics_port", "Prometheus /metrics port; 0 = none", type=int)
    p.set_defaults(handler=run_bridge_cmd)


def run_sink_cmd(args: argparse.Namespace, settings: Settings) -> int:
    return _run(args.kind, settings)


def run_bridge_cmd(args: argparse.Namespace, settings: Settings) -> int:
    return _run("mqtt", settings)


def _run(kind: str, settings: Settings) -> int:
    """Run the sink of ``kind`` in its own consumer group: EVTWIN_SINK_APP_ID for the database,
    EVTWIN_BRIDGE_APP_ID for MQTT, ``evtwin-sink-<kind>`` for any other."""
    from streams.sinks.app import make_sink, run_sinks

    groups = {"database": settings.sink_app_id, "mqtt": settings.bridge_app_id}
    endpoints = resolve_endpoints(settings)
    sink = make_sink(kind, settings, endpoints)
    return run_sinks(settings, endpoints, groups.get(kind, f"evtwin-sink-{kind}"), [sink])
