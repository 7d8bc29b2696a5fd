"""Helpers shared by the long-running commands: a stop event set by Ctrl-C or SIGTERM, and the
codecs of the stack in use."""

from __future__ import annotations

import signal
import threading
from typing import Any

from connectors.endpoints import Endpoints
from schemas.codec import AvroCodec
from schemas.registry import SchemaRegistryClient
from streams.topics import spec_for


def stop_on_signals() -> threading.Event:
    """Return an event that SIGINT, SIGTERM and SIGHUP set (call from the main thread)."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return stop


def codec_for(topic: str, endpoints: Endpoints) -> AvroCodec:
    """The codec of ``topic``'s schema: Confluent framing with a registry, else single-object."""
    spec = spec_for(topic)
    assert spec is not None, topic
    registry = SchemaRegistryClient(endpoints.schema_registry_url) if endpoints.schema_registry_url else None
    return AvroCodec(spec.schema, topic=topic, registry=registry)


__all__ = ["codec_for", "stop_on_signals"]
