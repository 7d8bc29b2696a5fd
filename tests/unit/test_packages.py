"""The project's packages import from this repository, not from PyPI namesakes (``datasets``!)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.support.paths import REPO


@pytest.mark.parametrize("name", ["streams", "schemas", "connectors", "training", "models", "datasets"])
def test_package_imports_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


def test_pyproject_lists_every_package_explicitly() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = config["tool"]["setuptools"]["packages"]
    # Every package, subpackage and data folder on disk is listed, so a built wheel is complete.
    on_disk = sorted({
        ".".join(p.parent.relative_to(REPO).parts)
        for top in ("streams", "schemas", "connectors", "training", "models", "datasets")
        for pattern in ("__init__.py", "*.avsc", "*.sql")
        for p in (REPO / top).rglob(pattern)
    })
    assert sorted(listed) == on_disk
    assert any(dep.startswith("xgboost-cpu") for dep in config["project"]["dependencies"])
    # Ranges, not loose names: every dependency has an upper and a lower bound, or an exact pin
    # where our code overrides the package's internals (Faust; see test_faust_batching).
    for dep in config["project"]["dependencies"]:
        if "==" in dep:
            assert dep.startswith("faust-streaming=="), f"only Faust is pinned exactly: {dep}"
            continue
        assert ">=" in dep and "<" in dep.replace("<=", ""), dep
