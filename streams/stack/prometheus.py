"""Prometheus (Debian's package) as an optional member of the local stack.

``consentinel stack up`` starts ``/usr/bin/prometheus`` with ``deploy/prometheus/prometheus.yml``
(scrape config and rules) on 127.0.0.1:9090 when it is installed; otherwise it says why it skips
it and the rest of the stack starts anyway. Lifecycle endpoints are on, so a ``stack up`` against a
running Prometheus reloads the config and rules (``POST /-/reload``) instead of restarting it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from streams.stack.lifecycle import answers_ready, request_reload

PROMETHEUS_PORT = 9090
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
RUNBOOK_ENV = "CONSENTINEL_RUNBOOK_BASE_URL"
"""Absolute URL of docs/runbook.md; Prometheus puts it in every alert's ``runbook_url``."""
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def runbook_base_url() -> str:
    """Return ``$CONSENTINEL_RUNBOOK_BASE_URL`` or this checkout's runbook as a ``file://`` URL."""
    return os.environ.get(RUNBOOK_ENV) or RUNBOOK.resolve().as_uri()


@dataclass(frozen=True)
class PrometheusLaunch:
    """How to start Prometheus with the project's scrape config and rules."""

    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    reload: Callable[[], bool]
    where: str
    env: dict[str, str]


def skip_reason(config: Path = CONFIG) -> str | None:
    """Why Prometheus cannot join the stack here (None when it can)."""
    if shutil.which("prometheus") is None:
        return "not installed; `apt-get install prometheus` adds it (Debian's package)"
    if not config.exists():
        return f"{config} is missing (run from a source checkout of consentinel)"
    return None


def prometheus_component(
    home: Path, log_dir: Path, *, port: int = PROMETHEUS_PORT, config: Path = CONFIG
) -> PrometheusLaunch | None:
    """Return how to launch Prometheus, or None when it is not installed or not configured."""
    binary = shutil.which("prometheus")
    if binary is None or skip_reason(config) is not None:
        return None
    data = home / "prometheus"
    data.mkdir(parents=True, exist_ok=True)
    return PrometheusLaunch(
        port=port,
        command=[
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=2d",
            "--web.enable-lifecycle",
            "--enable-feature=expand-external-labels",
        ],
        cwd=config.parent,
        ready=lambda: answers_ready(port),
        reload=lambda: reload(port),
        where=f"http://localhost:{port} (config {config}, data {data})",
        env={**os.environ, RUNBOOK_ENV: runbook_base_url()},
    )


def reload(port: int = PROMETHEUS_PORT) -> bool:
    """Ask the Prometheus on ``port`` to re-read its config and rules; True when it did."""
    return request_reload(port)


def identify(port: int = PROMETHEUS_PORT) -> str | None:
    """Return ``"Prometheus <version>"`` if a Prometheus answers on ``port``, else None."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/status/buildinfo", timeout=2)
        version = response.json()["data"]["version"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return f"Prometheus {version}"
