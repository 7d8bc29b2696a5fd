"""The embedded MQTT broker: mosquitto when it is installed, else amqtt (pure Python)."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import time

from connectors import ServiceStartError
from connectors.embedded.process import ChildService, python_child_env


def mosquitto_binary() -> str | None:
    """The mosquitto binary: on PATH, or in /usr/sbin where Debian puts it (not on a user's PATH)."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def choose_mqtt_broker(setting: str) -> str:
    """Resolve ``EVTWIN_MQTT_BROKER``: ``auto`` means mosquitto when installed, else amqtt."""
    if setting == "auto":
        return "mosquitto" if mosquitto_binary() else "amqtt"
    if setting == "mosquitto" and not mosquitto_binary():
        raise ServiceStartError(
            "mqtt: mosquitto is not on PATH; install it (apt-get install mosquitto) or set "
            "EVTWIN_MQTT_BROKER=amqtt"
        )
    return setting


def mqtt_ready(host: str, port: int) -> bool:
    """Connect with paho-mqtt and wait for the broker's CONNACK."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evtwin-readiness")
    try:
        client.connect(host, port, keepalive=5)
        client.loop_start()
        for _ in range(50):
            if client.is_connected():
                return True
            time.sleep(0.02)
        return False
    finally:
        client.loop_stop()
        client.disconnect()


class MqttBroker(ChildService):
    """An embedded MQTT broker on 127.0.0.1.

    Args:
        kind: ``"mosquitto"`` or ``"amqtt"``.
        data_dir: Where its configuration and log go.
        port: TCP port; 0 picks a free one.
    """

    name = "mqtt"
    port_setting = "EVTWIN_EMBEDDED_MQTT_PORT"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        if self.kind == "amqtt":
            return [sys.executable, "-m", "connectors.embedded.amqtt_server", "--port", str(self.port)]
        conf = self.data_dir / "mosquitto.conf"
        user = pwd.getpwuid(os.getuid()).pw_name
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"user {user}\nlog_dest stdout\nmax_queued_messages 100000\n"
        )
        return [mosquitto_binary() or "mosquitto", "-c", str(conf)]

    def env(self) -> dict[str, str]:
        return python_child_env()

    def ready(self) -> bool:
        return mqtt_ready("127.0.0.1", self.port)


__all__ = ["MqttBroker", "choose_mqtt_broker", "mosquitto_binary", "mqtt_ready"]
