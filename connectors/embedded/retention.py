"""Keep the embedded broker's topics short: a cap on how long a delete-policy topic keeps records.

noida-db holds every record in memory and saves its whole Kafka state as one JSON file
(``kafka/noida/kafka.json``), again and again while records arrive: its ``autosave`` thread's cost
grows with what the topics hold. Measured (10,000 records/s of 350 bytes into one topic): after
75 s the file was 960 MB, the process 1.4 GB, and the broker used 76 % of a core and rising;
with ``retention.ms`` 20 s and ``segment.ms`` 5 s on the topic, the file stayed at ~310 MB and the
broker at ~57 %. Our topics keep records 7–30 days (:mod:`streams.topics`), right for Redpanda,
which writes segments, and ruinous here on a long ``evtwin up`` or an end-to-end benchmark.

:class:`RetentionCap` watches the embedded broker from the process that runs the stack: every
``interval_s`` it lists the topics and lowers ``retention.ms`` to the cap (and ``segment.ms`` to a
quarter of it: noida-db, like Kafka, deletes whole segments) on every topic whose cleanup policy is
``delete`` and whose retention is longer. Compacted topics (the partition-state changelogs) are
never touched: a compacted topic is state, not history. The sink tables keep the history; the
broker is the buffer between the stages, and a consumer that falls further behind than the cap
loses records — the benchmarks count such losses as lost rows.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

#: The shortest segment the cap sets (a smaller one only costs the broker more segments).
MIN_SEGMENT_MS = 1000


class RetentionCap:
    """Lower the retention of the broker's delete-policy topics to ``retention_ms`` (a thread).

    Args:
        bootstrap_servers: The embedded broker.
        retention_ms: The cap, milliseconds (> 0).
        interval_s: How often new topics are looked for.
    """

    def __init__(self, bootstrap_servers: str, retention_ms: int, interval_s: float = 5.0) -> None:
        if retention_ms <= 0:
            raise ValueError("retention_ms must be positive")
        self.bootstrap_servers = bootstrap_servers
        self.retention_ms = retention_ms
        self.segment_ms = max(MIN_SEGMENT_MS, retention_ms // 4)
        self.interval_s = interval_s
        self.capped: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False
        self._admin: Any = None

    def apply(self) -> list[str]:
        """One pass: cap every topic that needs it; return the names capped in this pass."""
        from confluent_kafka.admin import (
            AlterConfigOpType,
            ConfigEntry,
            ConfigResource,
            ResourceType,
        )

        from connectors.kafka import admin, list_topics

        if self._admin is None:
            self._admin = admin(self.bootstrap_servers)
        client = self._admin
        names = [t for t in list_topics(self.bootstrap_servers) if t not in self.capped]
        if not names:
            return []
        described = client.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in names],
                                            request_timeout=10)
        changes: list[Any] = []
        for resource, future in described.items():
            config = {k: v.value for k, v in future.result().items()}
            if config.get("cleanup.policy", "delete") != "delete":
                self.capped.add(resource.name)  # compacted: state, left alone for good
                continue
            entries = []
            if _ms(config.get("retention.ms")) > self.retention_ms:
                entries.append(ConfigEntry("retention.ms", str(self.retention_ms),
                                           incremental_operation=AlterConfigOpType.SET))
            if _ms(config.get("segment.ms")) > self.segment_ms:
                entries.append(ConfigEntry("segment.ms", str(self.segment_ms),
                                           incremental_operation=AlterConfigOpType.SET))
            if entries:
                changes.append(ConfigResource(ResourceType.TOPIC, resource.name,
                                              incremental_configs=entries))
            else:
                self.capped.add(resource.name)
        done = []
        if changes:
            for resource, future in client.incremental_alter_configs(changes).items():
                future.result()
                self.capped.add(resource.name)
                done.append(resource.name)
            log.info("embedded broker: %s keep records %d s (EVTWIN_EMBEDDED_KAFKA_RETENTION_S)",
                     ", ".join(sorted(done)), self.retention_ms // 1000)
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.apply()
            except Exception as exc:  # the broker restarts, a topic is being deleted: next pass
                if not self._warned:
                    log.warning("embedded broker: cannot cap topic retention yet: %s", exc)
                    self._warned = True
            self._stop.wait(self.interval_s)

    def start(self) -> RetentionCap:
        self._thread = threading.Thread(target=self._run, name="retention-cap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None


def _ms(value: str | None) -> int:
    """A retention or segment setting in ms; ``-1`` (forever) or missing counts as infinite."""
    try:
        parsed = int(value) if value is not None else -1
    except ValueError:
        parsed = -1
    return parsed if parsed >= 0 else 2**62


__all__ = ["MIN_SEGMENT_MS", "RetentionCap"]
