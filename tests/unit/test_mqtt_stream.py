"""The MQTT packets the bridge's state connection builds itself (connectors/mqtt_stream.py), byte for
byte as MQTT 3.1.1 defines them; the broker tests (tests/integration/test_mqtt_*.py) send them to
mosquitto and amqtt."""

from __future__ import annotations

import pytest

from connectors.mqtt_stream import connect_packet, publish_packet, remaining_length


@pytest.mark.parametrize(("n", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])  # the table of MQTT 3.1.1, section 2.2.3
def test_remaining_length_follows_the_specification(n: int, encoded: bytes) -> None:
    assert remaining_length(n) == encoded


def test_a_remaining_length_beyond_four_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        remaining_length(268_435_456)


def test_a_retained_qos0_publish() -> None:
    assert publish_packet("a/b", b"{}") == b"\x31\x07\x00\x03a/b{}"


def test_connect_carries_the_credentials_and_keep_alive() -> None:
    packet = connect_packet("id", 30, "twin", "pw")
    assert packet == (b"\x10\x18" + b"\x00\x04MQTT\x04" + bytes((0xC2,)) + b"\x00\x1e"
                      + b"\x00\x02id" + b"\x00\x04twin" + b"\x00\x02pw")
    assert connect_packet("id", 30)[9] == 0x02  # clean session only: no user name, no password
    assert connect_packet("id", 30, "twin")[9] == 0x82  # a user name without a password
