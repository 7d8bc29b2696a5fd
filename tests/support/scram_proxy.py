"""A SASL/SCRAM terminator for Kafka on 127.0.0.1: it logs clients in as a Kafka broker's
``SASL_PLAINTEXT`` listener does (``SaslHandshake`` v1, then ``SaslAuthenticate`` v0–v2 carrying the
SCRAM exchange, RFC 5802/7677) and relays an authenticated connection to a broker without
authentication, which advertises the terminator's port.

Why it exists: neither embedded broker can complete a SCRAM login — noida-db accepts any PLAIN
login and no SCRAM, and Tansu 0.6 with ``--authentication`` keeps its users only in storage engines
this wheel does not include (its memory and S3 engines hold none). The server side of SCRAM here is
`scramp <https://github.com/tlocke/scramp>`_ (pg8000's), an implementation independent of the
clients under test (librdkafka for our CLI and sinks, aiokafka for the Faust workers).

Only what the login needs is parsed: ``ApiVersions`` is passed to the broker (Kafka answers it
before authentication), any other request before the login ends closes the connection, as a
broker does; a refused login is answered ``SASL_AUTHENTICATION_FAILED`` (58) with Kafka's message,
then the connection is closed."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scramp import ScramException, ScramMechanism

from tests.support.receivers import free_port
from tests.support.relay import Relay, hidden_tansu

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
MAX_FRAME = 1 << 20


@dataclass(frozen=True)
class Login:
    """One SCRAM exchange the terminator saw: who, how, and whether it was accepted."""

    user: str
    mechanism: str
    accepted: bool
    client_id: str
    """The ``client.id`` of the request header (e.g. aiokafka's, librdkafka's ``rdkafka``)."""


class KafkaProtocolError(Exception):
    """A frame the terminator cannot take before the login ends: the connection is closed."""


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _put_uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


@dataclass(frozen=True)
class Request:
    api_key: int
    version: int
    correlation_id: int
    client_id: str
    body: bytes
    """What follows the request header."""

    @classmethod
    def parse(cls, frame: bytes) -> Request:
        if len(frame) < 10:
            raise KafkaProtocolError("a request shorter than its header")
        api_key, version, correlation_id, client_id_len = struct.unpack_from(">hhih", frame)
        pos = 10 + max(client_id_len, 0)
        client_id = frame[10:pos].decode(errors="replace")
        flexible = (api_key == SASL_AUTHENTICATE and version >= 2) or (api_key == API_VERSIONS and version >= 3)
        if flexible:  # request header v2: tagged fields after the client id
            pos = _skip_tags(frame, pos)
        return cls(api_key, version, correlation_id, client_id, frame[pos:])


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _handshake_response(request: Request, error: int) -> bytes:
    body = struct.pack(">ihi", request.correlation_id, error, len(MECHANISMS))
    for name in MECHANISMS:
        body += struct.pack(">h", len(name)) + name.encode()
    return _frame(body)


def _authenticate_response(request: Request, error: int, message: str | None, auth: bytes) -> bytes:
    if request.version >= 2:  # flexible: compact strings and bytes, tagged fields
        text = b"\x00" if message is None else _put_uvarint(len(message.encode()) + 1) + message.encode()
        body = (struct.pack(">i", request.correlation_id) + b"\x00" + struct.pack(">h", error) + text
                + _put_uvarint(len(auth) + 1) + auth + struct.pack(">q", 0) + b"\x00")
        return _frame(body)
    text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message.encode())) + message.encode()
    body = struct.pack(">ih", request.correlation_id, error) + text + struct.pack(">i", len(auth)) + auth
    if request.version >= 1:
        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication asked
    return _frame(body)


def _auth_bytes(request: Request) -> bytes:
    if request.version >= 2:
        size, pos = _uvarint(request.body, 0)
        return request.body[pos:pos + size - 1]
    (size,) = struct.unpack_from(">i", request.body)
    return request.body[4:4 + size]


class ScramTerminator(Relay):
    """Listen on ``port``; log clients in with SCRAM-SHA-256/512 against ``users`` (name →
    password), then relay them to the broker on ``127.0.0.1:upstream``. :attr:`logins` lists every
    exchange. Use as a context manager; it runs its own event loop in a thread."""

    def __init__(self, port: int, upstream: int, users: dict[str, str]) -> None:
        super().__init__(port, upstream, "scram-terminator")
        self.logins: list[Login] = []
        self._auth = {(mech, user): ScramMechanism(mech).make_auth_info(password, iteration_count=4096)
                      for mech in MECHANISMS for user, password in users.items()}

    def _auth_info(self, mechanism: str, user: str) -> tuple[bytes, bytes, bytes, int]:
        """What the server side of SCRAM needs of ``user`` (KeyError: no such user, refused)."""
        return self._auth[(mechanism, user)]

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> bytes:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        if not 0 < size <= MAX_FRAME:
            raise KafkaProtocolError(f"a frame of {size} bytes before the login")
        return await reader.readexactly(size)

    async def _login(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bool:
        """Run the connection up to the end of its SCRAM exchange; True if it logged in."""
        up_reader, up_writer = upstream
        mechanism = None
        server = None
        user = ""
        while True:
            frame = await self._read(reader)
            request = Request.parse(frame)
            if request.api_key == API_VERSIONS:
                up_writer.write(_frame(frame))
                await up_writer.drain()
                writer.write(_frame(await self._read(up_reader)))
            elif request.api_key == SASL_HANDSHAKE and mechanism is None:
                if request.version < 1:  # v0 sends the tokens unframed: clients here use v1
                    raise KafkaProtocolError("SaslHandshake v0")
                (size,) = struct.unpack_from(">h", request.body)
                name = request.body[2:2 + size].decode()
                if name not in MECHANISMS:
                    writer.write(_handshake_response(request, UNSUPPORTED_SASL_MECHANISM))
                    await writer.drain()
                    return False
                mechanism = name
                writer.write(_handshake_response(request, 0))
            elif request.api_key == SASL_AUTHENTICATE and mechanism is not None:
                token = _auth_bytes(request)
                try:
                    if server is None:
                        server = ScramMechanism(mechanism).make_server(partial(self._auth_info, mechanism))
                        text = token.decode()
                        user = text.split("n=", 1)[1].split(",", 1)[0] if "n=" in text else ""
                        server.set_client_first(text)
                        reply = server.get_server_first()
                    else:
                        server.set_client_final(token.decode())
                        reply = server.get_server_final()
                except (ScramException, KeyError, UnicodeDecodeError):  # no such user, wrong proof, garbage
                    self.logins.append(Login(user, mechanism, False, request.client_id))
                    writer.write(_authenticate_response(
                        request, SASL_AUTHENTICATION_FAILED,
                        f"Authentication failed during authentication due to invalid credentials with "
                        f"SASL mechanism {mechanism}", b""))
                    await writer.drain()
                    return False
                writer.write(_authenticate_response(request, 0, None, reply.encode()))
                if reply.startswith("v="):  # the server-final message: logged in
                    await writer.drain()
                    self.logins.append(Login(user, mechanism, True, request.client_id))
                    return True
            else:  # anything else before the login ends: closed, as by a broker's SASL listener
                return False
            await writer.drain()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        ok = False
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
            ok = await asyncio.wait_for(self._login(reader, writer, upstream), 30.0)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, KafkaProtocolError, struct.error,
                IndexError, UnicodeDecodeError):  # a broken or truncated frame: closed
            pass
        finally:
            if not ok:  # also when cancelled at exit
                writer.close()
                if upstream is not None:
                    upstream[1].close()
        if ok and upstream is not None:
            await self._relay(reader, writer, upstream)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)


@contextlib.contextmanager
def scram_kafka(log_dir: Path, users: dict[str, str]) -> Iterator[tuple[str, ScramTerminator]]:
    """``(bootstrap, terminator)`` of a Kafka listener that takes SCRAM logins only: Tansu listens
    in the clear on a port nobody is told about and advertises the terminator's."""
    outer = free_port()
    with hidden_tansu(log_dir, outer) as inner, ScramTerminator(outer, inner, users) as terminator:
        yield f"127.0.0.1:{outer}", terminator
