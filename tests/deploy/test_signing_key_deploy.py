"""Every deployment gives the gate a signing key it accepts (contract section 6).

The gate refuses to start without ``CONSENTINEL_SIGNING_KEY`` (unless ``--unsigned``) and refuses
a key file its group or others can read; so each deployment must mount one, owner-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_compose_gate_signs_with_the_key_init_makes() -> None:
    services = yaml.safe_load((REPO / "deploy/compose/docker-compose.yml").read_text())["services"]
    gate, init = services["gate"], services["init"]
    key = gate["environment"]["CONSENTINEL_SIGNING_KEY"]
    assert "--unsigned" not in gate["command"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gate["volumes"]}
    directory = str(Path(key).parent)
    assert directory in mounts, "the key's directory is mounted into the gate"
    assert f"{mounts[directory]}:{directory}" in init["volumes"]
    script = " ".join(init["entrypoint"])
    assert f"audit keygen --out {directory}" in script and Path(key).name in script
    dockerfile = (REPO / "Dockerfile").read_text()
    assert directory in dockerfile and f"chmod 0700 {directory}" in dockerfile


def test_k8s_gate_reads_an_owner_only_copy_of_its_secret() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s/base/gate.yaml").read_text()))
    pod = next(d for d in docs if d and d["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    gate = next(c for c in pod["containers"] if c["name"] == "gate")
    key = Path(_env(gate)["CONSENTINEL_SIGNING_KEY"])
    assert "--unsigned" not in gate.get("args", [])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in gate["volumeMounts"] if m["mountPath"] == str(key.parent))
    # a secret volume under fsGroup is group-readable: the gate reads a copy in memory instead
    assert volumes[mount["name"]]["emptyDir"]["medium"] == "Memory"
    init = next(c for c in pod["initContainers"] if c["name"] == mount["name"])
    command = " ".join(init["command"])
    assert "install -m 0600" in command and command.endswith(str(key))
    sources = {m["name"] for m in init["volumeMounts"]} - {mount["name"]}
    assert any(volumes[s].get("secret") for s in sources)
