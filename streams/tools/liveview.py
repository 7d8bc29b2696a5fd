"""The live summary of ``evtwin up``: events/s, lag, dead letters, open alerts and the fleet's
SoH/RUL distribution, refreshed in place.

It reads only what any operator could: topic end offsets and the group's committed offsets from
the broker, alert records from ``ev.alerts.v1``, and the workers' Prometheus endpoints; and, from
``evtwin up``'s supervisor, how often each pipeline process was restarted.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from connectors import kafka
from schemas.codec import AvroCodec
from streams.topics import ALERTS, PREDICTIONS, TELEMETRY, TELEMETRY_DLQ


@dataclass
class Snapshot:
    """One refresh of the live view."""

    at: float
    ends: dict[str, int]
    lag: int
    open_alerts: int
    soh: list[float] = field(default_factory=list)
    rul: list[float] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)  # by process; empty: not supervised


class LiveView:
    """Collects :class:`Snapshot` s and renders them as a table.

    Args:
        bootstrap: Kafka bootstrap servers.
        group: Consumer group of the score workers (for lag).
        partitions: Partitions per topic.
        metrics_urls: ``/metrics`` URLs of the workers.
        restarts: Returns the restarts so far by process (``evtwin up``'s supervisor).
    """

    def __init__(self, bootstrap: str, group: str, partitions: int, metrics_urls: Sequence[str],
                 restarts: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.partitions = partitions
        self.metrics_urls = list(metrics_urls)
        self.restarts = restarts
        self.admin = kafka.consumer(bootstrap, group)
        self.alerts = kafka.consumer(bootstrap, f"{group}-liveview")
        self.alerts.assign([TopicPartition(ALERTS, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.alerts_idle = kafka.IdleRest(self.alerts)  # between refreshes: rest, do not spin
        self.alert_codec = AvroCodec("alert")
        self.open: set[str] = set()
        self.previous: Snapshot | None = None

    def _ends(self, topic: str) -> int:
        return sum(self.admin.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                   for p in range(self.partitions))

    def _lag(self, end_telemetry: int) -> int:
        tps = [TopicPartition(TELEMETRY, p) for p in range(self.partitions)]
        committed = self.admin.committed(tps, timeout=5)
        return max(0, end_telemetry - sum(max(tp.offset, 0) for tp in committed))

    def _read_alerts(self) -> None:
        for msg in self.alerts_idle.consume(10000, 0.05):
            if msg.error():
                continue
            alert = self.alert_codec.decode(msg.value())
            if alert["status"] == "OPENED":
                self.open.add(alert["alert_id"])
            else:
                self.open.discard(alert["alert_id"])

    def _scrape(self) -> tuple[list[float], list[float]]:
        soh: dict[str, float] = {}
        rul: dict[str, float] = {}
        for url in self.metrics_urls:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
            for family in text_string_to_metric_families(text):
                target = {"battery_soh": soh, "battery_rul_prediction": rul}.get(family.name)
                if target is not None:
                    for sample in family.samples:
                        target[sample.labels["battery_id"]] = sample.value
        return list(soh.values()), list(rul.values())

    def snapshot(self) -> Snapshot:
        ends = {t: self._ends(t) for t in (TELEMETRY, PREDICTIONS, TELEMETRY_DLQ, ALERTS)}
        self._read_alerts()
        soh, rul = self._scrape()
        restarts = dict(self.restarts()) if self.restarts is not None else {}
        return Snapshot(time.monotonic(), ends, self._lag(ends[TELEMETRY]), len(self.open), soh, rul,
                        restarts)

    def render(self, snap: Snapshot) -> Table:
        prev, self.previous = self.previous, snap
        dt = snap.at - prev.at if prev else 0.0

        def rate(topic: str) -> str:
            return f"{(snap.ends[topic] - prev.ends[topic]) / dt:,.0f}/s" if prev and dt > 0 else "…"

        table = Table(title="EV battery twin — live", title_justify="left")
        table.add_column("measure")
        table.add_column("value", justify="right")
        table.add_row("telemetry in", f"{rate(TELEMETRY)}  ({snap.ends[TELEMETRY]:,} total)")
        table.add_row("predictions out", f"{rate(PREDICTIONS)}  ({snap.ends[PREDICTIONS]:,} total)")
        table.add_row("consumer lag", f"{snap.lag:,} events")
        table.add_row("dead letters", f"{snap.ends[TELEMETRY_DLQ]:,}")
        table.add_row("open alerts", f"{snap.open_alerts:,}  ({snap.ends[ALERTS]:,} alert records)")
        table.add_row("fleet SoH p10/p50/p90", _pct(snap.soh, "%"))
        table.add_row("fleet RUL p10/p50/p90", _pct(snap.rul, " cycles"))
        table.add_row("batteries reporting", f"{len(snap.soh):,}")
        if self.restarts is not None:
            table.add_row("restarts", _restarts(snap.restarts))
        return table

    def close(self) -> None:
        self.admin.close()
        self.alerts.close()


def _restarts(by_process: Mapping[str, int]) -> str:
    """``0``, or ``3  (score worker 1: 2, sink: 1)``."""
    total = sum(by_process.values())
    which = ", ".join(f"{name}: {n}" for name, n in by_process.items() if n)
    return f"{total:,}  ({which})" if which else "0"


def _pct(values: list[float], unit: str) -> str:
    if not values:
        return "…"
    p10, p50, p90 = np.percentile(np.asarray(values), [10, 50, 90])
    return f"{p10:,.1f} / {p50:,.1f} / {p90:,.1f}{unit}"


__all__ = ["LiveView", "Snapshot"]
