"""deploy/k8s/base: rendered and validated offline.

The base is rendered by a small renderer of the Kustomize features it uses (``resources``,
``images``, ``labels``); when ``kubectl`` is installed its ``kubectl kustomize`` output must agree.
Built-in kinds are validated against the Kubernetes OpenAPI schemas shipped by PyPI's
``kubernetes-validate`` (strict: unknown fields fail). The custom resources (Strimzi, KEDA,
Prometheus Operator) are validated against their CRDs' schemas as compiled into npm's
``@kubernetes-models/*`` packages (pinned in tests/deploy/crd/package-lock.json, installed once with
``npm ci`` into the user's cache, outside the checkout); that check needs Node.js and is skipped,
saying so, without it. Generated files must match deploy/k8s/generate.py's output.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "k8s" / "base"
CRD_VALIDATOR = Path(__file__).parent / "crd"
K8S_VERSION = "1.32.0"
CRD_KINDS = {"KafkaTopic", "KafkaUser", "ScaledObject", "TriggerAuthentication",
             "ServiceMonitor", "PrometheusRule"}  # fmt: skip


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate", REPO / "deploy/k8s/generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization.get("images", [])}
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry["pairs"])
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / resource).read_text()):
            if not doc:
                continue
            doc["metadata"].setdefault("labels", {}).update(labels)
            template = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in template.get("containers", []):
                container["image"] = images.get(container["image"], container["image"])
            docs.append(doc)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render() if d["kind"] == kind}


def partitions() -> int:
    return int(yaml.safe_load((REPO / "deploy" / "topics.yaml").read_text())["partitions"])


def test_generated_files_are_up_to_date() -> None:
    gen = generator()
    for name, content in gen.render().items():
        path = BASE / "generated" / name
        assert path.exists() and path.read_text() == content, (
            f"{path} is stale: run .venv/bin/python deploy/k8s/generate.py"
        )


def test_builtin_kinds_validate_against_kubernetes_schemas() -> None:
    checked = 0
    for doc in render():
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 7


def test_validation_can_fail() -> None:
    doc = by_kind("StatefulSet")["consentinel-gate"]
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_statefulsets_fence_probe_and_budget() -> None:
    sets = by_kind("StatefulSet")
    assert set(sets) == {"consentinel-gate", "consentinel-detector"}
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
               for d in by_kind("PodDisruptionBudget").values()}  # fmt: skip
    for name, sts in sets.items():
        assert sts["spec"]["replicas"] <= partitions(), name
        pod = sts["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CONSENTINEL_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.name"
        )
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/live"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert any("secretRef" in source for source in container["envFrom"])
        assert "KAFKA_SASL_PASSWORD" not in env  # credentials come from Secrets only
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["policy"]["configMap"]["name"] == "consentinel-policy"
        assert name in budgets
        assert container["image"] == "consentinel:0.1.0"


def test_crd_resources() -> None:
    docs = render()
    kinds = {d["kind"] for d in docs}
    assert {"KafkaTopic", "ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds
    topics = yaml.safe_load((REPO / "deploy" / "topics.yaml").read_text())["topics"]
    made = {d["spec"]["topicName"]: d for d in docs if d["kind"] == "KafkaTopic"}
    assert set(made) == set(topics)
    for topic in made.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"]
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
    principals = yaml.safe_load((REPO / "deploy" / "acls.yaml").read_text())["principals"]
    users = {d["metadata"]["name"]: d for d in docs if d["kind"] == "KafkaUser"}
    assert set(users) == set(principals)
    gate_acls = users["consentinel-gate"]["spec"]["authorization"]["acls"]
    assert {"type": "transactionalId", "name": "consentinel-gate-", "patternType": "prefix"} in [
        acl["resource"] for acl in gate_acls
    ]
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions()
    assert scaled["spec"]["triggers"][0]["type"] == "kafka"
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    source = yaml.safe_load((REPO / "deploy/prometheus/rules/consentinel.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]


def test_kubectl_kustomize_agrees_when_installed() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; the built-in renderer was used")
    out = subprocess.run(
        [kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True
    ).stdout
    theirs = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d}
    ours = {(d["kind"], d["metadata"]["name"]) for d in render()}
    assert theirs == ours


def _crd_validator() -> Path:
    """Install the pinned npm validators once into the user's cache; return that directory."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js/npm not installed: CRD schema validation not run")
    lock = (CRD_VALIDATOR / "package-lock.json").read_bytes()
    home = (
        Path.home()
        / ".cache"
        / "consentinel"
        / f"crd-validate-{hashlib.sha256(lock).hexdigest()[:12]}"
    )
    if not (home / "node_modules" / "@kubernetes-models").exists():
        home.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(CRD_VALIDATOR / name, home / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=home,
            check=True,
            capture_output=True,
            timeout=300,
        )
    shutil.copy(CRD_VALIDATOR / "validate.mjs", home / "validate.mjs")
    return home


def _validate_crds(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    home = _crd_validator()
    return subprocess.run(
        ["node", str(home / "validate.mjs")],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_custom_resources_validate_against_their_crd_schemas() -> None:
    result = _validate_crds(render())
    assert result.returncode == 0, result.stdout + result.stderr
    checked = json.loads(result.stdout)
    assert {"KafkaTopic", "KafkaUser", "ScaledObject", "ServiceMonitor", "PrometheusRule"} <= set(
        checked
    )


def test_crd_validation_can_fail() -> None:
    (topic, *_) = [d for d in render() if d["kind"] == "KafkaTopic"]
    topic["spec"]["partitions"] = "eight"
    result = _validate_crds([topic])
    assert result.returncode == 1 and "partitions" in result.stdout
