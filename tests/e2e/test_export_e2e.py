"""End to end: `evtwin sink --kind export` consumes ev.predictions.v1 on the embedded stack and
writes Parquet files per partition and period under date= folders; killed with SIGKILL mid-run
and restarted, it neither loses nor duplicates a row."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from connectors import kafka
from connectors.embedded.process import stop_processes
from streams.runtime.codecs import codec_for
from streams.topics import PREDICTIONS
from tests.support.cli import EVTWIN, cli_env
from tests.support.paths import REPO
from tests.support.receivers import wait_until
from tests.support.sink_records import prediction


def _exporter(settings, out: Path, n: int) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    env = cli_env(settings.state_dir, EVTWIN_METRICS_PORT="0", EVTWIN_EXPORT_URI=f"file://{out}",
                  EVTWIN_EXPORT_PERIOD_S="4", EVTWIN_EXPORT_GRACE_S="1")
    log = open(settings.state_dir / f"export-sink-{n}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(EVTWIN + ["sink", "--kind", "export"], env=env, cwd=REPO, stdout=log,
                            stderr=log)


def _rows(out: Path, prefix: str) -> list[str]:
    ids: list[str] = []
    for path in out.rglob("*.parquet"):
        table = pq.read_table(path, columns=["event_id", "battery_id"])
        ids += [e for e, b in zip(table["event_id"].to_pylist(), table["battery_id"].to_pylist(),
                                  strict=True) if b.startswith(prefix)]
    return ids


def test_export_sink_survives_sigkill_without_loss_or_duplicates(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    out, prefix = tmp_path / "lake", f"EXE{uuid.uuid4().hex[:5]}_"
    codec, producer = codec_for(PREDICTIONS, ep), kafka.producer(ep.kafka_bootstrap_servers)
    sent: list[str] = []

    def produce(n: int) -> None:
        for i in range(n):
            rec = prediction(f"{prefix}{i % 25}", int(time.time() * 1000), seq=len(sent))
            producer.produce(PREDICTIONS, codec.encode(rec), rec["battery_id"].encode())
            sent.append(rec["event_id"])
        producer.flush(10)

    first = _exporter(settings, out, 0)
    try:
        for _ in range(10):  # 10 s of traffic
            produce(300)
            time.sleep(1)
        assert wait_until(lambda: len(_rows(out, prefix)) > 0, 60), "no file yet"
        first.kill()  # SIGKILL: no close, no final flush
        first.wait(10)
        # noida-db never drops a member that died without leaving (Kafka does after the session
        # timeout): clear the group as `evtwin up`'s group watch does.
        from connectors.embedded.groups import remove_group_members

        remove_group_members(ep.kafka_bootstrap_servers, "evtwin-sink-export")
        produce(1000)  # while it is down
        second = _exporter(settings, out, 1)
        try:
            produce(500)
            assert wait_until(lambda: len(_rows(out, prefix)) >= len(sent), 90), (
                f"{len(_rows(out, prefix))} of {len(sent)} rows exported")
            time.sleep(6)  # a period and its grace more: nothing else arrives
        finally:
            stop_processes([second])
    finally:
        stop_processes([first])
        for n in (0, 1):
            log = settings.state_dir / f"export-sink-{n}.log"
            if log.exists():
                lines = log.read_text(errors="replace").splitlines()
                print(f"--- export-sink-{n} ---\n" + "\n".join(
                    ln for ln in lines[-30:] if "[INFO]" not in ln))
    rows = _rows(out, prefix)
    assert len(rows) == len(sent) and set(rows) == set(sent)
    names = [p.relative_to(out).as_posix() for p in out.rglob("*.parquet")]
    assert all(n.startswith("date=") and "/ev_predictions-" in n for n in names)
