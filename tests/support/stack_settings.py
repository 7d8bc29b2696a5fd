"""Settings for an embedded stack that takes free loopback ports, so stacks never collide."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings


def free_port_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for an embedded stack on free ports in ``state_dir``."""
    values: dict[str, object] = dict(
        state_dir=state_dir, embedded_kafka_port=0, embedded_postgres_port=0,
        embedded_mqtt_port=0, embedded_schema_registry_port=0,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
