"""A small client for the Confluent Schema Registry REST API (Redpanda and Karapace speak it too)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from schemas import RegistryError

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryClient:
    """Registers and fetches Avro schemas; caches what it has seen.

    Args:
        url: Base URL of the registry, e.g. ``http://127.0.0.1:8081``.
        compatibility: Compatibility level set on every subject this client registers under.
        timeout_s: Timeout of one HTTP request, seconds.
    """

    def __init__(self, url: str, *, compatibility: str = "BACKWARD", timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self.compatibility = compatibility
        self.timeout_s = timeout_s
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": _CONTENT_TYPE, "Accept": _CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise RegistryError(
                f"schema registry {method} {path} answered {exc.code}: {detail}", exc.code
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"schema registry at {self.url} unreachable: {exc}") from exc

    def register(self, subject: str, schema: str) -> int:
        """Register ``schema`` (Avro JSON text) under ``subject``; return its global id.

        Sets the subject's compatibility level first, so the registry refuses a change that would
        break existing readers.
        """
        key = (subject, schema)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
        subj = quote(subject, safe="")
        self._request("PUT", f"/config/{subj}", {"compatibility": self.compatibility})
        answer = self._request("POST", f"/subjects/{subj}/versions", {"schema": schema})
        schema_id = int(answer["id"])
        with self._lock:
            self._ids[key] = schema_id
            self._schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        """Return the Avro JSON text of the schema with global id ``schema_id``."""
        with self._lock:
            if schema_id in self._schemas:
                return self._schemas[schema_id]
        answer = self._request("GET", f"/schemas/ids/{schema_id}")
        schema = str(answer["schema"])
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def subjects(self) -> list[str]:
        """Return every subject the registry knows."""
        return list(self._request("GET", "/subjects"))


__all__ = ["SchemaRegistryClient"]
