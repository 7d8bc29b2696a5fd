"""A loopback relay in its own event-loop thread: a server on ``127.0.0.1:port`` that hands each
connection, after whatever its subclass does first (a TLS handshake, a SASL login), to
``127.0.0.1:upstream`` and copies bytes both ways. The base of the TLS and SCRAM terminators that
put a security layer in front of embedded servers which have none."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from connectors.embedded.kafka_broker import tansu_binary
from tests.support.receivers import free_port, wait_until


class Relay:
    """Subclasses implement :meth:`_start` (create ``self._server``) and call :meth:`_relay`
    once a connection may pass. Use as a context manager."""

    def __init__(self, port: int, upstream: int, name: str) -> None:
        self.port = port
        self.upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._server: asyncio.Server | None = None

    async def _start(self) -> None:
        raise NotImplementedError

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None) -> None:
        """Copy bytes between the client and the upstream server (a new connection unless given)
        until either side closes."""
        if upstream is None:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                writer.close()
                return
        up_reader, up_writer = upstream
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


@contextlib.contextmanager
def hidden_tansu(log_dir: Path, advertised: int) -> Iterator[int]:
    """A Tansu broker (in memory) on a free port nobody is told about, advertising 127.0.0.1:
    ``advertised`` — where a relay in front of it listens; yields its own port once it listens."""
    inner = free_port()
    with open(log_dir / "tansu.log", "wb") as log:
        broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{inner}",
                                   "--advertised-listener-url", f"tcp://127.0.0.1:{advertised}",
                                   "--storage-engine", "memory://tansu/"], stdout=log, stderr=log)
        try:
            def listening() -> bool:
                with socket.socket() as s:
                    return s.connect_ex(("127.0.0.1", inner)) == 0

            if not wait_until(lambda: broker.poll() is not None or listening(), 10) or broker.poll() is not None:
                raise RuntimeError(f"Tansu did not start: see {log_dir / 'tansu.log'}")
            yield inner
        finally:
            broker.kill()
            broker.wait()
