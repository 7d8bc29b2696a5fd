"""The production compose file, checked without Docker: every bind-mounted file exists, every
``${VAR}`` is documented in .env.example, no host port is published twice, everything is on
``twin-net``, and every service the code needs is there and wired as the code expects."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support.paths import REPO

COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
REQUIRED = {"redpanda", "console", "timescaledb", "mosquitto", "minio", "mlflow", "prometheus",
            "grafana", "score-worker", "sink", "mqtt-bridge", "simulator", "ingest", "groundtruth-sink",
            "retrain", "online-accuracy"}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
        elif volume.startswith((".", "/")):
            source, target = volume.split(":")[:2]
            mounts.append((source, target))
    return mounts


def _host_ports(service: dict[str, Any]) -> list[str]:
    ports = []
    for port in service.get("ports", []):
        spec = str(port["published"]) if isinstance(port, dict) else str(port)
        parts = spec.split(":")
        if len(parts) >= 2:  # [ip:]host:container
            ports.append(":".join(parts[:-1]))
    return ports


def test_every_service_the_code_needs_is_there() -> None:
    assert set(SERVICES) >= REQUIRED


def test_every_bind_mounted_file_exists() -> None:
    mounts = [(name, src, dst) for name, svc in SERVICES.items() for src, dst in _bind_mounts(svc)]
    assert len(mounts) >= 6
    for name, source, _ in mounts:
        assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"


def test_every_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    text = COMPOSE_TEXT.replace("$$", "")  # $$ is a literal dollar for the container's shell
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?:[:?-][^}]*)?\}", text))
    used |= set(re.findall(r"\$([A-Z][A-Z0-9_]*)", text))
    assert used, "no variables found: the pattern is broken"
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"


def test_no_two_services_publish_the_same_host_port() -> None:
    seen: dict[str, str] = {}
    for name, service in SERVICES.items():
        for port in _host_ports(service):
            assert port not in seen, f"{name} and {seen[port]} both publish host port {port}"
            seen[port] = name


def test_everything_is_on_twin_net() -> None:
    assert set(COMPOSE["networks"]) == {"twin-net"}
    for name, service in SERVICES.items():
        assert service.get("networks") == ["twin-net"], name


def test_our_services_run_the_right_commands_and_scale() -> None:
    commands = {"score-worker": ["worker"], "sink": ["sink"], "mqtt-bridge": ["mqtt-bridge"],
                "simulator": ["simulate"], "ingest": ["ingest"],
                "groundtruth-sink": ["sink", "--kind", "groundtruth"],
                "online-accuracy": ["sink", "--kind", "accuracy"],
                "retrain": ["retrain", "--every", "${EVTWIN_RETRAIN_EVERY:-30d}"]}
    for name, command in commands.items():
        service = SERVICES[name]
        assert service["command"] == command, name
        assert service["image"] == "ev-battery-twin:latest" and service["build"]["dockerfile"] == "infra/Dockerfile"
        assert service["environment"]["EVTWIN_DATABASE_URL"].endswith("@timescaledb:5432/${POSTGRES_DB}")
    worker = SERVICES["score-worker"]
    assert re.fullmatch(r"\$\{SCORE_WORKER_REPLICAS(:-\d+)?\}", str(worker["deploy"]["replicas"]))
    assert "ports" not in worker and "container_name" not in worker  # replicas must not collide
    for name in ("sink", "groundtruth-sink", "retrain", "online-accuracy"):  # they migrate
        assert SERVICES[name]["depends_on"]["timescaledb"]["condition"] == "service_healthy", name
    assert SERVICES["mqtt-bridge"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"


def test_prometheus_and_grafana_get_their_provisioning() -> None:
    prom = dict((dst, src) for src, dst in _bind_mounts(SERVICES["prometheus"]))
    assert prom["/etc/prometheus/prometheus.yml"] == "./infra/prometheus/prometheus.yml"
    assert prom["/etc/prometheus/rules"] == "./infra/prometheus/rules"
    grafana = SERVICES["grafana"]
    mounts = dict((dst, src) for src, dst in _bind_mounts(grafana))
    assert mounts["/etc/grafana/provisioning"] == "./infra/grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./infra/grafana/dashboards"
    for var in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):  # read by the data source
        assert grafana["environment"][var] == "${" + var + "}"


def test_the_mosquitto_password_file_is_built_without_the_password_on_a_command_line() -> None:
    mosquitto = SERVICES["mosquitto"]
    script = dict((dst, src) for src, dst in _bind_mounts(mosquitto))["/config/docker-entrypoint.sh"]
    text = (REPO / script).read_text()
    assert mosquitto["command"] == ["sh", "/config/docker-entrypoint.sh"]
    assert "mosquitto_passwd -U" in text  # hashes a file written by the shell's printf builtin
    assert not re.search(r"mosquitto_passwd[^\n]*\s-b\b", text)  # -b takes it as an argument
    assert "chmod 0600" in text and "chown mosquitto:mosquitto" in text
    assert "password_file /mosquitto/config/passwd" in (REPO / "infra/mosquitto/mosquitto.conf").read_text()
    assert "MQTT_PASSWORD" not in str(mosquitto["command"])
