"""Run the API with uvicorn: in the foreground (``evtwin api``) or in a thread (tests, bench).

The listening socket is bound before uvicorn starts, so the URL (and a port chosen by the OS when
the setting is 0) is known at once.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import uvicorn

from streams.api.app import create_app
from streams.api.wsframes import ws_protocol


class ApiServerError(RuntimeError):
    """The API could not listen on its port, or did not start in time."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 = any free port).

    Raises:
        ApiServerError: The port is taken or the address is not ours.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ApiServerError(f"the API cannot listen on {host}:{port} ({exc.strerror}); stop what "
                             "uses it, or set EVTWIN_API_PORT to another port (0 = any free)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else shown}:{port}"


def make_server(settings: Any, endpoints: Any, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server of the full API (WebSocket compression off: frames are sent to many, and
    a large one is serialized once for all of them, :mod:`streams.api.wsframes`)."""
    config = uvicorn.Config(create_app(settings, endpoints), log_level=log_level.lower(),
                            ws=ws_protocol(), ws_per_message_deflate=False, lifespan="on", access_log=False,
                            timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


class ThreadedServer:
    """The API in a background thread of this process (tests and the bench)."""

    def __init__(self, settings: Any, endpoints: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = url_of(self.sock)
        self.server = make_server(settings, endpoints)
        self.thread = threading.Thread(target=self._run, name="api-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # shown by start()
            self.error = exc

    def start(self, timeout_s: float = 30.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ApiServerError(f"the API did not start: {self.error!r}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["ApiServerError", "ThreadedServer", "bind", "make_server", "url_of"]
