"""The embedded stack: start what the settings leave unset, publish the URLs in ``stack.json``,
stop everything cleanly.

Every external service has one URL setting. Set it, and that service is used; leave it unset, and
this module starts an embedded one. Other commands and other terminals find a running stack through
``<state dir>/stack.json`` (see :func:`resolve_endpoints`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from connectors import ServiceStartError
from connectors.embedded.kafka_broker import KafkaBroker
from connectors.embedded.mqtt_broker import MqttBroker, choose_mqtt_broker
from connectors.embedded.postgres_server import PostgresServer
from connectors.embedded.process import ChildService, ensure_writable_dir, python_child_env
from connectors.embedded.retention import RetentionCap
from connectors.endpoints import Endpoints

log = logging.getLogger(__name__)


class RegistryService(ChildService):
    """The embedded schema registry (:mod:`connectors.embedded.schema_registry`) as a child process."""

    name = "schema-registry"
    port_setting = "EVTWIN_EMBEDDED_SCHEMA_REGISTRY_PORT"

    def __init__(self, data_dir: Path, port: int) -> None:
        super().__init__("schema-registry", data_dir, port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "connectors.embedded.schema_registry", "--port", str(self.port),
                "--data", str(self.data_dir / "schemas.json")]

    def env(self) -> dict[str, str]:
        return python_child_env()

    def ready(self) -> bool:
        with urllib.request.urlopen(self.url + "/subjects", timeout=1) as resp:
            return bool(resp.status == 200)


class EmbeddedStack:
    """Starts the services that ``settings`` leave unset, and stops them again.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Only one stack may run per
    state directory: a lock file guards it.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.state_dir: Path = settings.state_dir
        self.services: list[Any] = []
        self.endpoints: Endpoints | None = None
        self.timings: dict[str, float] = {}
        self._lock_fd: int | None = None
        self.retention: RetentionCap | None = None

    def _plan(self) -> None:
        s, d = self.settings, self.state_dir
        if s.kafka_bootstrap_servers is None:
            self.kafka = KafkaBroker(s.kafka_broker, d / "kafka", s.embedded_kafka_port)
            self.services.append(self.kafka)
        if s.database_url is None:
            self.postgres = PostgresServer(d / "postgres", s.embedded_postgres_port,
                                           s.postgres_bin_dir, s.postgres_os_user)
            self.services.append(self.postgres)
        if s.mqtt_url is None:
            kind = choose_mqtt_broker(s.mqtt_broker)
            self.mqtt = MqttBroker(kind, d / "mqtt", s.embedded_mqtt_port)
            self.services.append(self.mqtt)
        if s.schema_registry_url is None and s.embedded_schema_registry:
            self.registry = RegistryService(d / "registry", s.embedded_schema_registry_port)
            self.services.append(self.registry)

    def _take_lock(self) -> None:
        ensure_writable_dir(self.state_dir, "stack")
        fd = os.open(self.state_dir / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = Endpoints.read(self.settings.stack_file)
            raise ServiceStartError(
                f"a stack is already running in {self.state_dir}"
                + (f" (pid {other.pid})" if other else "")
                + "; use it, stop it, or set EVTWIN_STATE_DIR to another directory"
            ) from None
        self._lock_fd = fd

    def start(self) -> Endpoints:
        """Start every embedded service, wait until all answer, write ``stack.json``."""
        t0 = time.monotonic()
        self._take_lock()
        try:
            self._plan()
            for service in self.services:
                service.start()
            for service in self.services:
                self.timings[service.name] = service.wait_ready(self.settings.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        retention_s = getattr(self.settings, "embedded_kafka_retention_s", 0)
        if self.settings.kafka_bootstrap_servers is None and retention_s > 0:
            self.retention = RetentionCap(self.kafka.bootstrap_servers, retention_s * 1000).start()
        self.endpoints = self._endpoints()
        self.endpoints.write(self.settings.stack_file)
        log.info("embedded stack ready in %.2f s", self.timings["total"])
        return self.endpoints

    def _endpoints(self) -> Endpoints:
        s = self.settings
        services = {
            svc.name: {"pid": svc.proc.pid if svc.proc else None,
                       "kind": getattr(svc, "kind", svc.name),
                       "ready_s": round(self.timings.get(svc.name, 0.0), 3)}
            for svc in self.services
        }
        return Endpoints(
            kafka_bootstrap_servers=s.kafka_bootstrap_servers or self.kafka.bootstrap_servers,
            database_url=s.database_url.get_secret_value() if s.database_url else self.postgres.url,
            mqtt_url=s.mqtt_url.get_secret_value() if s.mqtt_url else self.mqtt.url,
            schema_registry_url=s.schema_registry_url
            or (self.registry.url if s.embedded_schema_registry else None),
            mlflow_tracking_uri=s.mlflow_uri,
            pid=os.getpid(),
            started_at=time.time(),
            services=services,
        )

    def stop(self) -> None:
        """Stop every service in reverse order and remove ``stack.json``."""
        if self.retention is not None:
            self.retention.stop()
            self.retention = None
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                log.warning("stopping %s failed: %s", service.name, exc)
        self.services.clear()
        if self._lock_fd is not None:
            try:
                current = Endpoints.read(self.settings.stack_file)
                if current is not None and current.pid == os.getpid():
                    self.settings.stack_file.unlink()
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["EmbeddedStack", "RegistryService"]
