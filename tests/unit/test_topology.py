"""One process topology, three descriptions: `evtwin up`, docker compose and Kubernetes run the
same processes with the same commands, the same metrics ports, the same EVTWIN_* settings and the
same stateful services (image for image); Prometheus scrapes each process where it listens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings
from tests.support.k8s import IMAGE, env_of, find, ours, render
from tests.support.paths import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROMETHEUS = yaml.safe_load((REPO / "infra" / "prometheus" / "prometheus.yml").read_text())
#: The shared credentials each process uses (compose hands all of them to every service).
NEEDS = {"sink": {"EVTWIN_DATABASE_URL"}, "mqtt-bridge": {"EVTWIN_MQTT_URL"}, "ingest": {"EVTWIN_MQTT_URL"},
         "api": {"EVTWIN_DATABASE_URL", "EVTWIN_MQTT_URL"}, "groundtruth-sink": {"EVTWIN_DATABASE_URL"},
         "retrain": {"EVTWIN_DATABASE_URL"}, "online-accuracy": {"EVTWIN_DATABASE_URL"}}
#: Settings that are secrets (SecretStr): from the Secret evtwin-secrets in Kubernetes, never a ConfigMap.
SECRETS = {f"EVTWIN_{n.upper()}" for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
#: `evtwin api` has its own probe (/api/health on its HTTP port), no metrics port.
OPTIONAL = {"api"}
#: Scheduled work: a compose service that repeats itself (`--every`), a CronJob in Kubernetes.
SCHEDULED = {"retrain"}


def _compose_processes(kind: str = "long-running") -> dict[str, dict[str, Any]]:
    """Services of ours, long-running or scheduled: name -> {command, env}."""
    out = {}
    for name, svc in SERVICES.items():
        if svc.get("image", "").split(":")[0] == IMAGE and svc.get("restart") != "no" \
                and (name in SCHEDULED) == (kind == "scheduled"):
            out[name] = {"command": list(svc["command"]), "env": dict(svc.get("environment", {}))}
    return out


def _k8s_processes(kind: str = "Deployment") -> dict[str, dict[str, Any]]:
    """Deployments (or CronJobs) of ours: name -> {command, env}."""
    docs = render("prod")
    config = find(docs, "ConfigMap", "evtwin-config")["data"]
    return {w["metadata"]["name"]: {"command": list(main["args"]), "env": {**config, **env_of(main)}}
            for w, main in ours(docs) if w["kind"] == kind}


def _up_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> list[list[str]]:
    """The command lines `evtwin up --workers 2` starts (after `python -m streams.cli` and its
    global options) with ``settings``, planned without starting anything."""
    from connectors.embedded.process import ManagedProcess
    from streams.cli import build_parser, stack_cmd

    monkeypatch.setattr(ManagedProcess, "start", lambda self: None)
    procs: list[Any] = []
    args = build_parser({}).parse_args(["up", "--workers", "2"])  # every option at its default
    args.resolved_api_port = 8000  # what `up` decides before it starts the pipeline
    stack_cmd._pipeline(Settings(state_dir=tmp_path, workers=2, **settings), args, procs)
    lines = []
    for proc in procs:
        argv = proc.argv[proc.argv.index("streams.cli") + 1:]
        while argv[0].startswith("--"):  # global options: --state-dir X --log-level Y …
            argv = argv[2:]
        lines.append(argv)
    return lines


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_compose_kubernetes_and_up_run_the_same_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose, k8s = _compose_processes(), _k8s_processes()
    up = {argv[0] for argv in _up_processes(tmp_path, monkeypatch)}
    assert set(compose) - OPTIONAL == set(k8s) - OPTIONAL, "the same names in compose and Kubernetes"
    for name in set(compose) & set(k8s):
        assert compose[name]["command"] == k8s[name]["command"], name
    commands = {p["command"][0] for p in compose.values()}
    assert up - OPTIONAL == commands - OPTIONAL == {p["command"][0] for p in k8s.values()} - OPTIONAL
    assert "api" in {p["command"][0] for p in k8s.values()}
    assert compose["api"]["command"] == k8s["api"]["command"]


def test_every_process_listens_on_the_same_metrics_port_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose, k8s = _compose_processes(), _k8s_processes()
    scraped = {cfg["job_name"]: cfg["dns_sd_configs"][0]["port"] for cfg in PROMETHEUS["scrape_configs"]
               if "dns_sd_configs" in cfg}
    for name in set(compose) - OPTIONAL:
        port = compose[name]["env"]["EVTWIN_METRICS_PORT"]
        assert k8s[name]["env"]["EVTWIN_METRICS_PORT"] == port, name
        assert port in SERVICES[name].get("expose", []), name
        assert scraped.get(name) == int(port), f"Prometheus scrapes {name} on {scraped.get(name)}, not {port}"
    # `evtwin up` runs them all on one host: each a port of its own (0 = none), never a clash.
    up_ports = [_option(argv, "--metrics-port") for argv in _up_processes(tmp_path, monkeypatch)
                if argv[0] not in OPTIONAL]
    assert None not in up_ports, "every process of `evtwin up` is told its metrics port"
    given = [p for p in up_ports if p != "0"]
    assert len(given) == len(set(given)) >= 4


def test_compose_checks_the_readiness_kubernetes_probes() -> None:
    k8s = render("prod")
    for name, svc in SERVICES.items():
        if svc.get("image", "").split(":")[0] != IMAGE or svc.get("restart") == "no" or name in OPTIONAL:
            continue
        if name in SCHEDULED:  # idle between runs, no endpoint: a CronJob has no probe either
            assert svc["healthcheck"] == {"disable": True}, name
            continue
        test = " ".join(svc["healthcheck"]["test"])
        assert "EVTWIN_METRICS_PORT" in test and "/readyz" in test, name
        probe = find(k8s, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz", name
    assert SERVICES["topics"]["healthcheck"] == {"disable": True}


def test_compose_and_kubernetes_give_the_same_settings() -> None:
    k8s = {**_k8s_processes(), **_k8s_processes("CronJob")}
    fields = {f"EVTWIN_{name.upper()}" for name in Settings.model_fields}
    shared = set(COMPOSE["x-evtwin"]["environment"])
    assert {"EVTWIN_DATABASE_URL", "EVTWIN_MQTT_URL"} <= SECRETS
    for name, proc in {**_compose_processes(), **_compose_processes("scheduled")}.items():
        theirs = {k: v for k, v in proc["env"].items() if k.startswith("EVTWIN_")}
        mine = k8s[name]["env"]
        # Compose hands every service every shared credential; Kubernetes only those it uses.
        assert {k for k in shared & SECRETS if k in mine} == NEEDS.get(name, set()), name
        for key, value in theirs.items():
            if key in SECRETS:
                if key in shared and key not in NEEDS.get(name, set()):
                    continue
                assert isinstance(mine.get(key), dict) and mine[key]["secretKeyRef"]["name"] == "evtwin-secrets" \
                    and mine[key]["secretKeyRef"]["key"] == key, f"{name} {key}: from the Secret"
            elif "${" in str(value):  # set per deployment (.env): Kubernetes sets it too
                assert key in mine, f"{name}: Kubernetes lacks {key}"
            else:
                assert mine.get(key) == value, f"{name} {key}: compose {value!r}, Kubernetes {mine.get(key)!r}"
    for proc in k8s.values():
        unknown = {k for k in proc["env"] if k.startswith("EVTWIN_")} - fields
        assert not unknown, f"not settings: {sorted(unknown)}"
    config = find(render("prod"), "ConfigMap", "evtwin-config")["data"]
    assert not SECRETS & set(config), "a secret in the ConfigMap"


def test_the_stateful_services_are_the_same_images_on_the_same_ports() -> None:
    docs = render("prod")
    for name in ("redpanda", "timescaledb", "mosquitto"):
        sts = find(docs, "StatefulSet", name)
        assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == SERVICES[name]["image"], name
    config = find(docs, "ConfigMap", "evtwin-config")["data"]
    secret = find(render("dev"), "Secret", "evtwin-secrets")["stringData"]
    urls = [config["EVTWIN_KAFKA_BOOTSTRAP_SERVERS"], config["EVTWIN_SCHEMA_REGISTRY_URL"],
            secret["EVTWIN_DATABASE_URL"], secret["EVTWIN_MQTT_URL"]]
    for url in urls:  # each names a Service of the manifests and a port it serves
        host, port = url.split("@")[-1].split("//")[-1].split("/")[0].split(":")
        service = find(docs, "Service", host)
        assert int(port) in {p["port"] for p in service["spec"]["ports"]}, url
    compose_env = SERVICES["score-worker"]["environment"]
    assert compose_env["EVTWIN_KAFKA_BOOTSTRAP_SERVERS"] == config["EVTWIN_KAFKA_BOOTSTRAP_SERVERS"]


def _without_every(argv: list[str]) -> list[str]:
    """``argv`` without its ``--every PERIOD``: what one run of a scheduled process does."""
    if "--every" not in argv:
        return argv
    i = argv.index("--every")
    return argv[:i] + argv[i + 2:]


def test_retraining_runs_the_same_job_on_the_same_schedule_everywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose, k8s = _compose_processes("scheduled"), _k8s_processes("CronJob")
    assert set(compose) == set(k8s) == SCHEDULED
    up = [argv for argv in _up_processes(tmp_path, monkeypatch, retrain_every="30d") if argv[0] == "retrain"]
    assert len(up) == 1
    # One run is the same command in all three; compose and `up` repeat it with --every.
    assert _without_every(compose["retrain"]["command"]) == k8s["retrain"]["command"] == _without_every(up[0])
    period = _option(compose["retrain"]["command"], "--every")
    assert period == "${EVTWIN_RETRAIN_EVERY:-30d}", period  # .env sets it, as for `evtwin up`
    default = period.removeprefix("${EVTWIN_RETRAIN_EVERY:-").removesuffix("}")
    assert Settings(retrain_every=default).retrain_every == 30 * 86400 == float(_option(up[0], "--every") or 0)
    minute, hour, day, month, weekday = find(render("prod"), "CronJob", "retrain")["spec"]["schedule"].split()
    assert day.isdigit() and (month, weekday) == ("*", "*"), "the CronJob runs monthly, as compose's 30d"
    # Compose must not restart a run that finished (EVTWIN_RETRAIN_EVERY=0: one run at start).
    assert SERVICES["retrain"]["restart"] == "on-failure"


def test_retraining_has_a_ground_truth_sink_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retraining labels what the twin collected with ev_ground_truth: whoever runs it runs the
    ground-truth sink too, with the same command."""
    command = ["sink", "--kind", "groundtruth"]
    up = [argv for argv in _up_processes(tmp_path, monkeypatch, retrain_every="30d")
          if argv[:3] == command]
    assert len(up) == 1
    assert [n for n, p in _compose_processes().items() if p["command"] == command] == ["groundtruth-sink"]
    assert [n for n, p in _k8s_processes().items() if p["command"] == command] == ["groundtruth-sink"]
    scraped = {cfg["job_name"] for cfg in PROMETHEUS["scrape_configs"]}
    assert "groundtruth-sink" in scraped
    assert not [argv for argv in _up_processes(tmp_path, monkeypatch) if argv[:3] == command], \
        "`evtwin up` runs it only when retraining is scheduled"


def test_retraining_writes_the_model_registry_the_workers_read() -> None:
    """Compose, like Kubernetes, shares one model registry: retraining writes it, workers read it."""
    model_dir = COMPOSE["x-evtwin"]["environment"]["EVTWIN_MODEL_DIR"]
    assert model_dir == find(render("prod"), "ConfigMap", "evtwin-config")["data"]["EVTWIN_MODEL_DIR"]

    def mount(service: str) -> tuple[str, str]:
        (volume,) = [v for v in SERVICES[service]["volumes"] if v.split(":")[1] == model_dir]
        name, _, *mode = volume.split(":")
        return name, (mode or ["rw"])[0]

    assert mount("retrain") == ("model-registry", "rw")
    assert mount("score-worker") == ("model-registry", "ro")
    assert "model-registry" in COMPOSE["volumes"]


def test_the_online_accuracy_job_runs_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`evtwin up` runs it while its simulator publishes the truth; compose and Kubernetes always
    (it idles without truth), with the same command, and Prometheus scrapes it."""
    command = ["sink", "--kind", "accuracy"]
    up = [argv for argv in _up_processes(tmp_path, monkeypatch) if argv[:3] == command]
    assert len(up) == 1 and _option(up[0], "--metrics-port") not in (None, "0")
    assert [n for n, p in _compose_processes().items() if p["command"] == command] == ["online-accuracy"]
    assert [n for n, p in _k8s_processes().items() if p["command"] == command] == ["online-accuracy"]
    assert "online-accuracy" in {cfg["job_name"] for cfg in PROMETHEUS["scrape_configs"]}
    assert not [argv for argv in _up_processes(tmp_path, monkeypatch, sim_ground_truth=False)
                if argv[:3] == command], "no truth, no accuracy job"
