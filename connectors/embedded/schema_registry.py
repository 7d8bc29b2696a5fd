"""An embedded schema registry speaking the Confluent Schema Registry REST API (the part that
producers, consumers and Redpanda Console use). ``python -m connectors.embedded.schema_registry``.

Schemas persist in a JSON file. Compatibility (default BACKWARD) is enforced on registration with
:mod:`schemas.compat`. Only Avro is supported. Production uses Redpanda's registry instead.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import fastavro

from schemas.compat import check

_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryStore:
    """Subjects, versions and ids, persisted to ``path`` after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        data = json.loads(path.read_text()) if path.exists() else {}
        self.schemas: dict[str, str] = data.get("schemas", {})  # id (text) -> schema text
        self.subjects: dict[str, list[int]] = data.get("subjects", {})
        self.config: dict[str, str] = data.get("config", {"": "BACKWARD"})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"schemas": self.schemas, "subjects": self.subjects,
                                   "config": self.config}))
        tmp.replace(self.path)

    def level(self, subject: str) -> str:
        return self.config.get(subject, self.config.get("", "BACKWARD"))

    def register(self, subject: str, schema: str) -> tuple[int, int]:
        """Return (status, id); status 200, 409 (incompatible) or 422 (invalid)."""
        try:
            parsed = json.loads(schema)
            fastavro.parse_schema(parsed, _force=True)
        except Exception:  # any parse failure is an invalid schema
            return 422, 0
        canonical = json.dumps(parsed, sort_keys=True)
        with self.lock:
            for sid, text in self.schemas.items():
                if json.dumps(json.loads(text), sort_keys=True) == canonical:
                    if int(sid) in self.subjects.get(subject, []):
                        return 200, int(sid)
                    existing = int(sid)
                    break
            else:
                existing = 0
            versions = self.subjects.get(subject, [])
            if versions and check(json.loads(self.schemas[str(versions[-1])]), parsed, self.level(subject)):
                return 409, 0
            sid_new = existing or (max(map(int, self.schemas), default=0) + 1)
            self.schemas[str(sid_new)] = schema
            self.subjects.setdefault(subject, []).append(sid_new)
            self.save()
            return 200, sid_new


class _Handler(BaseHTTPRequestHandler):
    store: RegistryStore

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", _TYPE)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: int, message: str) -> None:
        self._send(status, {"error_code": code, "message": message})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        s, path = self.store, unquote(self.path.split("?")[0]).rstrip("/")
        if path in ("", "/"):
            return self._send(200, {})
        if path == "/subjects":
            return self._send(200, sorted(s.subjects))
        if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
            if m[1] in s.schemas:
                return self._send(200, {"schema": s.schemas[m[1]]})
            return self._error(404, 40403, f"schema {m[1]} not found")
        if m := re.fullmatch(r"/subjects/(.+)/versions", path):
            if m[1] in s.subjects:
                return self._send(200, list(range(1, len(s.subjects[m[1]]) + 1)))
            return self._error(404, 40401, f"subject {m[1]} not found")
        if m := re.fullmatch(r"/subjects/(.+)/versions/(latest|\d+)", path):
            ids = s.subjects.get(m[1])
            if not ids:
                return self._error(404, 40401, f"subject {m[1]} not found")
            version = len(ids) if m[2] == "latest" else int(m[2])
            if not 1 <= version <= len(ids):
                return self._error(404, 40402, f"version {m[2]} not found")
            sid = ids[version - 1]
            return self._send(200, {"subject": m[1], "version": version, "id": sid,
                                    "schema": s.schemas[str(sid)]})
        if m := re.fullmatch(r"/config(?:/(.+))?", path):
            return self._send(200, {"compatibilityLevel": s.level(m[1] or "")})
        return self._error(404, 404, f"no route {path}")

    def do_POST(self) -> None:
        path = unquote(self.path.split("?")[0]).rstrip("/")
        body = self._body()
        if m := re.fullmatch(r"/subjects/(.+)/versions", path):
            if body.get("schemaType", "AVRO") != "AVRO":
                return self._error(422, 42201, "only AVRO schemas are supported")
            status, sid = self.store.register(m[1], str(body.get("schema", "")))
            if status == 200:
                return self._send(200, {"id": sid})
            if status == 409:
                return self._error(409, 409, "schema is incompatible with the latest version")
            return self._error(422, 42201, "invalid Avro schema")
        if m := re.fullmatch(r"/compatibility/subjects/(.+)/versions/(latest|\d+)", path):
            ids = self.store.subjects.get(m[1], [])
            if not ids:
                return self._send(200, {"is_compatible": True})
            old = json.loads(self.store.schemas[str(ids[-1] if m[2] == "latest" else ids[int(m[2]) - 1])])
            problems = check(old, json.loads(body.get("schema", "{}")), self.store.level(m[1]))
            return self._send(200, {"is_compatible": not problems, "messages": problems})
        return self._error(404, 404, f"no route {path}")

    def do_PUT(self) -> None:
        path = unquote(self.path.split("?")[0]).rstrip("/")
        if m := re.fullmatch(r"/config(?:/(.+))?", path):
            level = str(self._body().get("compatibility", "")).upper()
            if level not in {"NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE",
                             "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"}:
                return self._error(422, 42203, f"invalid compatibility level {level!r}")
            with self.store.lock:
                self.store.config[m[1] or ""] = level
                self.store.save()
            return self._send(200, {"compatibility": level})
        return self._error(404, 404, f"no route {path}")


def serve(port: int, data_file: Path, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Return a started-to-be server (call ``serve_forever``) on ``host:port``."""
    handler = type("Handler", (_Handler,), {"store": RegistryStore(data_file)})
    return ThreadingHTTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True, help="JSON file the schemas persist in")
    args = parser.parse_args()
    server = serve(args.port, args.data)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"schema registry listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
