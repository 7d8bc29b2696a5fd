"""Where the services are: the URLs a process uses, and how a client command finds them.

Every external service has one URL setting. Set it, and that service is used; leave it unset, and
the embedded stack (:mod:`connectors.embedded`) starts one and publishes its URL in
``<state dir>/stack.json``, where :func:`resolve_endpoints` finds it — from any terminal. Code that
talks to the services imports this module, never the embedded stack's supervisor.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors import StackNotRunningError


@dataclass
class Endpoints:
    """Where the services of a stack are. ``None`` = not available."""

    kafka_bootstrap_servers: str
    database_url: str | None
    mqtt_url: str | None
    schema_registry_url: str | None
    mlflow_tracking_uri: str | None
    pid: int | None = None
    #: The twin's HTTP API and web view, when ``evtwin up`` runs it.
    api_url: str | None = None
    started_at: float | None = None
    services: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        """Write to ``path`` atomically, readable by the owner only (it holds a password)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> Endpoints | None:
        """Return the endpoints of the stack that wrote ``path`` if it is still running."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        pid = data.get("pid")
        if pid is not None:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return None  # stale: the stack that wrote it is gone
            except PermissionError:
                pass
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def resolve_endpoints(settings: Any) -> Endpoints:
    """Endpoints for a client command: the URL settings, completed from a running stack's
    ``stack.json``.

    Raises:
        StackNotRunningError: when Kafka is neither configured nor running.
    """
    running = Endpoints.read(settings.stack_file)
    kafka = settings.kafka_bootstrap_servers or (running.kafka_bootstrap_servers if running else None)
    if kafka is None:
        raise StackNotRunningError(
            f"no Kafka broker: none is running in {settings.state_dir} and "
            "EVTWIN_KAFKA_BOOTSTRAP_SERVERS is unset; start one with `evtwin services` "
            "(or `make demo`) in another terminal, or set EVTWIN_KAFKA_BOOTSTRAP_SERVERS"
        )

    def pick(value: Any, attr: str) -> str | None:
        if value is not None:
            return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
        return getattr(running, attr) if running else None

    return Endpoints(
        kafka_bootstrap_servers=kafka,
        database_url=pick(settings.database_url, "database_url"),
        mqtt_url=pick(settings.mqtt_url, "mqtt_url"),
        schema_registry_url=pick(settings.schema_registry_url, "schema_registry_url"),
        mlflow_tracking_uri=pick(settings.mlflow_tracking_uri, "mlflow_tracking_uri") or settings.mlflow_uri,
        pid=running.pid if running else None,
    )


__all__ = ["Endpoints", "resolve_endpoints"]
