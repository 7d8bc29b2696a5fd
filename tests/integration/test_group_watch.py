"""What ``evtwin up``'s group repair relies on, on the real embedded noida-db: a consumer killed
with SIGKILL keeps its partitions past its session timeout (the broker never drops it); a consumer
that joins later leaves the group stuck in a rebalance; :class:`GroupWatch` sees that and clears
the group, and the live consumers share the partitions. When the first assertion fails, noida-db
expires sessions and the repair can go."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from connectors.embedded.groups import GroupWatch, remove_group_members
from streams.topics import TELEMETRY
from tests.support.paths import REPO

# A plain librdkafka consumer: prints its assignment, runs until killed.
_MEMBER = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 10000})
c.subscribe([sys.argv[3]], on_assign=lambda c, ps: print(len(ps), flush=True))
while True:
    c.poll(0.5)
"""


def _assigned(watch: GroupWatch, group: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": watch.bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(10)
    return sorted(len(m.assignment.topic_partitions) if m.assignment else 0 for m in desc.members)


def _until(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_dead_member_is_kept_until_the_stuck_group_is_cleared(stack) -> None:  # type: ignore[no-untyped-def]
    settings, ep = stack
    assert settings.kafka_broker == "noida"
    group = f"test-groupwatch-{uuid.uuid4().hex[:6]}"
    reports: list[str] = []
    watch = GroupWatch(ep.kafka_bootstrap_servers, [group], stuck_after_s=12, every_s=1, report=reports.append)

    def member() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", _MEMBER, ep.kafka_bootstrap_servers, group, TELEMETRY],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    members = [member(), member()]
    try:
        assert _until(lambda: _assigned(watch, group) == [6, 6], 30), _assigned(watch, group)
        members[0].kill()
        members[0].wait(10)
        time.sleep(6 + 3)  # the session timeout, and then some
        assert _assigned(watch, group) == [6, 6], "noida-db dropped the dead member: the repair may go"
        watch.check()
        assert watch.cleared == 0  # stable: nothing to do

        members.append(member())  # joins: the group rebalances, waiting for the dead member for ever
        # What the watch saw, check by check, for the failure message. noida-db may cycle (10 s
        # preparing, 1 s stable): the watch failed here before it counted such a cycle as stuck.
        seen: list[str] = []
        describe = watch.states

        def observed() -> dict[str, str]:
            try:
                states = describe()
            except Exception as exc:
                seen.append(f"{time.monotonic():.1f} {type(exc).__name__}")
                raise
            seen.append(f"{time.monotonic():.1f} {states.get(group)}")
            return states

        watch.states = observed  # type: ignore[method-assign]
        assert _until(lambda: watch.check() or watch.cleared == 1, 60), (describe(), reports, seen)
        assert "stuck in a rebalance" in reports[0] and "(3 member(s))" in reports[0]
        assert _until(lambda: _assigned(watch, group) == [6, 6], 20), _assigned(watch, group)
        assert watch.states() == {group: "STABLE"}
    finally:
        for m in members:
            m.kill()
            m.wait(10)
        remove_group_members(ep.kafka_bootstrap_servers, group)  # the killed ones stay otherwise
