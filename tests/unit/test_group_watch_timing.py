"""When :class:`GroupWatch` calls a group stuck, from the states noida-db reports check by check
(the real broker's behaviour is in tests/integration/test_group_watch.py; here the clock is ours)."""

from __future__ import annotations

from collections.abc import Iterator

from connectors.embedded.groups import GroupWatch

P, S = "PREPARING_REBALANCING", "STABLE"


class _Scripted(GroupWatch):
    """A watch whose group goes through ``script`` (one state per second) and whose clears are
    only recorded."""

    def __init__(self, script: list[str]) -> None:
        self.t = 0.0
        super().__init__("unused:9092", ["g"], every_s=1.0, clock=lambda: self.t)
        self._script: Iterator[str] = iter(script)
        self.cleared_at: list[float] = []

    def states(self) -> dict[str, str]:
        return {"g": next(self._script)}

    def clear(self, group: str, why: str) -> None:
        self.cleared_at.append(self.t)
        self._rebalancing_since.pop(group, None)
        self._calm_since.pop(group, None)

    def run(self, seconds: int) -> list[float]:
        for second in range(seconds):
            self.t = float(second)
            self.check()
        return self.cleared_at


def test_a_group_rebalancing_without_a_break_is_cleared_after_stuck_after_s() -> None:
    assert _Scripted([S] * 2 + [P] * 30).run(32)[0] == 14.0  # first seen rebalancing at 2 s


def test_noida_db_cycle_of_long_rebalances_and_one_second_stable_spells_is_stuck() -> None:
    # Measured on noida-db 0.2.3 with a dead member: ~10 s preparing, ~1 s stable, again.
    cycle = ([P] * 10 + [S]) * 6
    cleared = _Scripted(cycle).run(len(cycle))
    assert cleared and cleared[0] <= 13.0, cleared


def test_healthy_rebalances_with_stable_spells_between_are_left_alone() -> None:
    script = ([P] * 3 + [S] * 6) * 6  # a rebalance of 3 s whenever a member comes or goes
    assert _Scripted(script).run(len(script)) == []
