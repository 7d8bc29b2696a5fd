"""The MQTT publisher against the real embedded broker, checked by an independent subscriber:
retained state, QoS 1 alerts, the fleet summary, delivery after a broker loss, the bounded buffer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from connectors.embedded.process import free_port
from connectors.mqtt_publisher import MqttPublisher, MqttPublishError, mqtt_endpoint


class Subscriber:
    """An independent paho client that records what arrives (topic, payload, retain flag)."""

    def __init__(self, url: str, topic_filter: str) -> None:
        ep = mqtt_endpoint(url)
        host, port = ep.host, ep.port
        self.topic_filter = topic_filter
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not mqtt.topic_matches_sub(self.topic_filter, msg.topic):
            # amqtt 0.12 sends a connecting client the retained messages of every topic filter
            # any client ever subscribed to; a real subscriber only looks at its own.
            return
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def wait_for(self, count: int, timeout_s: float = 15) -> list[tuple[str, dict[str, Any], bool]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class TcpProxy:
    """A TCP relay to the broker that can be cut and restored: a broker loss as the publisher sees
    it, while the independent subscriber stays connected to the broker itself."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        assert self._server is not None
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); frees the port
        self._server.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()


@pytest.fixture
def mqtt_url(stack) -> str:  # type: ignore[no-untyped-def]
    return stack[1].mqtt_url


@pytest.fixture
def publisher(mqtt_url: str) -> Iterator[MqttPublisher]:
    pub = MqttPublisher(mqtt_url)
    pub.start()
    assert pub.wait_connected(10)
    yield pub
    pub.stop()


def _bid() -> str:
    return f"PUB_{uuid.uuid4().hex[:8]}"


def test_state_is_retained_and_a_late_subscriber_gets_the_newest(mqtt_url: str, publisher: MqttPublisher) -> None:
    bid = _bid()
    for soc in (90.0, 85.0, 80.5):
        publisher.publish_state(bid, {"battery_id": bid, "soc": soc, "rul_cycles": 812.0})
    assert publisher.flush(10)
    late = Subscriber(mqtt_url, f"ev/battery/{bid}/state")  # subscribes after the publishing
    try:
        got = late.wait_for(1)
        time.sleep(0.2)  # nothing else should follow
        assert late.messages == [(f"ev/battery/{bid}/state",
                                  {"battery_id": bid, "soc": 80.5, "rul_cycles": 812.0}, True)]
        assert got
    finally:
        late.close()


def test_fleet_summary_is_retained(mqtt_url: str, publisher: MqttPublisher) -> None:
    summary = {"batteries": 200, "open_alerts": 3, "marker": uuid.uuid4().hex}
    publisher.publish_fleet_summary(summary)
    assert publisher.flush(10)
    late = Subscriber(mqtt_url, "ev/fleet/summary")
    try:
        assert late.wait_for(1)[-1] == ("ev/fleet/summary", summary, True)
    finally:
        late.close()
    assert publisher.published["fleet_summary"] >= 1


def test_alerts_arrive_at_qos1_not_retained_each_one(mqtt_url: str, publisher: MqttPublisher) -> None:
    bid = _bid()
    sub = Subscriber(mqtt_url, f"ev/battery/{bid}/alert")
    in_flight: list[int] = []
    sampling = threading.Event()

    def sample() -> None:  # how many alerts await their PUBACK, over time
        while not sampling.is_set():
            in_flight.append(len(publisher._inflight))
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for i in range(600):
            publisher.publish_alert(bid, {"alert_id": f"a{i}", "status": "OPENED", "value": 61.5})
        assert publisher.flush(20)
        got = sub.wait_for(600)
    finally:
        sampling.set()
        sampler.join()
        sub.close()
    assert 0 < max(in_flight) <= 100
    assert sorted(int(p["alert_id"][1:]) for _, p, _ in got) == list(range(600))
    assert all(topic == f"ev/battery/{bid}/alert" and not retained for topic, _, retained in got)
    assert publisher.published["alert"] == 600 and publisher.dropped == 0


def test_bad_battery_ids_and_urls_are_refused(publisher: MqttPublisher) -> None:
    for bad in ("a/b", "+", "#", "", "x" * 51):
        with pytest.raises(MqttPublishError):
            publisher.publish_state(bad, {})
        with pytest.raises(MqttPublishError):
            publisher.publish_alert(bad, {})
    with pytest.raises(MqttPublishError, match="mqtt://"):
        MqttPublisher("http://127.0.0.1:1883")
    ep = mqtt_endpoint("mqtt://twin:p%40ss@broker:1884")
    assert (ep.host, ep.port, ep.user, ep.password, ep.tls) == ("broker", 1884, "twin", "p@ss", False)


def test_alerts_and_state_published_during_a_broker_loss_arrive_afterwards(mqtt_url: str) -> None:
    broker_port = mqtt_endpoint(mqtt_url).port
    proxy = TcpProxy(broker_port)
    proxy.start()
    bid = _bid()
    sub = Subscriber(mqtt_url, f"ev/battery/{bid}/#")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{proxy.port}", reconnect_delay_s=(1, 1), keepalive_s=5)
    pub.start()
    try:
        assert pub.wait_connected(10)
        for i in range(50):
            pub.publish_alert(bid, {"alert_id": f"before-{i}"})
        assert pub.flush(10)
        proxy.cut()
        deadline = time.monotonic() + 10
        while pub.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pub.connected
        for i in range(300):
            pub.publish_alert(bid, {"alert_id": f"during-{i}"})
            pub.publish_state(bid, {"soc": float(i)})
        time.sleep(0.5)
        assert pub.pending >= 300  # kept, not sent into the void
        proxy.start()
        assert pub.flush(20)
        assert pub.reconnects == 1
        got = sub.wait_for(351)
    finally:
        pub.stop()
        sub.close()
        proxy.cut()
    alerts = {p["alert_id"] for t, p, _ in got if t.endswith("/alert")}
    states = [p for t, p, _ in got if t.endswith("/state")]
    assert alerts == {f"before-{i}" for i in range(50)} | {f"during-{i}" for i in range(300)}
    assert states == [{"soc": 299.0}]  # conflated: only the newest state after the outage
    assert pub.dropped == 0


def test_a_full_buffer_drops_the_oldest_alerts_and_counts_them() -> None:
    pub = MqttPublisher(f"mqtt://127.0.0.1:{free_port()}", buffer_size=5)  # nobody listens there
    pub.start()
    try:
        for i in range(8):
            pub.publish_alert("BUF_1", {"alert_id": f"a{i}"})
        assert pub.dropped == 3 and pub.pending == 5
        assert [json.loads(data)["alert_id"] for _, data in pub._alerts] == [f"a{i}" for i in range(3, 8)]
        assert not pub.flush(0.2)
    finally:
        pub.stop(flush_timeout_s=0)


def test_the_bridge_paces_state_per_pack_and_ends_on_the_newest(stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """MqttSink with EVTWIN_MQTT_STATE_INTERVAL_S: a pack's first state goes out at once, the
    ones within the interval are conflated into one message sent when it is over (the newest),
    and another pack is not held up by the first one's interval. What went out is read from the
    broker's retained messages (a live QoS 0 subscription may miss one on amqtt) and counted by
    the publisher."""
    from streams.settings import Settings
    from streams.sinks.base import SinkBatch
    from streams.sinks.mqtt import MqttSink
    from streams.topics import PREDICTIONS

    settings, ep = stack
    a, b = _bid(), _bid()
    sink = MqttSink(Settings(state_dir=tmp_path, mqtt_state_interval_s=1.0), ep)
    sink.setup()
    assert sink.publisher.wait_connected(10)

    def batch(*recs: tuple[str, int]) -> SinkBatch:
        return SinkBatch(PREDICTIONS, [{"battery_id": bid, "timestamp": ts, "soc": float(ts)} for bid, ts in recs])

    def sent() -> int:
        assert sink.publisher.flush(10)
        return sink.publisher.published["state"]

    def retained(battery: str) -> list[int]:
        late = Subscriber(ep.mqtt_url, f"ev/battery/{battery}/state")
        try:  # distinct: amqtt may hand a new client the same retained message twice (once for
            # its own subscription, once for an earlier client's filter; see Subscriber)
            return sorted({m["timestamp"] for _, m, _ in late.wait_for(1)})
        finally:
            late.close()

    try:
        started = time.monotonic()
        sink.write(batch((a, 1)))
        sink.write(batch((a, 2), (b, 1)))  # a: within its interval (held); b: its first, at once
        sink.write(batch((a, 3)))  # replaces a's held 2
        assert sink.send_held() == 0  # a's interval is not over
        assert sent() == 2  # a's 1 and b's 1
        assert retained(a) == [1] and retained(b) == [1]
        while time.monotonic() - started < 1.0:
            assert sink.send_held() == 0
            time.sleep(0.05)
        time.sleep(0.05)
        assert sink.send_held() == 1  # a's newest, once its interval is over
        assert sent() == 3  # never a's 2: conflated into 3
        assert retained(a) == [3]
        assert sink.held == {}
        sink.write(batch((b, 2)))  # held (b's interval is not over) …
        sink.close()  # … and sent on close: the retained state is the newest
        assert retained(b) == [2]
    finally:
        sink.publisher.stop()
