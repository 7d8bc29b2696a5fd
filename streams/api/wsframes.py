"""One WebSocket frame for many clients: uvicorn's WebSocket protocol with the frame of a large
message serialized once per process, not once per client.

The fleet stream (``/ws/fleet``) sends the same JSON text (one :class:`streams.api.hub.Hub` frame
object) to every fleet client. uvicorn's protocol encodes the text to UTF-8, builds the WebSocket
frame and joins its parts again for each client: three copies of a ~300 KB message per client and
frame, which were ~70 % of the API's CPU with 200 clients at 5,000 predictions/s (py-spy).
A server's frames are not masked, and without a negotiated extension (the API turns
permessage-deflate off) the bytes on the wire are the same for every client, so
:class:`SharedFrameProtocol` serializes a large text once — with the ``websockets`` package's own
:class:`~websockets.frames.Frame` — and writes those bytes to each client's transport.

Everything else (handshake, small messages, binary messages, close, ping/pong, back-pressure
through ``writable``, a connection that is not open any more) is uvicorn's own code path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import State

try:  # uvicorn >= 0.35
    from uvicorn.protocols.utils import ClientDisconnected
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - an older uvicorn: its default protocol is used
    WebSocketsSansIOProtocol = None  # type: ignore[assignment, misc]

SHARED_MIN_CHARS = 4096
"""Texts at least this long are serialized once and shared (the fleet frames); shorter ones (a
battery's own frames, alerts, hello) take uvicorn's path: caching them would buy nothing."""


class FrameCache:
    """The serialized frames of the last few large texts, by text object (identity, not equality:
    the hub hands the same ``str`` object to all its clients; comparing megabytes would cost what
    it saves). Entries hold their text, so an ``id`` cannot be reused while it is cached.
    Thread-safe (tests run servers in threads)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self.serialized = 0
        self.shared = 0
        self.lock = threading.Lock()

    def frame(self, text: str) -> bytes:
        """The unmasked, uncompressed WebSocket text frame of ``text``, in one piece."""
        key = id(text)
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] is text:
                self.entries.move_to_end(key)
                self.shared += 1
                return entry[1]
        data = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
        with self.lock:
            self.serialized += 1
            self.entries[key] = (text, data)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return data


FRAMES = FrameCache()
"""The process's cache (one per process: a frame is shared by the connections of one server)."""


if WebSocketsSansIOProtocol is not None:

    class SharedFrameProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sans-I/O WebSocket protocol; a large text message is written as the shared
        frame of :data:`FRAMES` when the connection is open, has no extension and is not in the
        middle of a fragmented message (the conditions under which ``websockets`` would build
        the very same bytes)."""

        def _plain_open(self) -> bool:
            conn = self.conn
            return (self.handshake_complete and not self.close_sent and self.initial_response is None
                    and conn.state is State.OPEN and not conn.extensions
                    and not conn.expect_continuation_frame)

        async def send(self, message: Any) -> None:
            text = message.get("text") if message.get("type") == "websocket.send" else None
            if text is None or len(text) < SHARED_MIN_CHARS or not self._plain_open():
                await super().send(message)
                return
            await self.writable.wait()
            if self.disconnected:
                raise ClientDisconnected()
            if not self._plain_open():  # closed while we waited for the transport
                await super().send(message)
                return
            self.transport.write(FRAMES.frame(text))

else:  # pragma: no cover
    SharedFrameProtocol = None  # type: ignore[assignment, misc]


def ws_protocol() -> Any:
    """The ``ws`` setting of uvicorn's ``Config``: :class:`SharedFrameProtocol`, or ``"auto"``
    with a uvicorn that lacks the sans-I/O protocol."""
    return SharedFrameProtocol if SharedFrameProtocol is not None else "auto"


__all__ = ["FRAMES", "SHARED_MIN_CHARS", "FrameCache", "SharedFrameProtocol", "ws_protocol"]
