"""End to end: `evtwin sink --kind webhook` and `--kind email` consume ev.alerts.v1 on the
embedded stack and deliver to real loopback receivers. A 429 is waited out for its Retry-After;
receivers down for 10 s lose nothing and get each alert change exactly once. Prints the delivery
latency (alert produced -> webhook / mail received): run with ``-s`` to read it."""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from connectors import kafka
from connectors.embedded.process import stop_processes
from streams.runtime.codecs import codec_for
from streams.topics import ALERTS
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.receivers import SmtpReceiver, WebhookReceiver, wait_until


def _alert(battery: str, severity: str = "WARNING") -> dict:
    return {"alert_id": str(uuid.uuid4()), "battery_id": battery, "rule": "low_soc",
            "severity": severity, "status": "OPENED", "value": 11.5, "threshold": 15.0,
            "message": f"state of charge 11.5 % below 15 % on {battery}",
            "event_id": str(uuid.uuid4()), "opened_at": int(time.time() * 1000), "resolved_at": None}


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, SmtpReceiver]]:
    hook = WebhookReceiver(answer_429=2, retry_after="1").start()
    smtp = SmtpReceiver().start()
    yield hook, smtp
    hook.stop()
    smtp.stop()


def _notifier(kind: str, settings, **env: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    e = cli_env(settings.state_dir, EVTWIN_METRICS_PORT="0", EVTWIN_NOTIFY_RATE_PER_MIN="6000",
                EVTWIN_PUBLIC_URL="http://twin.test", **env)
    log = open(settings.state_dir / f"notify-{kind}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(EVTWIN + ["sink", "--kind", kind], env=e, cwd=REPO, stdout=log, stderr=log)


def test_notifiers_deliver_respect_429_and_lose_nothing_through_an_outage(stack, receivers) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    hook, smtp = receivers
    prefix = f"NTF{uuid.uuid4().hex[:5]}_"
    procs = [
        _notifier("webhook", settings, EVTWIN_WEBHOOK_URL=hook.url, EVTWIN_WEBHOOK_MIN_SEVERITY="INFO"),
        _notifier("email", settings, EVTWIN_SMTP_URL=smtp.url, EVTWIN_SMTP_TLS="none",
                  EVTWIN_EMAIL_TO="ops@example.org", EVTWIN_EMAIL_MIN_SEVERITY="INFO"),
    ]
    codec, producer = codec_for(ALERTS, ep), kafka.producer(ep.kafka_bootstrap_servers)
    sent: dict[str, float] = {}

    def produce(battery: str) -> None:
        rec = _alert(battery)
        producer.produce(ALERTS, codec.encode(rec), battery.encode())
        producer.flush(10)
        sent[rec["alert_id"]] = time.time()

    def hooked() -> dict[str, float]:
        return {a["alert_id"]: t for t, body in hook.received for a in body["alerts"]
                if a["battery_id"].startswith(prefix)}

    def mailed() -> dict[str, float]:
        return {m["X-Evtwin-Alerts"].split(":")[0]: t for t, m in smtp.mails
                if prefix in m["Subject"]}

    try:
        # The first alert meets two 429s with Retry-After: 1 (and waits for the group to form).
        produce(prefix + "WARM")
        assert wait_until(lambda: len(hooked()) == 1 and len(mailed()) == 1, 90), "no delivery"
        assert len(hook.refused) == 2
        assert hook.refused[1] - hook.refused[0] >= 0.95
        assert min(hooked().values()) - hook.refused[1] >= 0.95

        for i in range(20):  # latency, one alert at a time
            produce(f"{prefix}L{i}")
            time.sleep(0.25)
        assert wait_until(lambda: len(hooked()) == 21 and len(mailed()) == 21, 30)

        hook.stop()  # both receivers down for 10 s
        smtp.stop()
        down_ids = []
        for i in range(10):
            produce(f"{prefix}D{i}")
            down_ids.append(list(sent)[-1])
        time.sleep(10)
        hook.start()
        smtp.start()
        assert wait_until(lambda: len(hooked()) == 31 and len(mailed()) == 31, 60), (
            f"after the outage: webhook {len(hooked())}/31, mail {len(mailed())}/31")
        time.sleep(2)
        ids = [a["alert_id"] for _, b in hook.received for a in b["alerts"]
               if a["battery_id"].startswith(prefix)]
        assert sorted(ids) == sorted(sent), "every alert once on the webhook"
        assert len([m for _, m in smtp.mails if prefix in m["Subject"]]) == len(sent)
    finally:
        stop_processes(procs)
        for kind in ("webhook", "email"):
            lines = (settings.state_dir / f"notify-{kind}.log").read_text(errors="replace").splitlines()
            print(f"--- notify-{kind} ---\n" + "\n".join(ln for ln in lines[-15:] if "[INFO]" not in ln))

    steady = [a for a in sent if a not in down_ids][1:]  # not the warm-up, not the outage
    for name, got in (("webhook", hooked()), ("email", mailed())):
        ms = sorted(1000 * (got[a] - sent[a]) for a in steady)
        print(f"{name}: alert produced -> received, {len(ms)} alerts: median {statistics.median(ms):.0f} ms, "
              f"max {ms[-1]:.0f} ms")
