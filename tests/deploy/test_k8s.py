"""deploy/k8s: the base and the production overlay, built with kustomize and validated offline.

Built-in kinds are validated against the Kubernetes OpenAPI schemas shipped by PyPI's
``kubernetes-validate`` (strict: unknown fields fail); custom resources against their CRDs' schemas
(tests/deploy/k8s_build.py). Generated files must match deploy/k8s/generate.py's output. The
Strimzi, KEDA and monitoring resources have their own tests in test_k8s_operators.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.k8s_build import BASE, K8S, PRODUCTION, build, env_of, of_kind
from tests.deploy.k8s_build import validate_custom_resources as validate_crs

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"
OPERATOR_GROUPS = ("kafka.strimzi.io", "keda.sh", "monitoring.coreos.com")
WORKLOADS = {"consentinel-gate", "consentinel-detector"}


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def partitions() -> int:
    return int(yaml.safe_load((REPO / "deploy" / "topics.yaml").read_text())["partitions"])


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s["spec"]["template"]["spec"] for name, s in of_kind(docs, "StatefulSet").items()}


def test_generated_files_are_up_to_date() -> None:
    for name, content in generator().render().items():
        path = K8S / name
        assert path.exists() and path.read_text() == content, (
            f"{path} is stale: run .venv/bin/python deploy/k8s/generate.py"
        )


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_builtin_kinds_validate_against_kubernetes_schemas(directory: Path) -> None:
    checked = 0
    for doc in build(directory):
        if doc["apiVersion"].split("/")[0] in OPERATOR_GROUPS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 10


def test_validation_can_fail() -> None:
    doc = of_kind(build(BASE), "StatefulSet")["consentinel-detector"]
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_custom_resources_validate_against_their_crd_schemas(directory: Path) -> None:
    result = validate_crs(build(directory))
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {"KafkaTopic", "KafkaUser", "ScaledObject", "TriggerAuthentication"}
    kinds |= {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}
    if directory == PRODUCTION:
        kinds |= {"Kafka", "KafkaNodePool"}
    assert kinds <= set(json.loads(result.stdout))


def test_crd_validation_can_fail() -> None:
    (topic, *_) = [d for d in build(BASE) if d["kind"] == "KafkaTopic"]
    topic["spec"]["partitions"] = "eight"
    result = validate_crs([topic])
    assert result.returncode == 1 and "partitions" in result.stdout
    topic = {**topic, "apiVersion": "kafka.strimzi.io/v1beta2"}  # gone since Strimzi 1.0
    result = validate_crs([topic])
    assert result.returncode == 1 and "no CRD schema" in result.stdout


def test_statefulsets_fence_probe_and_budget() -> None:
    docs = build(BASE)
    sets = of_kind(docs, "StatefulSet")
    assert set(sets) == WORKLOADS
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
               for d in of_kind(docs, "PodDisruptionBudget").values()}  # fmt: skip
    for name, sts in sets.items():
        assert sts["spec"].get("replicas", 0) <= partitions(), name
        pod = sts["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        env = env_of(container)
        assert env["CONSENTINEL_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.name"
        )
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/live"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert name in budgets


def test_what_keda_scales_has_no_replicas_of_its_own() -> None:
    docs = build(PRODUCTION)
    scaled = {
        (o["spec"]["scaleTargetRef"]["kind"], o["spec"]["scaleTargetRef"]["name"])
        for o in of_kind(docs, "ScaledObject").values()
    }
    assert ("StatefulSet", "consentinel-gate") in scaled
    for kind, name in scaled:
        target = of_kind(docs, kind)[name]
        assert "replicas" not in target["spec"], f"{kind}/{name}: `replicas` fights KEDA"


@pytest.mark.parametrize("directory", [BASE, PRODUCTION], ids=["base", "production"])
def test_images_are_fully_qualified(directory: Path) -> None:
    qualified = re.compile(
        r"[a-z0-9.-]+\.[a-z]{2,}(:\d+)?/[a-z0-9./_-]+(:[\w.-]+|@sha256:[0-9a-f]{64})"
    )
    for name, pod in pod_specs(build(directory)).items():
        for container in pod["containers"] + pod.get("initContainers", []):
            assert qualified.fullmatch(container["image"]), f"{name}: {container['image']}"


def test_pods_mount_no_token_and_spread_across_nodes() -> None:
    docs = build(BASE)
    accounts = of_kind(docs, "ServiceAccount")
    for name, pod in pod_specs(docs).items():
        assert pod["automountServiceAccountToken"] is False, name
        assert accounts[pod["serviceAccountName"]]["automountServiceAccountToken"] is False
        (term,) = pod["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": name
        }
    for name, pod in pod_specs(build(PRODUCTION)).items():
        (required,) = pod["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert required["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_network_policy_admits_prometheus_and_reaches_kafka_registry_and_dns() -> None:
    docs = build(BASE)
    (policy,) = of_kind(docs, "NetworkPolicy").values()
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    (selected,) = spec["podSelector"]["matchExpressions"]
    assert set(selected["values"]) == WORKLOADS
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    for pod in pod_specs(docs).values():
        (container,) = pod["containers"]
        assert "metrics" in {p["name"] for p in container["ports"]}
    egress_ports = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert {9093, 8080, 53} == egress_ports
    kafka = next(r for r in spec["egress"] if r["ports"][0]["port"] == 9093)
    assert kafka["to"][0]["podSelector"]["matchLabels"]["strimzi.io/cluster"] == "consentinel"


def _policy_volume(pod: dict[str, Any]) -> str:
    (volume,) = [v for v in pod["volumes"] if v["name"] == "policy"]
    return str(volume["configMap"]["name"])


def test_policy_comes_from_a_generator_and_an_edit_rolls_the_pods(tmp_path: Path) -> None:
    docs = build(BASE)
    (policy,) = [d for d in docs if d["kind"] == "ConfigMap" and "policy.yaml" in d["data"]]
    assert re.fullmatch(r"consentinel-policy-[a-z0-9]{10}", policy["metadata"]["name"])
    source = (REPO / "deploy" / "policy.example.yaml").read_text()
    assert policy["data"]["policy.yaml"].endswith(source)
    before = pod_specs(docs)
    for name, pod in before.items():
        assert _policy_volume(pod) == policy["metadata"]["name"], name
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
        assert "subPath" not in mount, f"{name}: a subPath mount never sees a new policy"
        assert env_of(container)["CONSENTINEL_POLICY"]["value"] == (
            f"{mount['mountPath']}/policy.yaml"
        )
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    edited = copy / "base" / "generated" / "policy.yaml"
    edited.write_text(edited.read_text() + "\n# an edit\n")
    after = pod_specs(build(copy / "base"))
    for name in WORKLOADS:
        assert _policy_volume(after[name]) != _policy_volume(before[name]), name
        assert after[name] != before[name], f"{name}: its pod template did not change"


def test_production_overlay_namespaces_everything_and_selects_monitoring_by_label() -> None:
    docs = build(PRODUCTION)
    for doc in docs:
        assert doc["metadata"].get("namespace") == "consentinel", doc["metadata"]["name"]
    overlay = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text())
    (patch,) = [p for p in overlay["patches"] if p.get("target", {}).get("group")]
    (label_op,) = yaml.safe_load((PRODUCTION / patch["path"]).read_text())
    label = label_op["path"].rsplit("/", 1)[1]
    monitoring = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    assert {d["kind"] for d in monitoring} == {
        "ServiceMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
    }
    for doc in monitoring:
        assert doc["metadata"]["labels"][label] == label_op["value"], doc["kind"]
    for doc in build(BASE):  # the base leaves the choice to the overlay
        assert label not in doc["metadata"].get("labels", {})
