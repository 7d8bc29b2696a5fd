"""MQTT URLs: plain and TLS (mqtts://), with the CA and client certificate as parameters; every
mistake is one clear error naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.mqtt_publisher import MqttPublishError, mqtt_endpoint


def test_plain_and_tls_urls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    plain = mqtt_endpoint("mqtt://bridge:s%40cret@broker")
    assert (plain.host, plain.port, plain.user, plain.password, plain.tls) == ("broker", 1883, "bridge", "s@cret", False)
    tls = mqtt_endpoint(f"mqtts://broker.example?ca_file={ca}")
    assert (tls.host, tls.port, tls.tls, tls.ca_file, tls.cert_file) == ("broker.example", 8883, True, str(ca), None)
    assert mqtt_endpoint("mqtts://broker:9999").port == 9999
    assert mqtt_endpoint("mqtts://u:p@h:1") == mqtt_endpoint("mqtts://u:p@h:1?")  # nothing else set


@pytest.mark.parametrize(("url", "message"), [
    ("http://broker:1883", "must look like mqtt://"),
    ("mqtt://:1883", "must look like mqtt://"),
    ("mqtt://broker?ca_file=/etc/hostname", "need TLS: use mqtts://"),
    ("mqtts://broker?ca_file=/no/such/ca.pem", "ca_file /no/such/ca.pem does not exist"),
    ("mqtts://broker?cafile=/etc/hostname", "unknown parameter"),
    ("mqtts://broker?cert_file=/etc/hostname", "both cert_file and key_file"),
])
def test_bad_urls_say_what_to_change(url: str, message: str) -> None:
    with pytest.raises(MqttPublishError, match=message):
        mqtt_endpoint(url)
