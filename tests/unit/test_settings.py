"""Settings: every variable is documented in .env.example; environment and options both work."""

from __future__ import annotations

import re

import pytest

from streams.cli import build_parser, settings_from
from streams.settings import Settings
from tests.support.paths import REPO


def _documented() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#?\s*(EVTWIN_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_every_setting_is_documented_in_env_example() -> None:
    documented = _documented()
    missing = {f"EVTWIN_{name.upper()}" for name in Settings.model_fields} - documented
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_every_option_variable_is_documented() -> None:
    """Options with their own variable name it in --help; each such name is in .env.example."""
    parser = build_parser({})
    helps: list[str] = []

    def walk(p) -> None:  # type: ignore[no-untyped-def]
        for action in p._actions:
            if action.help:
                helps.append(action.help)
            if isinstance(action.choices, dict):
                for sub in action.choices.values():
                    walk(sub)

    walk(parser)
    named = set(re.findall(r"env (EVTWIN_[A-Z0-9_]+)", " ".join(helps)))
    assert len(named) > 20
    assert named <= _documented(), sorted(named - _documented())


def test_environment_then_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVTWIN_TOPIC_PARTITIONS", "6")
    monkeypatch.setenv("EVTWIN_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    parser = build_parser({})
    settings = settings_from(parser.parse_args(["topics", "list"]))
    assert settings.topic_partitions == 6
    assert settings.kafka_bootstrap_servers == "broker:9092"
    settings = settings_from(parser.parse_args(["topics", "create", "--partitions", "3"]))
    assert settings.topic_partitions == 3


def test_option_env_default_is_read() -> None:
    parser = build_parser({"EVTWIN_CONSUME_LIMIT": "7", "EVTWIN_CONSUME_FOLLOW": "true"})
    args = parser.parse_args(["topics", "consume", "ev.telemetry.v1"])
    assert args.limit == 7 and args.follow is True
