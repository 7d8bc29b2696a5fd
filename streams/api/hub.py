"""Live streams for the WebSocket clients: one Kafka consumer per API process, fanned out to
per-client bounded queues.

A thread reads ``ev.predictions.v1`` and ``ev.alerts.v1`` from their end (assigned partitions, no
consumer group: each API process sees everything new) and hands decoded batches to the event loop.
The loop collects predictions for ``batch_ms`` and then encodes ONE frame for the fleet clients and
one per followed battery, whatever the number of clients; alerts go out at once. Each client has a
queue of ``queue_size`` frames and its own sender task: a client whose queue is full, or whose
socket does not take a frame within ``send_timeout_s``, is dropped with close code 4008, and no
other client waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

from streams.api.schemas import risk_band
from streams.topics import ALERTS, PREDICTIONS, REPORTED

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 4008
CLOSE_UNKNOWN_BATTERY = 4404
_LIVE_FIELDS = ("battery_id", "rul_cycles", "rul_p10", "rul_p90", "failure_probability",
                "anomaly_score", "model_version", "soc", "soh", "voltage", "current",
                "temperature", "charge_cycles", "power_consumption", "fault_score", "fault_flag")
#: Decimal places of the live values: finer than any sensor or model behind them resolves (mV, mA,
#: thousandths of a percent or a degree, tenths of a cycle, 1e-5 of a probability). The workers
#: write float64 (~17 significant digits): at 5,000 predictions/s and 200 fleet clients, those
#: digits were a quarter of the bytes the API writes (and every client reads). The REST API and
#: the tables keep full precision.
LIVE_DECIMALS = {"soc": 3, "soh": 3, "voltage": 3, "current": 3, "temperature": 3,
                 "power_consumption": 4, "rul_cycles": 1, "rul_p10": 1, "rul_p90": 1,
                 "failure_probability": 5, "anomaly_score": 5, "fault_score": 5}
_ALERT_FIELDS = ("alert_id", "battery_id", "rule", "severity", "status", "value", "threshold",
                 "message")


_COMPACT = (",", ":")  # JSON without the spaces after separators (7 % of a live frame's bytes)


def iso(value: Any) -> str | None:
    """An Avro timestamp (``datetime`` or epoch ms) as an ISO-8601 UTC string."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return datetime.fromtimestamp(int(value) / 1000.0, UTC).isoformat()


def live_prediction(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded ``prediction`` record as a :class:`streams.api.schemas.LivePrediction` dict, its
    measurements rounded to :data:`LIVE_DECIMALS`."""
    out = {f: record.get(f) for f in _LIVE_FIELDS}
    for field, places in LIVE_DECIMALS.items():
        value = out[field]
        if value is not None:
            out[field] = round(value, places)
    out["time"] = iso(record["timestamp"])
    out["scored_at"] = iso(record.get("scored_at"))
    out["risk"] = risk_band(record.get("failure_probability"))
    return out


def alert_message(record: dict[str, Any]) -> dict[str, Any]:
    """A decoded ``alert`` record as a :class:`streams.api.schemas.AlertOut` dict."""
    out = {f: record.get(f) for f in _ALERT_FIELDS}
    out["opened_at"] = iso(record["opened_at"])
    out["resolved_at"] = iso(record.get("resolved_at"))
    return out


class Client:
    """One connected WebSocket client."""

    def __init__(self, ws: Any, battery_id: str | None, queue_size: int) -> None:
        self.ws = ws
        self.battery_id = battery_id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self.dropped = False


class Hub:
    """Fan-out of live predictions, alerts and reported states to WebSocket clients."""

    def __init__(self, batch_ms: float = 50.0, queue_size: int = 64,
                 send_timeout_s: float = 5.0) -> None:
        self.batch_s = batch_ms / 1000.0
        self.queue_size = queue_size
        self.send_timeout_s = send_timeout_s
        self.fleet: set[Client] = set()
        self.by_battery: dict[str, set[Client]] = defaultdict(set)
        self.dropped = 0
        self.frames = 0
        self.received = 0
        self._pending: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        return len(self.fleet) + sum(len(c) for c in self.by_battery.values())

    def has_clients(self) -> bool:
        """Whether any client is connected; safe from another thread (no iteration: a battery's
        entry is removed with its last client)."""
        return bool(self.fleet) or bool(self.by_battery)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flusher = asyncio.create_task(self._flush_forever(), name="ws-flusher")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for client in list(self.fleet) + [c for s in self.by_battery.values() for c in s]:
            self._offer(client, None)

    # --- from the consumer thread ------------------------------------------------------------

    def publish(self, predictions: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        """Hand decoded records to the loop (thread-safe)."""
        if self._loop is not None and (predictions or alerts):
            self._loop.call_soon_threadsafe(self._ingest, predictions, alerts)

    def publish_frame(self, battery_id: str, frame: str) -> None:
        """Send a ready frame to the clients of ``battery_id`` and the fleet (thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._fanout, frame, battery_id)

    # --- on the loop -------------------------------------------------------------------------

    def _ingest(self, predictions: list[dict[str, Any]], alerts: list[dict[str, Any]]) -> None:
        self.received += len(predictions)
        self._pending.extend(predictions)
        for alert in alerts:
            self._fanout(json.dumps({"type": "alert", "data": alert}), alert["battery_id"])

    def _fanout(self, frame: str, battery_id: str | None) -> None:
        for client in list(self.fleet):
            self._offer(client, frame)
        if battery_id is not None:
            for client in list(self.by_battery.get(battery_id, ())):
                self._offer(client, frame)

    def _offer(self, client: Client, frame: str | None) -> None:
        try:
            client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._drop(client, "its queue is full")

    def _drop(self, client: Client, why: str) -> None:
        if client.dropped:
            return
        client.dropped = True
        self.dropped += 1
        self._remove(client)
        log.warning("WebSocket client %s dropped: %s", client.battery_id or "fleet", why)
        asyncio.get_running_loop().create_task(self._close(client.ws, CLOSE_TOO_SLOW, "too slow"))

    @staticmethod
    async def _close(ws: Any, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code, reason=reason), 5.0)

    def _remove(self, client: Client) -> None:
        self.fleet.discard(client)
        if client.battery_id is not None:
            subs = self.by_battery.get(client.battery_id)
            if subs is not None:
                subs.discard(client)
                if not subs:
                    del self.by_battery[client.battery_id]

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.batch_s)
            try:
                self.flush()
            except Exception:  # never let one bad batch stop the live streams
                log.exception("WebSocket flush failed")

    def flush(self) -> None:
        """Send the predictions collected since the last flush, one frame per audience."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self.fleet:
            frame = json.dumps({"type": "predictions", "data": pending}, separators=_COMPACT)
            for client in list(self.fleet):
                self._offer(client, frame)
            self.frames += 1
        if self.by_battery:
            mine: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for p in pending:
                if p["battery_id"] in self.by_battery:
                    mine[p["battery_id"]].append(p)
            for battery_id, items in mine.items():
                frame = json.dumps({"type": "predictions", "data": items}, separators=_COMPACT)
                for client in list(self.by_battery.get(battery_id, ())):
                    self._offer(client, frame)

    async def serve(self, ws: Any, battery_id: str | None) -> None:
        """Run one accepted WebSocket until it closes or is dropped."""
        client = Client(ws, battery_id, self.queue_size)
        if battery_id is None:
            self.fleet.add(client)
        else:
            self.by_battery[battery_id].add(client)
        hello = {"type": "hello", "battery_id": battery_id,
                 "server_time": datetime.now(UTC).isoformat()}
        reader = asyncio.create_task(self._read_until_closed(ws))
        try:
            await ws.send_text(json.dumps(hello))
            while not reader.done():
                getter = asyncio.ensure_future(client.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                frame = getter.result()
                if frame is None or client.dropped:
                    break
                try:
                    await asyncio.wait_for(ws.send_text(frame), self.send_timeout_s)
                except TimeoutError:
                    self._drop(client, f"a frame took over {self.send_timeout_s:g} s to send")
                    break
        except Exception as exc:  # the client went away mid-send
            log.debug("WebSocket client gone: %s", exc)
        finally:
            reader.cancel()
            self._remove(client)

    @staticmethod
    async def _read_until_closed(ws: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                message = await ws.receive()
                if message.get("type") == "websocket.disconnect":
                    return


class LiveConsumer:
    """The one Kafka consumer of an API process: predictions and alerts (from their end) into a
    :class:`Hub`, and the simulator's reports (from the beginning) into a reports store.

    One consumer, whatever the number of clients and topics: against the embedded noida-db, which
    answers an empty fetch at once, every consumer costs a fetch loop of its own. For the same
    reason, while no WebSocket client is connected, the consumer rests when the topics are quiet:
    after :attr:`IDLE_POLLS` empty polls it gives its partitions up for a while and takes them
    again at the offsets it tracks itself (librdkafka fetches without pause otherwise: measured,
    an idle API cost 52 % of a core and the broker 38 % answering it). The rest doubles while the
    quiet lasts, from :attr:`IDLE_REST_MIN_S` to :attr:`IDLE_REST_MAX_S`; nothing produced during
    a rest is lost, a reported state can come up to :attr:`IDLE_REST_MAX_S` later. With clients
    connected it never rests (measured: resting in the gaps between a producer's batches cost the
    fan-out 10-20 ms at the median and 70-100 ms at p95).

    While records flow, a partition that has just delivered is fetched again only after
    ``fetch.queue.backoff.ms`` (:attr:`FETCH_CONFIG`): librdkafka otherwise fetches back to back,
    and a broker that answers at once (noida-db ignores ``fetch.wait.max.ms`` and
    ``fetch.min.bytes``) returns a few records per fetch — measured at 5,000 records/s, the
    consumer's fetch loop cost 50–52 % of a core and the broker 30–47 % more; with a 20 ms pause,
    10 % and 10–13 % more (same records/s; a standalone consumer, 3 runs), for at most 20 ms added to a prediction's way to the page (frames go
    every 50 ms).

    Args:
        consumer: A confluent-kafka consumer (partitions are assigned, no group).
        hub: Where the live records go.
        prediction_codec / alert_codec: Codecs of the two live topics.
        partitions: Partitions of each topic, by topic name.
        reported_codec / on_reported: Codec of ``ev.reported.v1`` and what stores its records
            (``None``: the reports are not followed).
    """

    IDLE_POLLS = 3
    #: Consumer settings: wait for the broker up to 20 ms; after a partition delivered, fetch it
    #: again 20 ms later, not at once (``queued.min.messages`` 1: a partition with records queued
    #: is "full"; ``fetch.queue.backoff.ms``: how long a full partition waits).
    FETCH_CONFIG: ClassVar[dict[str, int]] = {"fetch.wait.max.ms": 20, "queued.min.messages": 1,
                                              "fetch.queue.backoff.ms": 20}
    IDLE_REST_MIN_S = 0.01
    IDLE_REST_MAX_S = 0.2

    def __init__(self, consumer: Any, hub: Hub, prediction_codec: Any, alert_codec: Any,
                 partitions: dict[str, int], reported_codec: Any = None,
                 on_reported: Any = None) -> None:
        self.consumer = consumer
        self.hub = hub
        self.codecs = {PREDICTIONS: prediction_codec, ALERTS: alert_codec, REPORTED: reported_codec}
        self.on_reported = on_reported
        self.stop_event = threading.Event()
        self.errors = 0
        self.rests = 0
        self.rest_s = self.IDLE_REST_MIN_S
        self.last_poll = 0.0
        #: Where each partition starts: the live topics from their end, the reports from the start
        #: (logical offsets until :meth:`_resolve` makes them absolute).
        self.next_offsets: dict[tuple[str, int], int] = {
            (t, p): OFFSET_END for t in (PREDICTIONS, ALERTS) for p in range(partitions.get(t, 0))}
        if on_reported is not None:
            self.next_offsets.update({(REPORTED, p): OFFSET_BEGINNING for p in range(partitions.get(REPORTED, 0))})
        self.thread = threading.Thread(target=self._run, name="api-live-consumer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _resolve(self) -> None:
        """Logical start offsets made absolute (the broker's watermarks), so that a rest can give
        the partitions up and take them again at exact offsets, read from or not."""
        for (topic, part), offset in self.next_offsets.items():
            if offset < 0:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
                self.next_offsets[(topic, part)] = high if offset == OFFSET_END else low

    def _assign(self) -> None:
        self.consumer.assign([TopicPartition(t, p, o) for (t, p), o in self.next_offsets.items()])

    def _rest(self) -> None:
        self.consumer.unassign()
        self.rests += 1
        self.stop_event.wait(self.rest_s)
        self.rest_s = min(2 * self.rest_s, self.IDLE_REST_MAX_S)
        self._assign()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._resolve()
                self._assign()
                break
            except Exception as exc:  # the broker is not there yet: try again
                self.errors += 1
                log.warning("live consumer: cannot start at the topics' ends: %s", exc)
                self.stop_event.wait(1.0)
        idle = 0
        while not self.stop_event.is_set():
            try:  # a short wait: consume() holds what it has until the timeout or the count
                messages = self.consumer.consume(num_messages=2000, timeout=0.01)
                self.last_poll = time.monotonic()
                if not messages:
                    idle += 1
                    if idle >= self.IDLE_POLLS and not self.hub.has_clients():
                        idle = 0
                        self._rest()
                    continue
            except Exception as exc:
                self.errors += 1
                log.warning("live consumer: %s", exc)
                time.sleep(0.5)
                continue
            idle = 0
            self.rest_s = self.IDLE_REST_MIN_S
            predictions, alerts, reports = [], [], []
            for msg in messages:
                if msg.error() is not None:
                    continue
                self.next_offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
                try:
                    record = self.codecs[msg.topic()].decode(msg.value())
                    if msg.topic() == PREDICTIONS:
                        predictions.append(live_prediction(record))
                    elif msg.topic() == ALERTS:
                        alerts.append(alert_message(record))
                    else:
                        reports.append(record)
                except Exception as exc:
                    self.errors += 1
                    log.warning("live consumer: undecodable record %s[%d]@%d: %s", msg.topic(),
                                msg.partition(), msg.offset(), exc)
            self.hub.publish(predictions, alerts)
            if reports and self.on_reported is not None:
                self.on_reported(reports)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        with contextlib.suppress(Exception):
            self.consumer.close()


__all__ = ["CLOSE_TOO_SLOW", "CLOSE_UNKNOWN_BATTERY", "Client", "Hub", "LiveConsumer",
           "alert_message", "iso", "live_prediction"]
