"""The shared WebSocket frame (streams/api/wsframes.py): the bytes are exactly those the
``websockets`` protocol would send for the text, for every payload length class, and a text is
serialized once however many clients it goes to (by identity: an equal but distinct text is a new
frame, and the cache holds its texts so that an id cannot be reused while cached)."""

from __future__ import annotations

import pytest
from websockets.protocol import State
from websockets.server import ServerProtocol

from streams.api.wsframes import SHARED_MIN_CHARS, FrameCache, SharedFrameProtocol


def _sent_by_websockets(text: str) -> bytes:
    conn = ServerProtocol()
    conn.state = State.OPEN
    conn.send_text(text.encode())
    return b"".join(conn.data_to_send())


@pytest.mark.parametrize("length", [5, 125, 126, 65535, 65536, 300_000])
def test_frame_is_what_websockets_would_send(length: int) -> None:
    text = ("é" + "x" * length)[:length]  # non-ASCII: the length is the UTF-8 length
    data = FrameCache().frame(text)
    assert data == _sent_by_websockets(text)


def test_a_text_is_serialized_once_for_all_its_clients() -> None:
    cache = FrameCache(size=2)
    text = "y" * SHARED_MIN_CHARS
    first = cache.frame(text)
    assert all(cache.frame(text) is first for _ in range(199))
    assert (cache.serialized, cache.shared) == (1, 199)
    equal_copy = "".join(["y"] * SHARED_MIN_CHARS)
    assert equal_copy == text and equal_copy is not text
    assert cache.frame(equal_copy) == first and cache.serialized == 2  # identity, not equality
    cache.frame("z" * SHARED_MIN_CHARS)  # evicts the oldest (size 2)
    assert len(cache.entries) == 2 and id(text) not in cache.entries


def test_the_protocol_is_uvicorns_own() -> None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    assert SharedFrameProtocol is not None and issubclass(SharedFrameProtocol, WebSocketsSansIOProtocol)
