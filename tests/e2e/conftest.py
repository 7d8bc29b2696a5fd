"""Fixtures of the end-to-end tests: a trained model and ``evtwin worker`` processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.workers import Workers


@pytest.fixture(scope="session")
def trained_model(state_root: Path) -> Path:
    """A small, quick model (the one `evtwin up` trains on first run), trained once per session."""
    from training.train import train

    model_dir = state_root / "model-a"
    train(None, model_dir, quick=True, seed=0, promote=True)
    return model_dir


@pytest.fixture
def workers(stack, trained_model: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:  # type: ignore[no-untyped-def]
    """Start score workers with ``workers.start(n)``; a fresh consumer group per test."""
    settings, _ = stack
    w = Workers(settings, trained_model, f"test-{request.node.name[:30]}-{os.getpid()}")
    yield w
    w.stop()
