"""The bridge's publisher against a mosquitto that wants a password (as compose and Kubernetes run
it): with the right credentials both of its connections (alerts through paho, state through its
own stream, connectors/mqtt_stream.py) are accepted and deliver; with a wrong password neither is,
and nothing is sent."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from connectors.embedded.mqtt_broker import mosquitto_binary, mqtt_ready
from connectors.mqtt_publisher import MqttPublisher
from tests.support.receivers import free_port


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = mosquitto_binary()
    assert binary, "mosquitto is not installed: run `make system-deps`"
    passwd_tool = shutil.which("mosquitto_passwd", path=f"{Path(binary).parent}:/usr/bin:/usr/sbin")
    assert passwd_tool, "mosquitto_passwd is not installed (package mosquitto)"
    d = tmp_path_factory.mktemp("mosquitto-auth")
    (d / "passwd").touch()
    subprocess.run([passwd_tool, "-b", str(d / "passwd"), "twin", "s3cret!"], check=True)
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d / 'passwd'}\n"
        f"persistence false\nuser {getpass.getuser()}\n")
    proc = subprocess.Popen([binary, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _listening(port):
        assert time.monotonic() < deadline and proc.poll() is None, "mosquitto did not start"
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_publisher_with_the_password_delivers_state_and_alerts(broker: int) -> None:
    got: list[tuple[str, dict[str, object]]] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="auth-sub")
    sub.username_pw_set("twin", "s3cret!")
    sub.on_connect = lambda c, *a: c.subscribe("ev/battery/AUTH_1/#", qos=1)
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    try:
        time.sleep(0.5)  # subscribed
        with MqttPublisher(f"mqtt://twin:s3cret%21@127.0.0.1:{broker}", client_id="auth-bridge") as pub:
            assert pub.wait_connected(10)
            pub.publish_state("AUTH_1", {"soc": 50.0})
            pub.publish_alert("AUTH_1", {"alert_id": "a1"})
            assert pub.flush(10)
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert sorted(got, key=str) == [("ev/battery/AUTH_1/alert", {"alert_id": "a1"}),
                                    ("ev/battery/AUTH_1/state", {"soc": 50.0})]


def test_a_wrong_password_is_refused_on_both_connections(broker: int) -> None:
    assert not mqtt_ready("127.0.0.1", broker)  # anonymous: refused too
    pub = MqttPublisher(f"mqtt://twin:wrong@127.0.0.1:{broker}", client_id="auth-wrong", reconnect_delay_s=(1, 1))
    with pub:
        pub.publish_state("AUTH_2", {"soc": 1.0})
        assert not pub.wait_connected(3)
        assert not pub._stream.connected and not pub._paho_up.is_set()
        assert pub.published["state"] == 0 and pub.pending == 1
