"""Shared fixtures: one real embedded stack for the session (broker, PostgreSQL, MQTT broker, schema
registry) on free loopback ports, in a temporary state directory; and the ``unit`` /
``integration`` / ``e2e`` marker of every test, taken from the folder it is in."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.embedded.stack import EmbeddedStack
from connectors.endpoints import Endpoints
from streams.settings import Settings
from streams.topics import topic_specs
from tests.support.stack_settings import free_port_settings

TESTS = Path(__file__).resolve().parent
#: Test folders and the marker their tests get (``pytest -m unit`` runs tests/unit only).
KINDS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the kind of its folder; a test outside the kind folders is an error,
    since ``-m unit`` (``make test-fast``) would silently leave it out."""
    misplaced = set()
    for item in items:
        try:
            kind = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # not under tests/ (a path given on the command line elsewhere)
            continue
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))
        else:
            misplaced.add(str(item.path.relative_to(TESTS)))
    if misplaced:
        raise pytest.UsageError(f"tests outside tests/{{{','.join(KINDS)}}}/: {', '.join(sorted(misplaced))}; "
                                "move them into the folder of their kind")


@pytest.fixture(scope="session")
def state_root() -> Iterator[Path]:
    """A temporary directory that PostgreSQL's system user can traverse when we run as root
    (pytest's own temporary directories are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="evtwin-tests-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir(state_root: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh state directory for one test."""
    path = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=state_root))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stack(state_root: Path) -> Iterator[tuple[Settings, Endpoints]]:
    """A running embedded stack with the schema registry and our topics."""
    from connectors.kafka import ensure_topics

    state = state_root / "session-stack"
    settings = free_port_settings(state, embedded_schema_registry=True)
    with EmbeddedStack(settings) as endpoints:
        ensure_topics(endpoints.kafka_bootstrap_servers, topic_specs(settings.topic_partitions))
        yield settings, endpoints
