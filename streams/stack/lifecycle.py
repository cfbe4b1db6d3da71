"""The lifecycle API that Prometheus and Alertmanager share: ``/-/ready`` and ``/-/reload``."""

from __future__ import annotations

import httpx


def answers_ready(port: int) -> bool:
    """Whether the server on ``port`` answers its readiness endpoint with 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def request_reload(port: int) -> bool:
    """Ask the server on ``port`` to re-read its configuration; True when it did."""
    try:
        return httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False
