"""The notifier sinks against real loopback servers: aiosmtpd (STARTTLS + login) receives the
mail with battery, rule, values and the battery link; an HTTP receiver gets the webhook; 429 is
respected; routing, de-duplication (also across a restart), the digest past the rate limit, and
dead letters in ev.alerts.dlq.v1 when delivery finally fails."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.errors import SinkBackpressureError
from streams.settings import Settings
from streams.sinks.base import SinkBatch
from streams.sinks.email import EmailSink
from streams.sinks.notify import TemporaryDeliveryError
from streams.sinks.webhook import WebhookSink
from streams.topics import ALERTS, ALERTS_DLQ
from tests.support.receivers import SmtpReceiver, WebhookReceiver, self_signed_cert, wait_until
from tests.support.topic_reader import read_topic

PUBLIC = "https://twin.example.org"


def alert(battery: str, rule: str = "over_temperature", severity: str = "CRITICAL",
          status: str = "OPENED", alert_id: str | None = None, value: float = 63.5) -> dict[str, Any]:
    return {"alert_id": alert_id or str(uuid.uuid4()), "battery_id": battery, "rule": rule,
            "severity": severity, "status": status, "value": value, "threshold": 60.0,
            "message": f"{rule} on {battery}", "event_id": str(uuid.uuid4()),
            "opened_at": 1_764_740_000_000,
            "resolved_at": 1_764_740_060_000 if status == "RESOLVED" else None}


def settings(state_dir: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"state_dir": state_dir, "public_url": PUBLIC, "notify_rate_per_min": 600}
    return Settings(**(base | kw))


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    yield r
    r.stop()


def test_mail_over_starttls_with_login_has_battery_rule_values_and_link(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    smtp = SmtpReceiver(cert=self_signed_cert(state_dir), login=("twin", "s3cret")).start()
    try:
        sink = EmailSink(settings(state_dir, smtp_url=smtp.url, smtp_tls="starttls",
                                  smtp_ca_file=state_dir / "smtp-cert.pem",
                                  email_to="ops@example.org, fleet@example.org"), ep)
        sink.setup()
        opened = alert("BAT-MAIL-1")
        sink.write(SinkBatch(ALERTS, [opened]))
        assert wait_until(lambda: len(smtp.mails) == 1, 10)
        mail = smtp.mails[0][1]
        assert mail["To"] == "ops@example.org, fleet@example.org"
        assert mail["Subject"] == "[CRITICAL] over_temperature OPENED on BAT-MAIL-1"
        body = mail.get_content()
        assert "BAT-MAIL-1" in body and "over_temperature" in body
        assert "63.5 (threshold 60)" in body
        assert f"{PUBLIC}/battery.html?id=BAT-MAIL-1" in body

        sink.write(SinkBatch(ALERTS, [opened]))  # a replay: nothing new
        sink.write(SinkBatch(ALERTS, [alert("BAT-MAIL-1", status="RESOLVED",
                                            alert_id=opened["alert_id"], value=55.0)]))
        assert wait_until(lambda: len(smtp.mails) == 2, 10)
        assert smtp.mails[1][1]["Subject"] == "[CRITICAL] over_temperature RESOLVED on BAT-MAIL-1"
        sink.close()
    finally:
        smtp.stop()


def test_refused_recipient_is_a_dead_letter_not_a_retry_loop(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    smtp = SmtpReceiver().start()
    try:
        sink = EmailSink(settings(state_dir, smtp_url=smtp.url, smtp_tls="none",
                                  email_to="nobody@example.org"), ep)
        sink.setup()
        sink.write(SinkBatch(ALERTS, [alert("BAT-MAIL-550")]))  # 550: permanent; batch taken
        sink.close()
        assert smtp.mails == []
        letters = read_topic(ep.kafka_bootstrap_servers, ALERTS_DLQ,
                             lambda m: m.key() == b"BAT-MAIL-550", 1)
        assert len(letters) == 1
        headers = dict(letters[0].headers())
        assert b"nobody@example.org" in headers["evtwin.reason"]
        assert headers["evtwin.source.topic"] == ALERTS.encode()
    finally:
        smtp.stop()


def test_webhook_routes_by_severity_and_rule_and_sends_each_change_once(stack, state_dir: Path,  # type: ignore[no-untyped-def]
                                                                         webhook: WebhookReceiver) -> None:
    _, ep = stack
    s = settings(state_dir, webhook_url=webhook.url, webhook_min_severity="WARNING",
                 webhook_rules="over_temperature,low_soc")
    sink = WebhookSink(s, ep)
    sink.setup()
    routed = alert("BAT-HOOK-1")
    batch = SinkBatch(ALERTS, [
        routed, dict(routed),  # twice in one batch: one message
        alert("BAT-HOOK-2", rule="low_soc", severity="INFO"),  # below the severity
        alert("BAT-HOOK-3", rule="anomaly", severity="WARNING"),  # not one of the rules
    ])
    sink.write(batch)
    sink.write(batch)  # the runner offers a batch again after a crash or a retry
    sink.close()
    assert [a["battery_id"] for a in webhook.alerts()] == ["BAT-HOOK-1"]
    body = webhook.received[0][1]
    assert f"<{PUBLIC}/battery.html?id=BAT-HOOK-1|battery page>" in body["text"]
    assert body["blocks"][0]["text"]["text"] == body["text"]

    # A restarted notifier (same state directory) does not send it again either.
    again = WebhookSink(s, ep)
    again.setup()
    again.write(batch)
    again.close()
    assert len(webhook.received) == 1


def test_webhook_429_waits_for_retry_after(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    receiver = WebhookReceiver(answer_429=1, retry_after="7").start()
    try:
        sink = WebhookSink(settings(state_dir, webhook_url=receiver.url), ep)
        sink.setup()
        batch = SinkBatch(ALERTS, [alert("BAT-429")])
        with pytest.raises(SinkBackpressureError) as info:
            sink.write(batch)
        assert info.value.retry_after == 7.0
        sink.write(batch)  # what the runner does after waiting
        assert [a["battery_id"] for a in receiver.alerts()] == ["BAT-429"]
        sink.close()
    finally:
        receiver.stop()


def test_past_the_rate_limit_alerts_go_out_as_one_digest(stack, state_dir: Path,  # type: ignore[no-untyped-def]
                                                         webhook: WebhookReceiver) -> None:
    _, ep = stack
    sink = WebhookSink(settings(state_dir, webhook_url=webhook.url, notify_rate_per_min=2), ep)
    sink.setup()
    sink.write(SinkBatch(ALERTS, [alert("BAT-RATE-0")]))
    storm = [alert(f"BAT-RATE-{i}") for i in range(1, 41)]
    sink.write(SinkBatch(ALERTS, storm))  # 40 pending, 1 token left: one digest
    assert len(webhook.received) == 2
    assert len(webhook.received[1][1]["alerts"]) == 40
    assert "40 alert changes" in webhook.received[1][1]["text"]
    with pytest.raises(SinkBackpressureError) as info:  # the bucket is empty now
        sink.write(SinkBatch(ALERTS, [alert("BAT-RATE-X")]))
    assert 0 < info.value.retry_after <= 30
    sink.close()
    assert sorted(a["battery_id"] for a in webhook.alerts()) == sorted(
        ["BAT-RATE-0"] + [a["battery_id"] for a in storm])


def test_receiver_refusing_for_good_or_down_past_the_window_dead_letters(stack, state_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _, ep = stack
    refusing = WebhookReceiver(status=404).start()
    try:
        sink = WebhookSink(settings(state_dir, webhook_url=refusing.url), ep)
        sink.setup()
        sink.write(SinkBatch(ALERTS, [alert("BAT-DLQ-404")]))  # taken: dead-lettered
        sink.close()
    finally:
        refusing.stop()
    down = WebhookReceiver()  # never started: connection refused
    sink = WebhookSink(settings(state_dir / "b", webhook_url=down.url, notify_retry_s=0.3), ep)
    sink.setup()
    batch = SinkBatch(ALERTS, [alert("BAT-DLQ-DOWN")])
    with pytest.raises(TemporaryDeliveryError):
        sink.write(batch)  # retried by the runner while within the window
    assert wait_until(lambda: False, 0.4) is False
    sink.write(batch)  # past the window: dead-lettered, the batch is taken
    sink.close()
    letters = read_topic(ep.kafka_bootstrap_servers, ALERTS_DLQ,
                         lambda m: (m.key() or b"").startswith(b"BAT-DLQ-"), 2)
    reasons = {m.key().decode(): dict(m.headers())["evtwin.reason"].decode() for m in letters}
    assert "HTTP 404" in reasons["BAT-DLQ-404"]
    assert "still failing after 0.3 s" in reasons["BAT-DLQ-DOWN"]
    from streams.runtime.codecs import codec_for

    envelope = codec_for(ALERTS_DLQ, ep).decode(letters[0].value())
    assert json.loads(envelope["original_value"])["battery_id"].startswith("BAT-DLQ-")
