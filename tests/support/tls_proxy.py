"""A TLS terminator on 127.0.0.1: accepts TLS connections and relays their bytes, in the clear,
to a plaintext server. Put in front of a broker that advertises the terminator's port, it gives
a Kafka listener that speaks TLS only (as a cluster behind a TLS load balancer does); with
``postgres=True``, in front of a PostgreSQL server built without TLS, a server that takes TLS
connections only (PostgreSQL negotiates TLS inside its protocol, see :class:`TlsTerminator`)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from tests.support.relay import Relay

SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
"""PostgreSQL's SSLRequest: length 8, code 1234.5679 (the client asks to switch to TLS)."""
GSSENC_REQUEST = (8).to_bytes(4, "big") + (80877104).to_bytes(4, "big")
"""PostgreSQL's GSSENCRequest (GSSAPI encryption), which libpq may send first."""


class TlsTerminator(Relay):
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
        super().__init__(port, upstream, "tls-terminator")
        self.postgres = postgres
        self.tls_versions: list[str] = []
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(str(client_ca))

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
        await self._relay(reader, writer)

    async def _start(self) -> None:
        # A client that does not speak TLS, or distrusts our certificate, fails the handshake:
        # what the tests want; not worth a log line.
        self._loop.set_exception_handler(lambda loop, context: None)
        if self.postgres:  # TLS starts inside the protocol (_postgres_tls)
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        else:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                      ssl=self.context, ssl_handshake_timeout=5.0)
