"""A second MQTT connection of the bridge for retained QoS 0 messages, written in bulk.

paho-mqtt writes every message with its own ``send`` and, from another thread, wakes its network
loop through a socket pair for each: two system calls, two thread switches and ~30 µs of Python
per message — the MQTT bridge's largest cost at 10,000 packs (5,000 state messages a second). The
twin's state and the fleet summary are retained QoS 0 messages: the broker sends nothing back for
them, nothing is resent, and a lost one is healed by the next. So this connection builds their
PUBLISH packets itself and writes a whole batch with one ``sendall``. It speaks the MQTT 3.1.1
subset that needs: CONNECT (clean session, user name and password, keep-alive) and its CONNACK,
PUBLISH at QoS 0, PINGREQ when idle (whatever the broker sends back is read and dropped), and
DISCONNECT. TLS (``mqtts://``) uses the endpoint's own context, as paho does. Alerts (QoS 1,
acknowledged, resent after a reconnect) stay on paho.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence

from connectors import ConnectorError

_CONNACK_REFUSED = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
                    4: "bad user name or password", 5: "not authorized"}
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class MqttRefusedError(ConnectorError):
    """The broker answered the CONNECT with a refusal (bad credentials, not authorised, …)."""


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length (1–4 bytes)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"an MQTT packet cannot hold {n} bytes")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, keepalive_s: int, user: str | None = None, password: str | None = None) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session."""
    flags, payload = 0x02, _text(client_id)
    if user is not None:
        flags |= 0x80
        payload += _text(user)
        if password is not None:  # 3.1.1: a password only with a user name
            flags |= 0x40
            payload += _text(password)
    variable = _text("MQTT") + bytes((4, flags)) + keepalive_s.to_bytes(2, "big")
    return b"\x10" + remaining_length(len(variable) + len(payload)) + variable + payload


def publish_packet(topic: str, payload: bytes) -> bytes:
    """PUBLISH at QoS 0, retained."""
    name = topic.encode()
    return b"\x31" + remaining_length(2 + len(name) + len(payload)) + len(name).to_bytes(2, "big") + name + payload


class RetainedStream:
    """One MQTT connection that writes retained QoS 0 messages in batches (see the module docstring).

    Not thread-safe: one thread (the publisher's pump) calls everything.

    Args:
        host, port: The broker.
        client_id: This connection's client id (another than paho's: a broker drops the older of
            two connections with one id).
        user, password: Credentials, if the broker wants them.
        tls: For ``mqtts://``: the client-side context (verifies the broker's certificate and
            host name), as :meth:`connectors.mqtt_publisher.MqttEndpoint.ssl_context` builds it.
        keepalive_s: MQTT keep-alive; a PINGREQ goes out when nothing was written for half of it.
        timeout_s: For connecting, the CONNACK and each write (a broker that stops reading).
    """

    def __init__(self, host: str, port: int, client_id: str, *, user: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None, keepalive_s: int = 30,
                 timeout_s: float = 10.0) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.user, self.password, self.tls = user, password, tls
        self.keepalive_s, self.timeout_s = keepalive_s, timeout_s
        self._sock: socket.socket | None = None
        self._last_write = 0.0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection and wait for the broker's CONNACK.

        Raises:
            OSError: the broker cannot be reached, the TLS handshake failed, or it hung up.
            MqttRefusedError: the broker refused the CONNECT.
        """
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.sendall(connect_packet(self.client_id, self.keepalive_s, self.user, self.password))
            ack = b""
            while len(ack) < 4:
                chunk = sock.recv(4 - len(ack))
                if not chunk:
                    raise ConnectionError("the broker closed the connection before its CONNACK")
                ack += chunk
            if ack[0] != 0x20:
                raise ConnectionError(f"expected a CONNACK, got packet type {ack[0] >> 4}")
            if ack[3] != 0:
                raise MqttRefusedError(f"the broker refused the connection: "
                                       f"{_CONNACK_REFUSED.get(ack[3], f'return code {ack[3]}')}")
        except BaseException:
            sock.close()
            raise
        self._sock, self._last_write = sock, time.monotonic()

    def write(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Write ``(topic, payload)`` messages as retained QoS 0 PUBLISH packets, in one write.

        Raises:
            OSError: the connection is lost (it is closed; :meth:`connect` again).
        """
        self._send(b"".join(publish_packet(topic, payload) for topic, payload in messages))

    def tick(self) -> None:
        """Read and drop what the broker sent (PINGRESP); send a PINGREQ when idle.

        Raises:
            OSError: the broker closed the connection (it is closed here too).
        """
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        sock.setblocking(False)
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError):  # nothing more to read now
                    break
                if not data:
                    raise ConnectionError("the broker closed the connection")
        except OSError:
            self.close()
            raise
        sock.settimeout(self.timeout_s)
        if time.monotonic() - self._last_write >= self.keepalive_s / 2:
            self._send(PINGREQ)

    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        try:
            sock.sendall(data)
        except OSError:
            self.close()
            raise
        self._last_write = time.monotonic()

    def close(self, disconnect: bool = False) -> None:
        """Close the connection (with a DISCONNECT first when ``disconnect``: a clean goodbye)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            if disconnect:
                sock.sendall(DISCONNECT)
        except OSError:
            pass
        finally:
            sock.close()


__all__ = ["MqttRefusedError", "RetainedStream", "connect_packet", "publish_packet", "remaining_length"]
