"""Notifiers: alert episodes (``ev.alerts.v1``) to people, over e-mail or a webhook.

:class:`Notifier` is a :class:`streams.sinks.base.Sink` that holds what every channel shares; a
channel (:mod:`streams.sinks.email`, :mod:`streams.sinks.webhook`) only implements
:meth:`Notifier.send`. Per batch of alerts the notifier

1. **routes**: keeps the alerts of its rules at or above its minimum severity (:class:`Route`);
2. **de-duplicates**: one message per ``(alert_id, status)`` — an episode's OPENED and its
   RESOLVED, never again on a replay or a restart (:class:`DeliveryJournal`, a file in the state
   directory, written after each delivery);
3. **rate-limits**: a token bucket (:class:`RateLimiter`); when the pending alerts outnumber the
   tokens, they go out together as one digest message, so a storm is one message, and nothing is
   dropped;
4. **delivers**: :meth:`Notifier.send` raises :class:`TemporaryDeliveryError` (retried by the sink
   runner with backoff, the batch unacknowledged), :class:`RetryLaterError` (a 429: the runner waits
   ``Retry-After``) or :class:`PermanentDeliveryError`; a permanent failure, or a temporary one that
   lasts past ``EVTWIN_NOTIFY_RETRY_S``, sends the alerts to ``ev.alerts.dlq.v1`` with the reason.
"""

from __future__ import annotations

import json
import os
import time
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from prometheus_client import Counter

from connectors.endpoints import Endpoints
from streams.errors import SinkBackpressureError, SinkError
from streams.settings import Settings
from streams.sinks.base import Sink, SinkBatch
from streams.topics import ALERTS, ALERTS_DLQ

SEVERITIES = ("INFO", "WARNING", "CRITICAL")
DIGEST_MAX = 50
"""Most alerts in one digest message (a bigger backlog takes several)."""

NOTIFY_SENT = Counter("evtwin_notify_sent", "Notification messages delivered", ["channel", "kind"])
NOTIFY_ALERTS = Counter("evtwin_notify_alerts", "Alert changes delivered (single or in a digest)",
                        ["channel"])
NOTIFY_DEAD = Counter("evtwin_notify_dead_letters", "Alert changes sent to ev.alerts.dlq.v1",
                      ["channel"])


class TemporaryDeliveryError(SinkError):
    """The receiver is down or failed; trying again later may work."""


class PermanentDeliveryError(SinkError):
    """The receiver refused the message for good (bad address, 4xx); retrying will not help."""


class RetryLaterError(TemporaryDeliveryError):
    """The receiver asks us to wait ``retry_after`` seconds (HTTP 429, SMTP 421)."""

    def __init__(self, retry_after: float, message: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Route:
    """Which alerts a channel takes: ``min_severity`` or higher, of ``rules`` (empty = all)."""

    min_severity: str = "WARNING"
    rules: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, min_severity: str, rules: str) -> Route:
        return cls(min_severity, frozenset(r.strip() for r in rules.split(",") if r.strip()))

    def accepts(self, alert: dict[str, Any]) -> bool:
        severity = SEVERITIES.index(alert["severity"]) if alert["severity"] in SEVERITIES else 0
        return (severity >= SEVERITIES.index(self.min_severity)
                and (not self.rules or alert["rule"] in self.rules))


def delivery_key(alert: dict[str, Any]) -> str:
    """What is delivered once: one status change of one episode."""
    return f"{alert['alert_id']}:{alert['status']}"


class DeliveryJournal:
    """The delivery keys already sent, kept in an append-only file (newest ``keep`` on load), so a
    replayed batch or a restarted notifier does not send a message twice."""

    def __init__(self, path: Path, keep: int = 100_000) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = path.read_text().split() if path.exists() else []
        self.keys = set(lines[-keep:])
        if len(lines) > keep:  # compact
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(k + "\n" for k in lines[-keep:]))
            os.replace(tmp, path)
        self.file = path.open("a")

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def add(self, keys: Iterable[str]) -> None:
        new = [k for k in dict.fromkeys(keys) if k not in self.keys]
        self.file.write("".join(k + "\n" for k in new))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.keys.update(new)

    def close(self) -> None:
        self.file.close()


class RateLimiter:
    """A token bucket: ``per_min`` messages a minute, bursts of up to ``per_min``."""

    def __init__(self, per_min: float, clock: Any = time.monotonic) -> None:
        self.rate = per_min / 60.0
        self.capacity = max(1.0, per_min)
        self.tokens = self.capacity
        self.clock = clock
        self.at = clock()

    def available(self) -> int:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def take(self) -> None:
        self.available()
        self.tokens -= 1

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max(0.05, (1 - self.tokens) / self.rate) if self.available() < 1 else 0.0


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Message:
    """One notification: a subject line, a plain-text body, and the alerts it carries."""

    subject: str
    body: str
    alerts: tuple[dict[str, Any], ...]
    links: tuple[str, ...]


def battery_link(public_url: str, battery_id: str) -> str:
    """The battery's page in the web view (``battery.html?id=…``, served by ``evtwin api``)."""
    return f"{public_url.rstrip('/')}/battery.html?id={quote(battery_id, safe='')}"


def render(alert: dict[str, Any], public_url: str) -> Message:
    """The message of one alert change: battery, rule, severity, value and threshold, times, the
    rule's message and a link to the battery's page."""
    a, link = alert, battery_link(public_url, alert["battery_id"])
    subject = f"[{a['severity']}] {a['rule']} {a['status']} on {a['battery_id']}"
    body = "\n".join([
        f"Battery:    {a['battery_id']}",
        f"Rule:       {a['rule']} ({a['severity']})",
        f"Status:     {a['status']}",
        f"Value:      {a['value']:g} (threshold {a['threshold']:g})",
        f"Message:    {a['message']}",
        f"Opened at:  {_when(a['opened_at'])}",
        f"Resolved:   {_when(a.get('resolved_at'))}",
        f"Alert id:   {a['alert_id']}",
        f"Battery page: {link}",
    ])
    return Message(subject, body, (alert,), (link,))


def render_digest(alerts: Sequence[dict[str, Any]], public_url: str) -> Message:
    """One message for many alert changes (past the rate limit): one line each, with its link."""
    lines = [f"{len(alerts)} alert changes (rate limit reached; one digest instead of "
             f"{len(alerts)} messages):", ""]
    links = []
    for a in alerts:
        link = battery_link(public_url, a["battery_id"])
        links.append(link)
        lines.append(f"- [{a['severity']}] {a['rule']} {a['status']} on {a['battery_id']}: "
                     f"value {a['value']:g} (threshold {a['threshold']:g}) {link}")
    return Message(f"[evtwin] {len(alerts)} alert changes", "\n".join(lines), tuple(alerts), tuple(links))


class Notifier(Sink):
    """The shared half of every notifier (see the module docstring); subclasses set :attr:`name`
    and implement :meth:`send`."""

    topics: ClassVar[tuple[str, ...]] = (ALERTS,)

    def __init__(self, settings: Settings, endpoints: Endpoints, route: Route) -> None:
        self.route = route
        self.public_url = settings.public_url
        self.retry_s = settings.notify_retry_s
        self.timeout_s = settings.notify_timeout_s
        self.limiter = RateLimiter(settings.notify_rate_per_min)
        self.journal_path = settings.state_dir / "notify" / f"{self.name}-delivered.txt"
        self.journal: DeliveryJournal | None = None
        self.endpoints = endpoints
        self.failing_since: float | None = None
        self.dead_letters = 0
        self._producer: Any = None

    @abstractmethod
    def send(self, message: Message) -> None:
        """Deliver one message, or raise a :class:`TemporaryDeliveryError`,
        :class:`RetryLaterError` or :class:`PermanentDeliveryError`."""

    def setup(self) -> None:
        self.journal = DeliveryJournal(self.journal_path)

    def pending(self, batch: SinkBatch) -> list[dict[str, Any]]:
        """The batch's alerts this channel routes and has not delivered yet, once each."""
        assert self.journal is not None, "setup() first"
        seen: set[str] = set()
        out = []
        for alert in batch.records:
            key = delivery_key(alert)
            if self.route.accepts(alert) and key not in self.journal and key not in seen:
                seen.add(key)
                out.append(alert)
        return out

    def write(self, batch: SinkBatch) -> None:
        assert self.journal is not None, "setup() first"
        todo = self.pending(batch)
        while todo:
            tokens = self.limiter.available()
            if tokens < 1:
                raise SinkBackpressureError(self.limiter.wait_s(), ALERTS)
            if len(todo) <= tokens:
                group, message = todo[:1], render(todo[0], self.public_url)
            else:
                group = todo[:DIGEST_MAX]
                message = render_digest(group, self.public_url)
            self._deliver(message, batch)
            self.limiter.take()
            self.journal.add(delivery_key(a) for a in group)
            todo = todo[len(group):]

    def _deliver(self, message: Message, batch: SinkBatch) -> None:
        """Send ``message``; on a permanent failure, or a temporary one that has lasted
        ``retry_s``, dead-letter its alerts instead; otherwise re-raise (retried later)."""
        try:
            self.send(message)
        except PermanentDeliveryError as exc:
            self._dead_letter(message, batch, str(exc))
            return
        except TemporaryDeliveryError as exc:
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
            if now - self.failing_since < self.retry_s:
                if isinstance(exc, RetryLaterError):
                    raise SinkBackpressureError(exc.retry_after, ALERTS) from exc
                raise
            self._dead_letter(message, batch, f"still failing after {self.retry_s:g} s: {exc}")
            self.failing_since = None
            return
        self.failing_since = None
        NOTIFY_SENT.labels(self.name, "digest" if len(message.alerts) > 1 else "single").inc()
        NOTIFY_ALERTS.labels(self.name).inc(len(message.alerts))

    def _dead_letter(self, message: Message, batch: SinkBatch, reason: str) -> None:
        """Send each alert of ``message`` to ``ev.alerts.dlq.v1``, whole, with why."""
        from connectors import KafkaDeliveryError, kafka
        from streams.runtime.codecs import codec_for
        from streams.scoring.deadletter import dead_letter

        if self._producer is None:
            self._producer = kafka.checked_producer(self.endpoints.kafka_bootstrap_servers)
        codec = codec_for(ALERTS_DLQ, self.endpoints)
        where = {delivery_key(r): m for r, m in zip(batch.records, batch.messages, strict=False)}
        for alert in message.alerts:
            msg = where.get(delivery_key(alert))
            value, headers = dead_letter(
                codec, reason=f"{self.name} delivery failed: {reason}", error_type="delivery_error",
                source_topic=ALERTS, partition=getattr(msg, "partition", -1),
                offset=getattr(msg, "offset", -1), key=alert["battery_id"].encode(),
                value=json.dumps(alert).encode())
            self._producer.produce(ALERTS_DLQ, value, alert["battery_id"].encode(), headers=headers)
        try:
            self._producer.flush_delivered(30)
        except KafkaDeliveryError as exc:
            raise TemporaryDeliveryError(f"could not write dead letters to ev.alerts.dlq.v1: {exc}") from exc
        self.dead_letters += len(message.alerts)
        NOTIFY_DEAD.labels(self.name).inc(len(message.alerts))

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
        if self._producer is not None:
            self._producer.flush(10)


__all__ = [
    "DIGEST_MAX", "DeliveryJournal", "Message", "Notifier", "PermanentDeliveryError",
    "RateLimiter", "RetryLaterError", "Route", "TemporaryDeliveryError", "battery_link",
    "delivery_key", "render", "render_digest",
]
