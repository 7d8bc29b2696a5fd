"""The Kubernetes manifests (infra/k8s), checked without a cluster: both overlays render with
Kustomize and every document validates against the Kubernetes API schemas; every container runs
as non-root with requests and a memory limit; every pipeline process has /healthz and /readyz
probes on its metrics port; the score workers autoscale on lag between 2 and the partition count;
budgets, Services and references resolve; the network policies let each process reach what it
needs and nothing else."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.runtime import metrics
from tests.support.k8s import (
    IMAGE,
    K8S,
    OVERLAYS,
    containers,
    env_of,
    find,
    ours,
    pod_templates,
    render,
)
from tests.support.paths import REPO

KUBERNETES_VERSION = "1.30.0"  # the oldest release still supported by the clouds' managed services
#: Settings our manifests set before the code that reads them has landed.
PENDING_SETTINGS: set[str] = set()


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    return render(request.param)


def test_both_overlays_render_the_whole_pipeline() -> None:
    for overlay in OVERLAYS:
        kinds = {(d["kind"], d["metadata"]["name"]) for d in render(overlay)}
        for deployment in ("score-worker", "sink", "mqtt-bridge", "ingest", "simulator", "api", "exporter",
                           "notify-webhook", "notify-email", "groundtruth-sink", "online-accuracy"):
            assert ("Deployment", deployment) in kinds, overlay
        for stateful in ("redpanda", "timescaledb", "mosquitto"):
            assert ("StatefulSet", stateful) in kinds, overlay
        assert ("CronJob", "retrain") in kinds and ("HorizontalPodAutoscaler", "score-worker") in kinds
        (namespace,) = [d["metadata"]["name"] for d in render(overlay) if d["kind"] == "Namespace"]
        assert {d["metadata"].get("namespace") for d in render(overlay) if d["kind"] != "Namespace"} == {namespace}


def test_every_document_is_valid_against_the_kubernetes_schemas(docs: tuple[dict[str, Any], ...]) -> None:
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field_and_a_wrong_type() -> None:
    deployment = copy.deepcopy(find(render("prod"), "Deployment", "score-worker"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProbes"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(find(render("prod"), "Deployment", "score-worker"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_container_runs_as_non_root_without_privileges(docs: tuple[dict[str, Any], ...]) -> None:
    for workload, template in pod_templates(docs):
        pod = template["spec"]["securityContext"]
        name = workload["metadata"]["name"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert template["spec"]["automountServiceAccountToken"] is False, name
        for c in containers(template):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], c["name"]


def test_the_image_runs_as_the_user_the_manifests_name() -> None:
    dockerfile = (REPO / "infra" / "Dockerfile").read_text()
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile)
    assert uid and re.search(rf"^USER {uid.group(1)}\b", dockerfile, re.M), "numeric USER in the Dockerfile"
    for _, template in [(w, t) for w, t in pod_templates(render("prod")) if w["metadata"]["name"] in
                        {w["metadata"]["name"] for w, _ in ours(render("prod"))}]:
        assert template["spec"]["securityContext"]["runAsUser"] == int(uid.group(1))


def test_every_container_has_requests_and_a_memory_limit(docs: tuple[dict[str, Any], ...]) -> None:
    for _, template in pod_templates(docs):
        for c in containers(template):
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), c["name"]
            assert "memory" in resources["limits"], c["name"]


def test_every_pipeline_process_has_health_probes_on_its_metrics_port(docs: tuple[dict[str, Any], ...]) -> None:
    metrics_policy = find(docs, "NetworkPolicy", "metrics")
    scraped = {p["port"] for rule in metrics_policy["spec"]["ingress"] for p in rule["ports"]}
    checked = 0
    for workload, main in ours(docs):
        if workload["kind"] != "Deployment" or main["args"][0] == "api":
            continue
        port = {p["name"]: p["containerPort"] for p in main["ports"]}["metrics"]
        assert env_of(main)["EVTWIN_METRICS_PORT"] == str(port), workload["metadata"]["name"]
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert port in scraped, f"Prometheus may not scrape {workload['metadata']['name']}:{port}"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert _selects(metrics_policy["spec"]["podSelector"], labels)
        checked += 1
    assert checked == 10  # worker, sink, bridge, ingest, simulator, exporter, two notifiers, ground truth,
    # accuracy


def test_the_workers_autoscale_on_lag_from_two_to_the_partition_count(docs: tuple[dict[str, Any], ...]) -> None:
    hpa = find(docs, "HorizontalPodAutoscaler", "score-worker")["spec"]
    partitions = int(find(docs, "ConfigMap", "evtwin-config")["data"]["EVTWIN_TOPIC_PARTITIONS"])
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "score-worker"}
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] == partitions
    assert find(docs, "Deployment", "score-worker")["spec"]["replicas"] >= hpa["minReplicas"]
    (metric,) = hpa["metrics"]
    adapter = yaml.safe_load((K8S / "addons" / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    assert metric["external"]["metric"]["name"] == rule["name"]["as"]
    # The adapter reads a metric the workers really export, for the topic they consume.
    lag = metrics.CONSUMER_LAG._name  # noqa: SLF001 - prometheus_client keeps the name there
    assert rule["seriesQuery"].startswith(lag + "{") and 'topic="ev.telemetry.v1"' in rule["metricsQuery"]
    assert f"{lag}{{" in rule["metricsQuery"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_budgets_and_services_select_pods_and_stateful_sets_have_their_service(docs: tuple[dict[str, Any], ...]) -> None:
    pods = [t["metadata"]["labels"] for _, t in pod_templates(docs)]
    for doc in docs:
        if doc["kind"] == "PodDisruptionBudget":
            assert any(_selects(doc["spec"]["selector"], p) for p in pods), doc["metadata"]["name"]
        if doc["kind"] == "Service":
            assert any(_selects({"matchLabels": doc["spec"]["selector"]}, p) for p in pods), doc["metadata"]["name"]
        if doc["kind"] == "StatefulSet":
            find(docs, "Service", doc["spec"]["serviceName"])
    assert find(docs, "Service", "redpanda")["spec"]["clusterIP"] == "None"  # stable broker names


def test_every_config_map_and_secret_reference_resolves(docs: tuple[dict[str, Any], ...]) -> None:
    dev_secret = find(render("dev"), "Secret", "evtwin-secrets")["stringData"]
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for _, template in pod_templates(docs):
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for c in containers(template):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for value in env_of(c).values():
                if isinstance(value, dict) and "secretKeyRef" in value:
                    ref = value["secretKeyRef"]
                    # prod's Secret is created from the secret store with the keys of dev's
                    assert ref["name"] == "evtwin-secrets" and ref["key"] in dev_secret, ref


def test_every_setting_the_manifests_set_is_documented() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), re.M))
    for overlay in OVERLAYS:
        docs = render(overlay)
        names = set(find(docs, "ConfigMap", "evtwin-config")["data"])
        names |= set(find(render("dev"), "Secret", "evtwin-secrets")["stringData"])
        for _, template in pod_templates(docs):
            for c in containers(template):
                names |= {n for n in env_of(c) if n.startswith("EVTWIN_")}
        assert names - PENDING_SETTINGS <= documented, sorted(names - PENDING_SETTINGS - documented)


def test_our_containers_run_our_image_with_the_overlays_tag() -> None:
    for overlay, tag in (("dev", "dev"), ("prod", "0.1.0")):
        images = {c["image"] for _, t in pod_templates(render(overlay)) for c in containers(t)
                  if c["image"].split(":")[0] == IMAGE}
        assert images == {f"{IMAGE}:{tag}"}, overlay


def test_retraining_is_a_monthly_cron_job_that_writes_the_shared_model_registry() -> None:
    docs = render("prod")
    cron = find(docs, "CronJob", "retrain")["spec"]
    (main,) = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert main["args"] == ["retrain"] and cron["concurrencyPolicy"] == "Forbid"
    model_dir = find(docs, "ConfigMap", "evtwin-config")["data"]["EVTWIN_MODEL_DIR"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert not mounts[model_dir].get("readOnly")
    worker = find(docs, "Deployment", "score-worker")["spec"]["template"]["spec"]["containers"][0]
    assert {m["mountPath"]: m for m in worker["volumeMounts"]}[model_dir]["readOnly"] is True


def test_prod_replicates_every_topic_on_three_brokers_that_know_each_other() -> None:
    docs = render("prod")
    redpanda = find(docs, "StatefulSet", "redpanda")["spec"]
    assert redpanda["replicas"] == 3
    assert find(docs, "ConfigMap", "evtwin-config")["data"]["EVTWIN_TOPIC_REPLICATION_FACTOR"] == "3"
    (seeds,) = [a for a in redpanda["template"]["spec"]["containers"][0]["args"] if a.startswith("--seeds=")]
    assert seeds.removeprefix("--seeds=").split(",") == [f"redpanda-{i}.redpanda:33145" for i in range(3)]
    assert find(docs, "Deployment", "simulator")["spec"]["replicas"] == 0
    dev = render("dev")
    assert int(find(dev, "ConfigMap", "evtwin-config")["data"]["EVTWIN_TOPIC_REPLICATION_FACTOR"]) <= \
        find(dev, "StatefulSet", "redpanda")["spec"]["replicas"]


def test_mosquitto_requires_the_password_file_its_init_container_writes() -> None:
    docs = render("prod")
    conf = find(docs, "ConfigMap", "mosquitto-config")["data"]["mosquitto.conf"]
    assert re.search(r"^allow_anonymous false$", conf, re.M)
    password_file = re.search(r"^password_file (\S+)$", conf, re.M)
    init = find(docs, "StatefulSet", "mosquitto")["spec"]["template"]["spec"]["initContainers"][0]
    assert password_file and f"> {password_file.group(1)}" in " ".join(init["command"])


# --- network policies ------------------------------------------------------------------------


def _pod_labels(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    for workload, template in pod_templates(docs):
        if workload["metadata"]["name"] == name:
            return dict(template["metadata"]["labels"])
    raise AssertionError(name)


def _allowed(docs: tuple[dict[str, Any], ...], source: dict[str, str] | str, target: str, port: int) -> bool:
    """Whether NetworkPolicy lets ``source`` (pod labels in our namespace, or ``"ns:NAME"`` for any
    pod of another namespace) reach pods of workload ``target`` on ``port``."""
    labels = _pod_labels(docs, target)
    policies = [d["spec"] for d in docs if d["kind"] == "NetworkPolicy" and "Ingress" in d["spec"]["policyTypes"]
                and _selects(d["spec"]["podSelector"], labels)]
    if not policies:
        return True
    for policy in policies:
        for rule in policy.get("ingress", []):
            if "ports" in rule and port not in {p["port"] for p in rule["ports"]}:
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if isinstance(source, str):  # a pod of another namespace
                    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                    if ns.get("kubernetes.io/metadata.name") == source.removeprefix("ns:"):
                        return True
                elif "namespaceSelector" not in peer and _selects(peer["podSelector"], source):
                    return True
    return False


@pytest.mark.parametrize(("source", "target", "port", "allowed"), [
    ("score-worker", "redpanda", 9092, True),
    ("score-worker", "redpanda", 8081, True),     # schema registry
    ("simulator", "redpanda", 9092, True),
    ("ingest", "redpanda", 9092, True),
    ("sink", "timescaledb", 5432, True),
    ("api", "timescaledb", 5432, True),
    ("retrain", "timescaledb", 5432, True),
    ("groundtruth-sink", "timescaledb", 5432, True),   # the labels retraining joins
    ("groundtruth-sink", "redpanda", 9092, True),
    ("ns:monitoring", "groundtruth-sink", 6072, True),
    ("online-accuracy", "timescaledb", 5432, True),
    ("ns:monitoring", "online-accuracy", 6073, True),
    ("redpanda", "redpanda", 33145, True),        # broker to broker
    ("mqtt-bridge", "mosquitto", 1883, True),
    ("ns:devices", "mosquitto", 1883, True),      # packs publish from outside
    ("ns:monitoring", "sink", 6067, True),        # Prometheus scrapes
    ("ns:monitoring", "score-worker", 6066, True),
    ("ns:monitoring", "redpanda", 9644, True),
    ("score-worker", "timescaledb", 5432, False),  # only what needs the database reaches it
    ("mqtt-bridge", "timescaledb", 5432, False),
    ("ns:devices", "redpanda", 9092, False),
    ("mosquitto", "redpanda", 9092, False),
    ("score-worker", "sink", 6067, False),
    ("ns:devices", "score-worker", 6066, False),
    ("ns:devices", "timescaledb", 5432, False),
])
def test_network_policies_let_each_process_reach_what_it_needs_and_no_more(
        source: str, target: str, port: int, allowed: bool) -> None:
    for overlay in OVERLAYS:
        docs = render(overlay)
        who: dict[str, str] | str = source if source.startswith("ns:") else _pod_labels(docs, source)
        assert _allowed(docs, who, target, port) is allowed, (overlay, source, target, port)
