"""``evtwin simulate`` (the live fleet) and ``evtwin ingest`` (the MQTT ingest bridge)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from connectors import kafka
from connectors.endpoints import resolve_endpoints
from streams.cli import CliError
from streams.runtime.codecs import codec_for, stop_on_signals
from streams.settings import Settings
from streams.topics import COMMANDS, GROUND_TRUTH, REPORTED, TELEMETRY, TELEMETRY_DLQ


def register(sub: Any, opt: Any) -> None:
    p = sub.add_parser("simulate", help="run the simulated fleet and produce its telemetry",
                       description="Simulate a fleet of battery packs (equivalent-circuit, thermal "
                       "and aging physics, faults) and produce one Avro reading per pack per tick to "
                       f"{TELEMETRY}, keyed by battery id; the true state goes to {GROUND_TRUTH}.")
    add_sim_options(p, opt)
    opt.env(p, "--events", "EVTWIN_SIM_EVENTS", "stop after this many readings; 0 = never",
            default=0, type=int)
    opt.env(p, "--duration", "EVTWIN_SIM_DURATION", "stop after this many seconds; 0 = never",
            default=0.0, type=float)
    opt.flag(p, "--max-speed", "EVTWIN_SIM_MAX_SPEED",
             "ignore the wall clock and produce as fast as possible (load tests)")
    opt.flag(p, "--no-commands", "EVTWIN_SIM_NO_COMMANDS",
             f"do not apply the desired state from {COMMANDS} (nor report it on {REPORTED})")
    opt.setting(p, "--metrics-port", "metrics_port", "port of /metrics, /healthz and /readyz; "
                "unset or 0 = none", type=int)
    p.set_defaults(handler=run_simulate)

    p = sub.add_parser("ingest", help="bridge device telemetry from MQTT to Kafka",
                       description="Subscribe to ev/battery/<id>/telemetry (JSON) on the MQTT broker, "
                       f"validate each reading and forward it as Avro to {TELEMETRY}; invalid "
                       f"readings go to {TELEMETRY_DLQ} with the reason.")
    opt.setting(p, "--metrics-port", "metrics_port", "port of /metrics, /healthz and /readyz; "
                "unset or 0 = none", type=int)
    p.set_defaults(handler=run_ingest)


def add_sim_options(p: argparse.ArgumentParser, opt: Any) -> None:
    opt.setting(p, "--batteries", "sim_batteries", "packs in the fleet", type=int)
    opt.setting(p, "--rate", "sim_rate_hz", "readings per pack per second (Hz)", type=float)
    opt.setting(p, "--slices", "sim_slices", "parts each tick's readings are sent in, spread over "
                "the tick (1 = all packs at once)", type=int)
    opt.setting(p, "--speedup", "sim_speedup", "hours of aging per wall second; 0 = real time",
                type=float)
    opt.setting(p, "--seed", "sim_seed", "seed of the fleet", type=int)


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from models.physics.fleet import Fleet
    from streams.sources.simulator import FleetSimulator

    endpoints = resolve_endpoints(settings)
    present = kafka.list_topics(endpoints.kafka_bootstrap_servers)
    if TELEMETRY not in present:
        raise CliError(f"topic {TELEMETRY} does not exist; create it with `evtwin topics create`")
    _serve_health(settings)  # ready from here on: the topics exist, the fleet starts producing
    stop = stop_on_signals()
    fleet = Fleet(settings.sim_batteries, settings.sim_seed, start_time_s=time.time())
    truth = codec_for(GROUND_TRUTH, endpoints) if settings.sim_ground_truth else None
    producer = kafka.producer(endpoints.kafka_bootstrap_servers)
    commands = None
    if not args.no_commands and COMMANDS in present and REPORTED in present:
        from streams.sources.commands import CommandApplier

        commands = CommandApplier(
            kafka.consumer(endpoints.kafka_bootstrap_servers, "evtwin-simulator-commands"),
            producer, codec_for(COMMANDS, endpoints), codec_for(REPORTED, endpoints),
            present[COMMANDS].partitions)
    elif not args.no_commands:
        print(f"topics {COMMANDS}/{REPORTED} missing: desired state not applied "
              "(create them with `evtwin topics create`)", file=sys.stderr)
    sim = FleetSimulator(fleet, producer, codec_for(TELEMETRY, endpoints), truth,
                         settings.sim_rate_hz, settings.sim_speedup, commands=commands,
                         slices=settings.sim_slices)
    print(f"simulating {settings.sim_batteries} packs at {settings.sim_rate_hz:g} Hz, "
          f"{settings.sim_speedup:g} h of aging per second → {TELEMETRY}", file=sys.stderr)
    stats = sim.run(stop, max_events=args.events, duration_s=args.duration,
                    realtime=not args.max_speed)
    rate = stats.events / stats.seconds if stats.seconds else 0.0
    if commands is not None:
        commands.close()
    print(f"produced {stats.events} readings in {stats.seconds:.1f} s ({rate:,.0f}/s); "
          f"{stats.dropped} not sent (sensor dropout)", file=sys.stderr)
    return 0


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from streams.sources.ingest import IngestBridge, run_bridge

    endpoints = resolve_endpoints(settings)
    if not endpoints.mqtt_url:
        raise CliError("no MQTT broker: set EVTWIN_MQTT_URL or start the stack with `evtwin services`")
    stop = stop_on_signals()
    _serve_health(settings, "mqtt")  # ready once subscribed on the MQTT broker
    bridge = IngestBridge(kafka.checked_producer(endpoints.kafka_bootstrap_servers),
                          codec_for(TELEMETRY, endpoints), codec_for(TELEMETRY_DLQ, endpoints),
                          int(settings.max_future_skew_s * 1000), int(settings.max_event_age_s * 1000))
    print(f"bridging {endpoints.mqtt_url} ev/battery/+/telemetry → {TELEMETRY}", file=sys.stderr)
    stats = run_bridge(bridge, endpoints.mqtt_url, stop)
    lost = f", lost {stats.lost} (not delivered to Kafka; see the log)" if stats.lost else ""
    print(f"forwarded {stats.forwarded}, dead-lettered {stats.dead_lettered}{lost}", file=sys.stderr)
    return 1 if stats.lost else 0


def _serve_health(settings: Settings, *conditions: str) -> None:
    """/metrics, /healthz and /readyz on ``EVTWIN_METRICS_PORT`` when it is set (not the default,
    which is the first score worker's); not ready until ``conditions`` are met."""
    from streams.runtime.health import HEALTH, serve

    HEALTH.expect(*conditions)
    if "metrics_port" in settings.model_fields_set and settings.metrics_port:
        try:
            serve(settings.metrics_port)
        except OSError as exc:
            raise CliError(f"cannot listen on metrics port {settings.metrics_port} ({exc.strerror}); "
                           "set --metrics-port / EVTWIN_METRICS_PORT to another port (0 = none)") from None
