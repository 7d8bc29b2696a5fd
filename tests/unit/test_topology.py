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
         "api": {"EVTWIN_DATABASE_URL", "EVTWIN_MQTT_URL"}}
#: Settings that are secrets (SecretStr): from the Secret evtwin-secrets in Kubernetes, never a ConfigMap.
SECRETS = {f"EVTWIN_{n.upper()}" for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)}
#: `evtwin api` has its own probe (/api/health on its HTTP port), no metrics port.
OPTIONAL = {"api"}


def _compose_processes() -> dict[str, dict[str, Any]]:
    """Long-running services of ours: name -> {command, env}."""
    out = {}
    for name, svc in SERVICES.items():
        if svc.get("image", "").split(":")[0] == IMAGE and svc.get("restart") != "no":
            out[name] = {"command": list(svc["command"]), "env": dict(svc.get("environment", {}))}
    return out


def _k8s_processes() -> dict[str, dict[str, Any]]:
    docs = render("prod")
    config = find(docs, "ConfigMap", "evtwin-config")["data"]
    return {w["metadata"]["name"]: {"command": list(main["args"]), "env": {**config, **env_of(main)}}
            for w, main in ours(docs) if w["kind"] == "Deployment"}


def _up_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines `evtwin up --workers 2` starts (after `python -m streams.cli` and its
    global options), planned without starting anything."""
    from connectors.embedded.process import ManagedProcess
    from streams.cli import build_parser, stack_cmd

    monkeypatch.setattr(ManagedProcess, "start", lambda self: None)
    procs: list[Any] = []
    args = build_parser({}).parse_args(["up", "--workers", "2"])  # every option at its default
    args.resolved_api_port = 8000  # what `up` decides before it starts the pipeline
    stack_cmd._pipeline(Settings(state_dir=tmp_path, workers=2), args, procs)
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
        test = " ".join(svc["healthcheck"]["test"])
        assert "EVTWIN_METRICS_PORT" in test and "/readyz" in test, name
        probe = find(k8s, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz", name
    assert SERVICES["topics"]["healthcheck"] == {"disable": True}


def test_compose_and_kubernetes_give_the_same_settings() -> None:
    k8s = _k8s_processes()
    fields = {f"EVTWIN_{name.upper()}" for name in Settings.model_fields}
    shared = set(COMPOSE["x-evtwin"]["environment"])
    assert {"EVTWIN_DATABASE_URL", "EVTWIN_MQTT_URL"} <= SECRETS
    for name, proc in _compose_processes().items():
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
