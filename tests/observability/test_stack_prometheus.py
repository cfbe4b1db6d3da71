"""``consentinel stack up|status|down`` with its Prometheus member, for real (no Kafka needed).

The stack's other servers are left out (``_components`` is narrowed to Prometheus) and Prometheus
listens on a free port instead of 9090, so this runs next to a developer's own stack. Missing
``prometheus`` is a failure: CI installs Debian's package.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from streams.stack.local import Component, LocalStack
from tests.support import free_port

pytestmark = [pytest.mark.prometheus]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[LocalStack, int, list[str]]]:
    assert shutil.which("prometheus"), "`apt-get install prometheus` (Debian's; .ci/run does)"
    said: list[str] = []
    stack = LocalStack(tmp_path / "stack", say=said.append)
    port = free_port()
    component = stack._prometheus(port)
    assert isinstance(component, Component)
    stack._components = lambda: [component]  # type: ignore[method-assign]
    try:
        yield stack, port, said
    finally:
        stack.down()


def test_up_starts_prometheus_with_the_project_config_then_reloads_status_and_down(
    stack: tuple[LocalStack, int, list[str]],
) -> None:
    local, port, said = stack
    local.up()
    pid = local.running_pid("prometheus")
    assert pid is not None, said
    assert any("prometheus: ready" in line for line in said), said

    # the project's config: its jobs and its rule groups
    base = f"http://127.0.0.1:{port}/api/v1"
    loaded = yaml.safe_load(httpx.get(f"{base}/status/config").json()["data"]["yaml"])
    jobs = {job["job_name"] for job in loaded["scrape_configs"]}
    assert {"consentinel-gate", "consentinel-detector"} <= jobs
    groups = {g["name"] for g in httpx.get(f"{base}/rules").json()["data"]["groups"]}
    assert {"consentinel.recording", "consentinel.alerts"} <= groups

    said.clear()
    local.up()  # idempotent: leaves it running and reloads its config and rules
    assert local.running_pid("prometheus") == pid
    assert any("already running" in line for line in said), said
    assert any("configuration reloaded" in line for line in said), said

    assert local.status()["prometheus"] == pid

    said.clear()
    local.down()
    assert local.running_pid("prometheus") is None
    assert any("prometheus: stopped" in line for line in said), said
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)


def test_a_taken_port_skips_prometheus_with_a_hint(
    stack: tuple[LocalStack, int, list[str]],
) -> None:
    local, port, said = stack
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        local.up()  # no error: Prometheus is optional
    assert local.running_pid("prometheus") is None
    message = " ".join(said)
    assert f"prometheus: not started, port {port} is taken" in message, said
    assert "ss -ltnp" in message
