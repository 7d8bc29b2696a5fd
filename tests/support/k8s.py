"""The Kubernetes manifests as they are applied: each overlay rendered by ``kubectl kustomize``
(the same Kustomize that ``kubectl apply -k`` runs), parsed into documents."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from tests.support.paths import REPO

K8S = REPO / "infra" / "k8s"
OVERLAYS = ("dev", "prod")
#: The image our processes run (infra/Dockerfile); overlays set its tag.
IMAGE = "ev-battery-twin"


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The documents ``kubectl apply -k infra/k8s/overlays/<overlay>`` would apply."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the Kustomize overlays (it ships Kustomize)"
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    """The one document of ``kind`` named ``name``."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def pod_templates(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment, StatefulSet and CronJob."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]
        elif d["kind"] == "CronJob":
            yield d, d["spec"]["jobTemplate"]["spec"]["template"]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers and containers of a pod template."""
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """The container's ``env`` by name: the value, or the ``valueFrom`` mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def ours(docs: tuple[dict[str, Any], ...]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, main container) of every workload that runs our image."""
    for workload, template in pod_templates(docs):
        main = template["spec"]["containers"][0]
        if main["image"].split(":")[0] == IMAGE:
            yield workload, main
