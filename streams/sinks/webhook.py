"""The webhook notifier: alert changes as a JSON POST to a Slack-compatible incoming webhook.

The body has Slack's ``text`` (mrkdwn, with a link to the battery page) and ``blocks``, which Slack,
Mattermost, Rocket.Chat and Teams' Slack-compatible endpoints render, plus ``alerts``: the alert
records themselves for a program on the other end. HTTP 2xx is delivered; 429 waits for its
``Retry-After``; 408 and 5xx and a receiver that does not answer are retried with backoff; any other
4xx is a permanent failure (dead-lettered). Run it as ``evtwin sink --kind webhook``.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

from connectors.endpoints import Endpoints
from streams.errors import SinkError
from streams.settings import Settings
from streams.sinks.notify import (
    Message,
    Notifier,
    PermanentDeliveryError,
    RetryLaterError,
    Route,
    TemporaryDeliveryError,
)

DEFAULT_RETRY_AFTER_S = 5.0


def retry_after_s(header: str | None, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not header:
        return default
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


def slack_payload(message: Message) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` and ``blocks``, and the alert records."""
    first = message.alerts[0]
    if len(message.alerts) == 1:
        text = (f"*{message.subject}*\n{first['message']}\nvalue {first['value']:g} "
                f"(threshold {first['threshold']:g}) · <{message.links[0]}|battery page>")
    else:
        text = f"*{message.subject}*\n" + "\n".join(
            f"• [{a['severity']}] {a['rule']} {a['status']} on <{link}|{a['battery_id']}>: "
            f"{a['value']:g} (threshold {a['threshold']:g})"
            for a, link in zip(message.alerts, message.links, strict=True))
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "alerts": list(message.alerts),
    }


class WebhookSink(Notifier):
    """Posts alert changes to ``EVTWIN_WEBHOOK_URL``."""

    name: ClassVar[str] = "webhook"

    def __init__(self, settings: Settings, endpoints: Endpoints) -> None:
        if settings.webhook_url is None:
            raise SinkError("no webhook: set EVTWIN_WEBHOOK_URL (a Slack-compatible incoming webhook)")
        super().__init__(settings, endpoints,
                         Route.parse(settings.webhook_min_severity, settings.webhook_rules))
        self.url = settings.webhook_url.get_secret_value()

    def send(self, message: Message) -> None:
        body = json.dumps(slack_payload(message)).encode()
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            what = f"webhook answered HTTP {exc.code} {exc.reason}"
            if exc.code == 429:
                raise RetryLaterError(retry_after_s(exc.headers.get("Retry-After")), what) from exc
            if exc.code == 408 or exc.code >= 500:
                raise TemporaryDeliveryError(what) from exc
            raise PermanentDeliveryError(what) from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
            raise TemporaryDeliveryError(f"webhook unreachable: {exc}") from exc


__all__ = ["WebhookSink", "retry_after_s", "slack_payload"]
