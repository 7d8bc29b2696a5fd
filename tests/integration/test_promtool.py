"""Prometheus configuration through promtool: it validates the scrape config and the alert rules
and runs the rules' unit tests.

promtool comes with Debian's ``prometheus`` package (``make system-deps`` installs it); without it
these tests fail and say so: they are never skipped."""

from __future__ import annotations

from tests.support.prometheus import CONFIG, RULE_TESTS, RULES, run_promtool


def test_promtool_accepts_the_scrape_config() -> None:
    out = run_promtool("check", "config", str(CONFIG))
    assert f"{len(RULES)} rule files found" in out.stdout + out.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    assert RULES
    run_promtool("check", "rules", *map(str, RULES))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert RULE_TESTS
    out = run_promtool("test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out.stdout + out.stderr
