"""Avro contracts of the EV battery twin: the ``.avsc`` files beside this module and their codec.

The schemas are the contract between the simulator, the agents and the sinks. Every field has a
``doc`` with its unit; timestamps are ``timestamp-millis`` in UTC.

Exceptions::

    SchemaError                 root of this package
    ├── UnknownSchemaError      no schema of that name
    ├── EncodeError             a record does not match its schema
    ├── DecodeError             bytes that are not a record we can read
    └── RegistryError           the schema registry refused or could not be reached
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from schemas.errors import EvTwinError

SCHEMA_DIR = Path(__file__).resolve().parent
PUBLISHED_DIR = SCHEMA_DIR / "published"

#: Logical schema names, each backed by ``<name>.avsc``.
SCHEMA_NAMES: tuple[str, ...] = ("telemetry", "prediction", "alert", "dead_letter", "ground_truth",
                                  "command", "command_reported")


class SchemaError(EvTwinError):
    """Root of every error raised by :mod:`schemas`."""


class UnknownSchemaError(SchemaError):
    """A schema name that has no ``.avsc`` file."""


class EncodeError(SchemaError):
    """A record that does not match its schema (missing field, wrong type)."""


class DecodeError(SchemaError):
    """Bytes that are neither Avro single-object nor Confluent-framed records of a known schema."""


class RegistryError(SchemaError):
    """The schema registry refused a request or could not be reached.

    Attributes:
        status: The HTTP status the registry answered, or ``None`` when it could not be reached.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def schema_path(name: str) -> Path:
    """Return the path of the ``.avsc`` file of schema ``name``.

    Raises:
        UnknownSchemaError: when ``name`` is not one of :data:`SCHEMA_NAMES`.
    """
    if name not in SCHEMA_NAMES:
        raise UnknownSchemaError(
            f"unknown schema {name!r}; known schemas: {', '.join(SCHEMA_NAMES)}"
        )
    return SCHEMA_DIR / f"{name}.avsc"


@cache
def _load_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """Return the current version of schema ``name`` as a JSON object (a fresh copy)."""
    return json.loads(_load_text(schema_path(name)))


def published_versions(name: str) -> list[dict[str, Any]]:
    """Return every published (released) version of schema ``name``, oldest first.

    Published versions live in ``schemas/published/<name>.v<N>.avsc``; data written with any of
    them must stay readable, and the current schema must stay readable by their readers.
    """
    schema_path(name)
    files = sorted(
        PUBLISHED_DIR.glob(f"{name}.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1])
    )
    return [json.loads(_load_text(p)) for p in files]


__all__ = [
    "SCHEMA_NAMES",
    "DecodeError",
    "EncodeError",
    "RegistryError",
    "SchemaError",
    "UnknownSchemaError",
    "load_schema",
    "published_versions",
    "schema_path",
]
