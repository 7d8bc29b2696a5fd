"""A TLS terminator on 127.0.0.1: accepts TLS connections and relays their bytes, in the clear,
to a plaintext server. Put in front of a broker that advertises the terminator's port, it gives
a Kafka listener that speaks TLS only (as a cluster behind a TLS load balancer does); with
``postgres=True``, in front of a PostgreSQL server built without TLS, a server that takes TLS
connections only (PostgreSQL negotiates TLS inside its protocol, see :class:`TlsTerminator`)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
"""PostgreSQL's SSLRequest: length 8, code 1234.5679 (the client asks to switch to TLS)."""
GSSENC_REQUEST = (8).to_bytes(4, "big") + (80877104).to_bytes(4, "big")
"""PostgreSQL's GSSENCRequest (GSSAPI encryption), which libpq may send first."""


class TlsTerminator:
    """Listen on ``port`` (TLS, certificate ``cert``/``key``) and relay to ``127.0.0.1:upstream``;
    with ``client_ca``, only clients with a certificate signed by that CA get through (mutual TLS).

    With ``postgres``, a connection starts in the clear as PostgreSQL's do: the client's
    SSLRequest is answered ``S`` (and a GSSENCRequest ``N``), then the TLS handshake follows on the
    same connection (``sslmode=require``/``verify-full`` clients); a client that starts its
    session in the clear (``sslmode=disable``) is disconnected, as by a server whose
    ``pg_hba.conf`` has only ``hostssl`` lines. :attr:`tls_versions` lists the TLS version of
    every connection that completed a handshake.

    Use as a context manager; it runs its own event loop in a thread.
    """

    def __init__(self, port: int, upstream: int, cert: Path, key: Path, client_ca: Path | None = None,
                 postgres: bool = False) -> None:
        self.port = port
        self.upstream = upstream
        self.postgres = postgres
        self.tls_versions: list[str] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(str(client_ca))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-terminator", daemon=True)
        self._server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _postgres_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer the client's requests until it asked for TLS, then upgrade; False: refused."""
        try:
            while True:
                first = await asyncio.wait_for(reader.readexactly(8), 5.0)
                if first == GSSENC_REQUEST:
                    writer.write(b"N")  # no GSSAPI here; libpq then asks for TLS
                    await writer.drain()
                    continue
                if first != SSL_REQUEST:
                    return False  # a session in the clear: refused
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self.context, ssl_handshake_timeout=5.0)
                return True
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.postgres and not await self._postgres_tls(reader, writer):
            writer.close()
            return
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            self.tls_versions.append(str(tls.version()))
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        # A client that does not speak TLS, or distrusts our certificate, fails the handshake:
        # what the tests want; not worth a log line.
        self._loop.set_exception_handler(lambda loop, context: None)
        if self.postgres:  # TLS starts inside the protocol (_postgres_tls)
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        else:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                      ssl=self.context, ssl_handshake_timeout=5.0)

    def __enter__(self) -> TlsTerminator:
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

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
