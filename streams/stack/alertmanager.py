"""Alertmanager (Debian's ``prometheus-alertmanager``) as an optional member of the local stack.

``consentinel stack up`` starts it with ``deploy/alertmanager/alertmanager.yml`` on
127.0.0.1:9095 (9093, its usual port, is the local Kafka controller's) when the package is
installed, and Prometheus sends it its alerts (the ``alerting:`` block of
``deploy/prometheus/prometheus.yml``).
Clustering is off (a single local instance). A ``stack up`` against a running Alertmanager reloads
its configuration (``POST /-/reload``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.stack.lifecycle import answers_ready, request_reload

ALERTMANAGER_PORT = 9095
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
BINARIES = ("prometheus-alertmanager", "alertmanager")
"""Debian names the binary ``prometheus-alertmanager``; upstream tarballs ``alertmanager``."""


@dataclass(frozen=True)
class AlertmanagerLaunch:
    """How to start Alertmanager with the project's routing configuration."""

    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    reload: Callable[[], bool]
    where: str


def binary() -> str | None:
    """Return the Alertmanager executable on PATH, or None."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def skip_reason(config: Path = CONFIG) -> str | None:
    """Why Alertmanager cannot join the stack here (None when it can)."""
    if binary() is None:
        return "not installed; `apt-get install prometheus-alertmanager` adds it (Debian's package)"
    if not config.exists():
        return f"{config} is missing (run from a source checkout of consentinel)"
    return None


def alertmanager_command(
    exe: str, config: Path, data: Path, port: int, *, host: str = "127.0.0.1"
) -> list[str]:
    """Return the command line of a single, unclustered Alertmanager."""
    return [
        exe,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address={host}:{port}",
        "--cluster.listen-address=",
        "--data.retention=24h",
    ]


def alertmanager_component(
    home: Path, *, port: int = ALERTMANAGER_PORT, config: Path = CONFIG
) -> AlertmanagerLaunch | None:
    """Return how to launch Alertmanager, or None when it is not installed or not configured."""
    exe = binary()
    if exe is None or skip_reason(config) is not None:
        return None
    data = home / "alertmanager"
    data.mkdir(parents=True, exist_ok=True)
    return AlertmanagerLaunch(
        port=port,
        command=alertmanager_command(exe, config, data, port),
        cwd=config.parent,
        ready=lambda: ready(port),
        reload=lambda: reload(port),
        where=f"http://localhost:{port} (config {config}, data {data})",
    )


def ready(port: int = ALERTMANAGER_PORT) -> bool:
    """Whether the Alertmanager on ``port`` answers its readiness endpoint."""
    return answers_ready(port)


def reload(port: int = ALERTMANAGER_PORT) -> bool:
    """Ask the Alertmanager on ``port`` to re-read its configuration; True when it did."""
    return request_reload(port)
