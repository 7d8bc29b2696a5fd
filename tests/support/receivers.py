"""Real loopback receivers for the notifier tests: an SMTP server (aiosmtpd, optionally with
STARTTLS and a login) and an HTTP webhook receiver that can answer 429 or be switched off."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), valid for a day."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class SmtpReceiver:
    """An aiosmtpd server on loopback that keeps every mail with the time it arrived; it refuses
    recipients ``nobody@…`` (550).

    Args:
        cert: With a certificate and key, the server offers STARTTLS and requires it.
        login: ``(user, password)`` the server requires, when given.
    """

    def __init__(self, cert: tuple[Path, Path] | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.mails: list[tuple[float, EmailMessage]] = []
        self.cert, self.login = cert, login
        self.controller: Any = None

    def start(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        receiver = self

        class Handler:
            async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                                  options: Any) -> str:
                if address.startswith("nobody@"):
                    return "550 5.1.1 no such mailbox"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                mail = message_from_bytes(envelope.content, policy=policy.default)
                receiver.mails.append((time.time(), mail))  # type: ignore[arg-type]
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = receiver.login is not None and (
                data.login.decode(), data.password.decode()) == receiver.login
            return AuthResult(success=ok)

        kwargs: dict[str, Any] = {}
        if self.cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
            kwargs.update(tls_context=ctx, require_starttls=True)
        if self.login:
            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=bool(self.cert))
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def url(self) -> str:
        auth = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"smtp://{auth}127.0.0.1:{self.port}"


class WebhookReceiver:
    """An HTTP server on loopback that keeps every JSON POST with the time it arrived.

    ``answer_429`` requests are answered ``429 Too Many Requests`` with ``Retry-After:
    retry_after`` before any is accepted; a ``status`` of 400 or more refuses every request; :meth:`stop` and :meth:`start` take it down and bring it
    back on the same port.
    """

    def __init__(self, answer_429: int = 0, retry_after: str = "2", status: int = 200) -> None:
        self.port = free_port()
        self.status = status
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.refused: list[float] = []
        self.answer_429, self.retry_after = answer_429, retry_after
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if len(receiver.refused) < receiver.answer_429:
                    receiver.refused.append(time.time())
                    self.send_response(429)
                    self.send_header("Retry-After", receiver.retry_after)
                    self.end_headers()
                    return
                if receiver.status >= 400:
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                receiver.received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/evtwin"

    def alerts(self) -> list[dict[str, Any]]:
        return [a for _, body in self.received for a in body["alerts"]]
