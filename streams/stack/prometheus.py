"""Prometheus (Debian's package) as an optional member of the local stack."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

PROMETHEUS_PORT = 9090
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


@dataclass(frozen=True)
class PrometheusLaunch:
    """How to start Prometheus with the project's scrape config and rules."""

    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    where: str


def prometheus_component(home: Path, log_dir: Path) -> PrometheusLaunch | None:
    """Return how to launch Prometheus, or None when it is not installed or not configured."""
    binary = shutil.which("prometheus")
    if binary is None or not CONFIG.exists():
        return None
    data = home / "prometheus"
    data.mkdir(parents=True, exist_ok=True)
    return PrometheusLaunch(
        port=PROMETHEUS_PORT,
        command=[
            binary,
            f"--config.file={CONFIG}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--storage.tsdb.retention.time=2d",
            "--web.enable-lifecycle",
        ],
        cwd=CONFIG.parent,
        ready=_ready,
        where=f"http://localhost:{PROMETHEUS_PORT} (data {data})",
    )


def _ready() -> bool:
    try:
        return (
            httpx.get(f"http://localhost:{PROMETHEUS_PORT}/-/ready", timeout=2).status_code == 200
        )
    except httpx.HTTPError:
        return False
