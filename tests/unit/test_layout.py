"""The layout holds: dependencies point one way, no import runs back up, no circle.

Every ``import`` in the runtime packages (top-level and inside functions) is read with ``ast`` and
checked against the layers below. A new module that imports against them fails here with the
file, the line and the rule it broke.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "models", "datasets", "training", "connectors", "streams")

# Top-level packages: who may import whom (besides itself).
ALLOWED = {
    "schemas": set(),
    "models": {"schemas"},
    "datasets": {"models", "schemas"},
    "training": {"datasets", "models", "schemas"},
    "connectors": {"schemas"},
    "streams": {"connectors", "models", "schemas", "training", "datasets"},
}
# Layers inside streams, lowest first; a unit imports only from its own layer or lower ones.
STREAMS_LAYERS = {
    "streams.settings": 0, "streams.topics": 0, "streams.errors": 0,
    "streams.runtime": 1, "streams.state": 2, "streams.scoring": 3,
    "streams.sources": 4, "streams.sinks": 4, "streams.api": 4, "streams.tools": 5, "streams.cli": 6,
}
# Only these may start an embedded stack; everything else gets URLs from connectors.endpoints.
MAY_IMPORT_EMBEDDED = ("connectors.embedded", "streams.cli", "streams.tools")
# Only the CLI may import training (the stream apps never train) — and the offline replay of the
# live fleet, which scores it with training.evaluate's metrics so that its figures mean what
# `evtwin evaluate`'s do (it runs no stream app).
MAY_IMPORT_TRAINING = ("streams.cli", "streams.tools.replay_live")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import of our packages."""
    out = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = _module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in PACKAGES:
                        out.append((module, name, node.lineno))
    return out


def _unit(module: str) -> str:
    """The streams layer a module belongs to (``streams.scoring.worker`` -> ``streams.scoring``)."""
    for unit in sorted(STREAMS_LAYERS, key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            return unit
    return module


def test_dependencies_point_one_way() -> None:
    wrong = []
    for src, dst, line in _imports():
        a, b = src.split(".")[0], dst.split(".")[0]
        if a != b and b not in ALLOWED[a]:
            wrong.append(f"{src}:{line} imports {dst} ({a} may import only {sorted(ALLOWED[a])})")
        if dst.startswith("connectors.embedded") and not src.startswith(MAY_IMPORT_EMBEDDED):
            wrong.append(f"{src}:{line} imports {dst}: service URLs come from connectors.endpoints")
        if b == "training" and a == "streams" and not src.startswith(MAY_IMPORT_TRAINING):
            wrong.append(f"{src}:{line} imports {dst}: only the CLI trains")
    assert not wrong, "\n".join(wrong)


def test_no_import_runs_back_up_inside_streams() -> None:
    wrong = []
    for src, dst, line in _imports():
        if not (src.startswith("streams.") and dst.startswith("streams.")):
            continue
        a, b = _unit(src), _unit(dst)
        if a in STREAMS_LAYERS and b in STREAMS_LAYERS and STREAMS_LAYERS[b] > STREAMS_LAYERS[a]:
            wrong.append(f"{src}:{line} imports {dst} ({b} is above {a})")
    assert not wrong, "\n".join(wrong)


def test_no_circle_between_units() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for src, dst, _ in _imports():
        a, b = _unit(src), _unit(dst)
        a = a if a.startswith("streams.") else ".".join(a.split(".")[:2])
        b = b if b.startswith("streams.") else ".".join(b.split(".")[:2])
        if a != b and b != a.split(".")[0]:  # a package's own __init__ is not an edge
            graph[a].add(b)
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt])
                                     if nxt in path else f"{node} -> {nxt}")
            if nxt not in seen:
                visit(nxt, path + [nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
