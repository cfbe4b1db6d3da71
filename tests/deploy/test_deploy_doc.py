"""docs/deploy.md stays true to deploy/k8s: the Secrets it names, the files it points to."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.k8s_build import PRODUCTION, REPO, build

pytestmark = pytest.mark.deploy

DOC = REPO / "docs" / "deploy.md"


def referenced_secrets(docs: list[dict[str, Any]]) -> set[str]:
    """Every Secret the built resources read: env, volumes, KEDA's TriggerAuthentication."""
    names: set[str] = set()
    for doc in docs:
        if doc["kind"] == "TriggerAuthentication":
            names |= {ref["name"] for ref in doc["spec"].get("secretTargetRef", [])}
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
    return names


def test_the_doc_names_every_secret_the_pods_read() -> None:
    text = DOC.read_text()
    secrets = referenced_secrets(build(PRODUCTION))
    assert {"consentinel-cluster-ca-cert", "consentinel-gate", "consentinel-signing-key"} <= secrets
    for name in secrets:
        assert f"`{name}`" in text or f" {name}" in text, f"docs/deploy.md does not name {name}"


def test_every_path_the_doc_names_exists() -> None:
    for path in set(re.findall(r"`((?:deploy|docs|tests)/[\w./-]+?)`", DOC.read_text())):
        assert (REPO / path).exists(), path
