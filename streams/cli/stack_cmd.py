"""``evtwin services`` and ``evtwin up``: run the embedded stack (and the pipeline) until Ctrl-C.

``up`` supervises the pipeline's processes: one that exits after start-up is restarted with
backoff (``EVTWIN_SUPERVISE_*``), counted in ``evtwin_process_restarts_total`` on ``up``'s own
metrics endpoint and in the live view; a failure at start-up, or too many restarts, stops ``up``.
The embedded services are not restarted: a service that dies stops ``up``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from connectors import ServiceStartError
from connectors.embedded.process import (
    ManagedProcess,
    RestartPolicy,
    SupervisionError,
    Supervisor,
    stop_all,
)
from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from connectors.kafka import ensure_topics, list_topics
from streams.cli import CliError
from streams.settings import REPO_ROOT, Settings
from streams.topics import topic_specs


def register(sub: Any, opt: Any) -> None:
    for name, handler, help_text in (
        ("services", run_services, "start only the embedded services, print their URLs, run until Ctrl-C"),
        ("up", run_up, "start the embedded services and the pipeline, run until Ctrl-C"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text + ".")
        opt.setting(p, "--kafka-broker", "kafka_broker", "embedded Kafka-compatible broker",
                    choices=["noida", "tansu"])
        opt.setting(p, "--mqtt-broker", "mqtt_broker", "embedded MQTT broker",
                    choices=["auto", "amqtt", "mosquitto"])
        opt.setting(p, "--kafka-port", "embedded_kafka_port", "embedded broker port, 0 = any free", type=int)
        opt.setting(p, "--postgres-port", "embedded_postgres_port", "embedded PostgreSQL port, 0 = any free", type=int)
        opt.setting(p, "--mqtt-port", "embedded_mqtt_port", "embedded MQTT port, 0 = any free", type=int)
        opt.setting(p, "--schema-registry-port", "embedded_schema_registry_port",
                    "embedded schema registry port, 0 = any free", type=int)
        p.add_argument("--with-schema-registry", dest="embedded_schema_registry",
                       action="store_const", const=True, default=None,
                       help="also run the embedded schema registry, so records use the Confluent "
                       "framing (env EVTWIN_EMBEDDED_SCHEMA_REGISTRY=true)")
        if name == "up":
            from streams.cli.sim_cmd import add_sim_options

            opt.setting(p, "--partitions", "topic_partitions", "partitions per topic", type=int)
            add_sim_options(p, opt)
            opt.flag(p, "--no-simulator", "EVTWIN_UP_NO_SIMULATOR",
                     "do not run the fleet simulator (devices or other producers feed the twin)")
            opt.setting(p, "--workers", "workers", "score-worker replicas", type=int)
            opt.setting(p, "--metrics-port", "metrics_port",
                        "Prometheus port of the first worker (replica i gets port + i)", type=int)
            opt.flag(p, "--no-live", "EVTWIN_UP_NO_LIVE", "print no live summary (logs only)")
            opt.flag(p, "--no-api", "EVTWIN_UP_NO_API", "do not run the HTTP API and web view")
            opt.setting(p, "--api-port", "api_port", "port of the API and web view, 0 = any free",
                        type=int)
        opt.env(p, "--exit-after", f"EVTWIN_{name.upper()}_EXIT_AFTER",
                "stop by itself after this many seconds (for scripts and smoke tests); 0 = never",
                default=0.0, type=float)
        p.set_defaults(handler=handler)


class _Stop(BaseException):
    """Raised in the main thread by SIGINT (Ctrl-C), SIGTERM or SIGHUP: one shutdown path. A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` it passes through (a
    client library's, a readiness probe's) swallows it."""


def _install_sigterm() -> None:
    stopping = False

    def handler(signum: int, frame: Any) -> None:
        # Once only: a second Ctrl-C (or the SIGINT `timeout` forwards after pkill's) raised in
        # the middle of the shutdown, inside subprocess's bookkeeping, and left a traceback. The
        # shutdown bounds its own waits (processes that do not stop are killed).
        nonlocal stopping
        if stopping:
            sys.stderr.write("evtwin: already stopping; processes that do not stop in time are killed\n")
            return
        stopping = True
        raise _Stop()

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


def _print_endpoints(console: Console, stack: EmbeddedStack, ep: Endpoints, settings: Settings) -> None:
    table = Table(title="EV battery twin — embedded stack", title_justify="left")
    for col in ("service", "kind", "URL", "ready in"):
        table.add_column(col)
    started = {svc.name: svc for svc in stack.services}
    rows = [
        ("kafka", "kafka", ep.kafka_bootstrap_servers),
        ("postgres", "postgres", ep.database_url),
        ("mqtt", "mqtt", ep.mqtt_url),
        ("schema-registry", "schema registry", ep.schema_registry_url),
    ]
    for name, label, url in rows:
        svc = started.get(name)
        kind = getattr(svc, "kind", "embedded") if svc else ("external" if url else "—")
        ready = f"{stack.timings[name]:.2f} s" if name in stack.timings else ""
        table.add_row(label, kind, _redact(url) if url else "none", ready)
    table.add_row("mlflow", "sqlite file" if (ep.mlflow_tracking_uri or "").startswith("sqlite") else "external",
                  ep.mlflow_tracking_uri or "", "")
    console.print(table)
    console.print(f"URLs (with credentials) in [bold]{settings.stack_file}[/bold]; "
                  f"started in {stack.timings.get('total', 0):.2f} s.")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def _print_topics(console: Console, bootstrap: str) -> None:
    table = Table(title="Topics", title_justify="left")
    for col in ("topic", "partitions", "schema", "carries"):
        table.add_column(col)
    present = list_topics(bootstrap)
    for spec in topic_specs():
        parts = present[spec.name].partitions if spec.name in present else "missing"
        table.add_row(spec.name, str(parts), spec.schema, spec.doc)
    console.print(table)


def _watch(supervisor: Supervisor | None, services: list[ManagedProcess], exit_after: float,
           view: Any = None, console: Console | None = None, groups: Any = None) -> None:
    """Block until Ctrl-C, SIGTERM, ``exit_after`` seconds, a service dying or the supervisor
    giving up; poll the supervisor five times a second, let the group watch (noida-db only) look
    at the consumer groups, and refresh the live view (if any) every second.

    Raises:
        SupervisionError: An embedded service exited, or the supervisor gave up on a process.
    """
    from rich.live import Live

    deadline = time.monotonic() + exit_after if exit_after > 0 else None
    live = Live(console=console, auto_refresh=False) if view is not None else None
    if live is not None:
        live.start()
    next_render = 0.0
    try:
        while deadline is None or time.monotonic() < deadline:
            for proc in services:  # the pipeline needs them: no restart, stop with the reason
                if proc.returncode() is not None:
                    raise SupervisionError(proc.failure("unexpectedly"))
            if supervisor is not None:
                supervisor.poll()
            if groups is not None:
                groups.check()
            if live is not None and time.monotonic() >= next_render:
                live.update(view.render(view.snapshot()), refresh=True)
                next_render = time.monotonic() + 1.0
            time.sleep(0.2)
    finally:
        if live is not None:
            live.stop()


def _restart_policy(settings: Settings) -> RestartPolicy:
    return RestartPolicy(startup_s=settings.supervise_startup_s, backoff_s=settings.supervise_backoff_s,
                         backoff_max_s=settings.supervise_backoff_max_s,
                         max_restarts=settings.supervise_max_restarts, window_s=settings.supervise_window_s)


def _supervisor_metrics_port(settings: Settings) -> int:
    """``up``'s own Prometheus port: the setting, else the one after the MQTT bridge's (0 = none)."""
    if settings.supervisor_metrics_port is not None:
        return settings.supervisor_metrics_port
    return settings.metrics_port + settings.workers + 2 if settings.metrics_port else 0


_restarts_counter: Any = None


def _restarts_metric() -> Any:
    """``evtwin_process_restarts_total{process}``, registered once per process."""
    global _restarts_counter
    if _restarts_counter is None:
        from prometheus_client import Counter

        _restarts_counter = Counter("evtwin_process_restarts",
                                    "Pipeline processes of evtwin up restarted after an unexpected exit",
                                    ["process"])
    return _restarts_counter


def _serve_supervisor_metrics(port: int) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port)
    except OSError as exc:
        raise ServiceStartError(
            f"evtwin up metrics: cannot listen on port {port} ({exc.strerror}); stop what uses it, "
            "or set EVTWIN_SUPERVISOR_METRICS_PORT to another port (0 = none)") from None


def _process_label(proc: ManagedProcess) -> str:
    """The ``process`` label of a pipeline process: its log file's name (worker-1, sink, …)."""
    return proc.log_file.stem


def _group_of(settings: Settings, proc: ManagedProcess) -> str | None:
    """The consumer group a pipeline process is a member of, if any."""
    label = _process_label(proc)
    if label.startswith("worker-"):
        return settings.app_id
    if label in ("webhook", "email", "export", "accuracy"):  # evtwin sink --kind <label>
        return f"evtwin-sink-{label}"
    return {"sink": settings.sink_app_id, "mqtt-bridge": settings.bridge_app_id,
            "groundtruth-sink": "evtwin-sink-groundtruth"}.get(label)


def _group_watch(settings: Settings, bootstrap: str, procs: list[ManagedProcess], report: Any) -> Any:
    """On the embedded noida-db, which never drops a member that stopped talking to it: a
    :class:`connectors.embedded.groups.GroupWatch` of the pipeline's consumer groups. ``None`` on
    any other broker (their session and rebalance timeouts do it)."""
    if settings.kafka_bootstrap_servers is not None or settings.kafka_broker != "noida":
        return None
    from connectors.embedded.groups import GroupWatch

    groups = [g for g in (_group_of(settings, p) for p in procs) if g is not None]
    return GroupWatch(bootstrap, groups, report=report)


def _accuracy_metrics_port(settings: Settings) -> int:
    """The accuracy job's Prometheus port in ``up``: the one after ``up``'s own default port (the
    workers', the sink's and the bridge's come first); 0 when metrics_port is 0."""
    return settings.metrics_port + settings.workers + 3 if settings.metrics_port else 0


def _pipeline(settings: Settings, args: argparse.Namespace, procs: list[ManagedProcess]) -> None:
    """Start the pipeline's processes (ingest bridge, score workers, sinks, simulator), adding each
    to ``procs`` before it starts, so a Ctrl-C in the middle still stops those already running."""
    base = [sys.executable, "-m", "streams.cli", "--state-dir", str(settings.state_dir),
            "--log-level", settings.log_level, "--log-format", settings.log_format]
    logs = settings.state_dir / "logs"
    # Ingest and simulator serve no metrics here (the ports after the workers' go to the sinks).
    planned = [ManagedProcess("ingest bridge", base + ["ingest", "--metrics-port", "0"], logs / "ingest.log",
                              cwd=REPO_ROOT)]
    port = settings.metrics_port

    def next_port() -> str:
        nonlocal port
        value, port = port, (port + 1 if port else 0)
        return str(value)

    for i in range(settings.workers):
        planned.append(ManagedProcess(
            f"score worker {i + 1}", base + ["worker", "--metrics-port", next_port()],
            logs / f"worker-{i + 1}.log", cwd=REPO_ROOT))
    planned.append(ManagedProcess("database sink", base + ["sink", "--metrics-port", next_port()],
                                  logs / "sink.log", cwd=REPO_ROOT))
    planned.append(ManagedProcess("MQTT bridge", base + ["mqtt-bridge", "--metrics-port", next_port()],
                                  logs / "mqtt-bridge.log", cwd=REPO_ROOT))
    if settings.sim_ground_truth and not args.no_simulator:  # the truth to measure accuracy against
        planned.append(ManagedProcess(
            "accuracy job", base + ["sink", "--kind", "accuracy", "--metrics-port",
                                    str(_accuracy_metrics_port(settings))],
            logs / "accuracy.log", cwd=REPO_ROOT))
    if settings.retrain_every > 0:  # scheduled retraining labels what it collected with the truth
        planned.append(ManagedProcess("ground-truth sink", base + ["sink", "--kind", "groundtruth",
                                      "--metrics-port", "0"], logs / "groundtruth-sink.log", cwd=REPO_ROOT))
        planned.append(ManagedProcess("retrainer", base + ["retrain", "--every", repr(settings.retrain_every)],
                                      logs / "retrain.log", cwd=REPO_ROOT))
    if not args.no_api:
        planned.append(ManagedProcess(
            "API", base + ["api", "--host", settings.api_host, "--port", str(args.resolved_api_port)],
            logs / "api.log", cwd=REPO_ROOT))
    if not args.no_simulator:
        planned.append(ManagedProcess(
            "simulator",
            base + ["simulate", "--metrics-port", "0", "--batteries", str(settings.sim_batteries),
                    "--rate", str(settings.sim_rate_hz), "--speedup", str(settings.sim_speedup),
                    "--seed", str(settings.sim_seed)],
            logs / "simulator.log", cwd=REPO_ROOT))
    for kind, wanted in (("webhook", settings.webhook_url is not None),
                         ("email", settings.smtp_url is not None and bool(settings.email_to)),
                         ("export", settings.export_uri is not None)):
        if wanted:  # configured: alert notifications and the continuous export run too
            planned.append(ManagedProcess(f"{kind} sink", base + ["sink", "--kind", kind, "--metrics-port", "0"],
                                          logs / f"{kind}.log", cwd=REPO_ROOT))
    for proc in planned:
        procs.append(proc)
        proc.start()


def choose_api_port(settings: Settings, report: Any = None) -> int:
    """The API's port, known before the API starts: the setting when free; a free port chosen
    now when the setting is 0, or (reported) when the configured port is taken."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.api_host, settings.api_port))
        except OSError:
            sock.bind((settings.api_host, 0))
            if report is not None:
                report(f"port {settings.api_port} is taken: the API listens on "
                       f"{sock.getsockname()[1]} instead (set EVTWIN_API_PORT)")
        return int(sock.getsockname()[1])


def api_url(settings: Settings, port: int) -> str:
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{port}"


def _run(args: argparse.Namespace, settings: Settings, with_pipeline: bool) -> int:
    console = Console(stderr=False)
    assert threading.current_thread() is threading.main_thread()
    _install_sigterm()
    stack = EmbeddedStack(settings)
    procs: list[ManagedProcess] = []
    supervisor: Supervisor | None = None
    groups: Any = None
    view = None

    def report(line: str) -> None:  # above the live view, one line whatever the terminal's width
        console.print(f"{time.strftime('%H:%M:%S')} {line}", style="yellow", markup=False,
                      highlight=False, soft_wrap=True)

    try:
        endpoints = stack.start()
        _print_endpoints(console, stack, endpoints, settings)
        if with_pipeline:
            ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(settings.topic_partitions),
                          settings.topic_replication_factor)
            _print_topics(console, endpoints.kafka_bootstrap_servers)
            ensure_model(settings, console)
            metrics_port = _supervisor_metrics_port(settings)
            if metrics_port:
                _serve_supervisor_metrics(metrics_port)
            if not args.no_api:
                args.resolved_api_port = choose_api_port(settings, report)
            _pipeline(settings, args, procs)
            if not args.no_api:
                endpoints.api_url = api_url(settings, args.resolved_api_port)
                endpoints.write(settings.stack_file)
            restarts = _restarts_metric()
            for proc in procs:
                restarts.labels(_process_label(proc))  # every series exists from the start, at 0
            groups = _group_watch(settings, endpoints.kafka_bootstrap_servers, procs, report)

            def on_exit(proc: ManagedProcess) -> None:  # its partitions go to the live members now
                group = _group_of(settings, proc)
                if groups is not None and group is not None:
                    groups.clear(group, f"{proc.name} died in it")

            supervisor = Supervisor(procs, _restart_policy(settings), report=report, on_exit=on_exit,
                                    on_restart=lambda p: restarts.labels(_process_label(p)).inc())
            if not args.no_api:
                console.print(f"[bold]Web view and API: {endpoints.api_url}[/bold] "
                              f"(API docs {endpoints.api_url}/docs)")
            console.print(f"Pipeline: {', '.join(p.name for p in procs)} (logs in "
                          f"{settings.state_dir / 'logs'}; restarted when they exit"
                          + (f", restarts on http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "")
                          + "). Watch it with `evtwin topics consume ev.predictions.v1 --follow`.")
            if not args.no_live:
                view = _live_view(settings, endpoints, supervisor)
        console.print("Running. Press Ctrl-C to stop.")
        _watch(supervisor, [s.proc for s in stack.services if getattr(s, "proc", None)],
               args.exit_after, view, console, groups)
    except (KeyboardInterrupt, _Stop):
        console.print("Stopping…")
    except SupervisionError:
        console.print("Stopping everything: a process failed (see below).")
        raise
    except ServiceStartError:
        raise
    finally:
        if view is not None:
            view.close()
        if groups is not None:
            groups.close()
        stop_all(procs)  # together: a shutdown takes the slowest process's time, not the sum
        stack.stop()
    console.print("Stopped; no service left running.")
    return 0


def _live_view(settings: Settings, endpoints: Endpoints, supervisor: Supervisor) -> Any:
    from streams.tools.liveview import LiveView

    urls = [f"http://127.0.0.1:{settings.metrics_port + i}/metrics"
            for i in range(settings.workers)] if settings.metrics_port else []
    return LiveView(endpoints.kafka_bootstrap_servers, settings.app_id, settings.topic_partitions, urls,
                    restarts=supervisor.restarts)


def ensure_model(settings: Settings, console: Console) -> None:
    """Train a small, quick model on first run when ``EVTWIN_MODEL_DIR`` has none, and make it
    current; reuse the current one after.

    Raises:
        CliError: If the registry has candidates but none is current (promoting one is the user's
            call, not a quick model's).
    """
    from models.errors import ModelError, ModelNotFoundError
    from models.registry import latest_candidate
    from models.scorer import Scorer

    try:
        Scorer.load(settings.model_dir)
        return
    except ModelNotFoundError:
        candidate = latest_candidate(settings.model_dir)
        if candidate is not None:
            raise CliError(f"no current model in {settings.model_dir}, but {candidate.name} is a "
                           f"candidate: make it current with `evtwin model promote {candidate.name}`") from None
    except ModelError:
        pass
    console.print(f"No model in {settings.model_dir} yet: training a small, quick one "
                  "(full training: `evtwin train --promote`)…")
    from training.train import train

    train(None, settings.model_dir, quick=True, promote=True)


def run_services(args: argparse.Namespace, settings: Settings) -> int:
    return _run(args, settings, with_pipeline=False)


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    return _run(args, settings, with_pipeline=True)
