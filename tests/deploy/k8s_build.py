"""Build deploy/k8s with kustomize and validate custom resources offline (for the test_k8s* tests).

kustomize: the standalone ``kustomize`` when on PATH, else ``kubectl kustomize`` (kubectl ships
kustomize); deploy/local/install.sh (the ``test`` profile, run by ``make test`` and ``.ci/run``)
builds the standalone one from the Go module proxy when a machine has neither.

Custom resources (Strimzi, KEDA, Prometheus Operator) are validated against their CRDs' schemas as
compiled into npm's ``@kubernetes-models/*`` packages (pinned in tests/deploy/crd/package-lock.json,
installed once with ``npm ci`` into the user's cache, outside the checkout); that check needs
Node.js and is skipped, saying so, without it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
CRD_VALIDATOR = Path(__file__).parent / "crd"


class KubernetesYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading scalars as Kubernetes' YAML parser does.

    YAML 1.1 gives a bare ``=`` the ``value`` tag, which PyYAML cannot construct; kustomize writes
    Alertmanager's ``matchType: =`` bare, and Kubernetes reads it as the string "=".
    """


KubernetesYamlLoader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def kustomize_command() -> list[str]:
    """Return the command that builds a kustomization directory given as its last argument."""
    standalone = shutil.which("kustomize")
    if standalone:
        return [standalone, "build"]
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    pytest.fail("neither kustomize nor kubectl is installed: run deploy/local/install.sh test")


def build(directory: Path) -> list[dict[str, Any]]:
    """Return the documents ``kustomize build directory`` writes (a fresh copy each call)."""
    return json.loads(_build_json(str(directory)))


@functools.cache
def _build_json(directory: str) -> str:
    done = subprocess.run(
        [*kustomize_command(), directory], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.load_all(done.stdout, Loader=KubernetesYamlLoader) if d]
    return json.dumps(docs)


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """Return name -> document of every document of ``kind``."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return name -> env entry of a container."""
    return {e["name"]: e for e in container.get("env", [])}


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


def validate_custom_resources(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Run tests/deploy/crd/validate.mjs over ``docs``: the kinds checked, or the problems."""
    home = _crd_validator()
    return subprocess.run(
        ["node", str(home / "validate.mjs")],
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
