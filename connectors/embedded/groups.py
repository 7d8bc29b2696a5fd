"""Consumer-group repair for the embedded noida-db broker.

noida-db 0.2.3 keeps a group member that stops talking to it for ever:

- a member that died without leaving (``kill -9``) is never dropped after its session timeout:
  it keeps its partitions, and nobody consumes them;
- during a rebalance it waits for every known member to rejoin, so a member that does not (the
  dead one, or the old id of a live one that rejoined under a new id) leaves the group stuck in
  PreparingRebalance / CompletingRebalance, and no member consumes anything — or, measured with
  librdkafka members, cycling: ~10 s (the rebalance timeout) preparing, ~1 s stable, preparing
  again, for ever. aiokafka (under
  Faust) rejoins under a new id when a commit fails with ILLEGAL_GENERATION, which noida-db
  answers when a new member joins a busy group — a restarted score worker, say.

Measured with plain librdkafka consumers (6 s session timeout) as with Faust. Tansu, like Kafka
and Redpanda, drops a dead member after its session timeout.

:func:`remove_group_members` asks the broker to remove every member of a group (LeaveGroup on
their behalf): the live members learn it at their next heartbeat and rejoin at once, under fresh
ids, and take all partitions. :class:`GroupWatch` does that when a consumer process ``evtwin up``
supervises dies, and when a group stays in a rebalance longer than a healthy one takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from connectors import ConnectorError

log = logging.getLogger(__name__)


def group_member_ids(bootstrap: str, group: str, timeout_s: float = 10.0) -> list[str]:
    """The member ids the broker lists for ``group``."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result(timeout_s)
    except Exception as exc:  # confluent_kafka raises KafkaException and others
        raise ConnectorError(f"cannot describe consumer group {group}: {exc}") from None
    return [m.member_id for m in description.members]


def remove_group_members(bootstrap: str, group: str, timeout_s: float = 10.0) -> int:
    """Remove every member of ``group`` from the broker; return how many there were.

    Raises:
        ConnectorError: The broker could not be asked, or refused.
    """
    members = group_member_ids(bootstrap, group, timeout_s)
    if not members:
        return 0

    async def leave_all() -> list[int]:
        from aiokafka.client import AIOKafkaClient, CoordinationType
        from aiokafka.protocol.group import LeaveGroupRequest

        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
        await client.bootstrap()
        try:
            node = await client.coordinator_lookup(CoordinationType.GROUP, group)
            return [(await client.send(node, LeaveGroupRequest(group, member))).error_code for member in members]
        finally:
            await client.close()

    try:
        codes = asyncio.run(asyncio.wait_for(leave_all(), timeout_s))
    except Exception as exc:  # aiokafka's errors, a timeout
        raise ConnectorError(f"cannot remove the members of consumer group {group}: {exc!r}") from None
    failed = [code for code in codes if code not in (0, 25)]  # 25: UNKNOWN_MEMBER_ID, gone already
    if failed:
        raise ConnectorError(f"the broker refused to remove members of consumer group {group} "
                             f"(error codes {failed})")
    log.debug("removed %d member(s) of group %s", len(members), group)
    return len(members)


class GroupWatch:
    """Keeps consumer groups on noida-db out of the states it cannot leave by itself.

    Call :meth:`check` often (it looks at the groups every ``every_s``) and :meth:`clear` when a
    member process of a group died.

    Args:
        bootstrap: Kafka bootstrap servers.
        groups: The consumer groups to watch.
        stuck_after_s: A group in a rebalance this long is stuck: its members have the
            rebalance timeout (10 s for our apps on the embedded broker) to rejoin, after which
            noida-db goes on waiting for those that did not (a healthy rebalance takes ~1–3 s).
        settle_s: A rebalance ends when the group has stayed out of one this long; shorter
            breaks (noida-db's one-second stable spells between its endless rebalances) count
            as part of it.
        every_s: How often :meth:`check` asks the broker.
        report: Called with one line for every group cleared.
        clock: For tests.
    """

    _REBALANCING = ("PREPARING_REBALANCING", "COMPLETING_REBALANCING")

    def __init__(self, bootstrap: str, groups: Sequence[str], *, stuck_after_s: float = 12.0,
                 settle_s: float = 5.0, every_s: float = 2.0, report: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bootstrap = bootstrap
        self.groups = list(dict.fromkeys(groups))
        self.stuck_after_s = stuck_after_s
        self.settle_s = settle_s
        self.every_s = every_s
        self.report = report or log.warning
        self.clock = clock
        self.cleared = 0
        self._rebalancing_since: dict[str, float] = {}
        self._calm_since: dict[str, float] = {}
        self._next_check = 0.0
        self._admin: Any = None

    def states(self) -> dict[str, str]:
        """Each group's state as the broker reports it (``STABLE``, ``EMPTY``, …)."""
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = self._admin.describe_consumer_groups(self.groups, request_timeout=5)
        return {group: future.result(5).state.name for group, future in futures.items()}

    def check(self) -> None:
        """Every ``every_s``: clear the groups that have been rebalancing ``stuck_after_s``
        (breaks shorter than ``settle_s`` included)."""
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.every_s
        try:
            states = self.states()
        except Exception as exc:  # the broker is busy or restarting: look again next time
            log.debug("cannot describe consumer groups: %s", exc)
            return
        for group, state in states.items():
            if state not in self._REBALANCING:
                if group in self._rebalancing_since and \
                        now - self._calm_since.setdefault(group, now) >= self.settle_s:
                    self._rebalancing_since.pop(group)
                    self._calm_since.pop(group)
                continue
            self._calm_since.pop(group, None)
            since = self._rebalancing_since.setdefault(group, now)
            if now - since >= self.stuck_after_s:
                self.clear(group, f"it was stuck in a rebalance for {now - since:.0f} s")

    def close(self) -> None:
        """Let go of the admin client (before the broker stops: a client left behind would log
        its reconnection attempts to stderr until the process ends)."""
        self._admin = None  # librdkafka destroys it with its last reference

    def clear(self, group: str, why: str) -> None:
        """Remove every member of ``group`` (see :func:`remove_group_members`) and say why."""
        try:
            n = remove_group_members(self.bootstrap, group, timeout_s=5.0)  # blocks the caller's loop
        except ConnectorError as exc:  # still stuck: the next check tries again (every_s)
            self.report(f"could not clear consumer group {group} ({why}): {exc}")
            return
        self._rebalancing_since.pop(group, None)
        self._calm_since.pop(group, None)
        self.cleared += 1
        self.report(f"cleared consumer group {group} ({n} member(s)) because {why}; noida-db keeps "
                    "members that stopped talking to it, so the live ones rejoin and share the partitions")


__all__ = ["GroupWatch", "group_member_ids", "remove_group_members"]
