"""Lifecycle of the local stack's servers: readiness probes and stopping a process group.

Prometheus and Alertmanager share ``/-/ready`` and ``/-/reload``; Kafka and the registry are
probed through their own APIs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

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


def port_taken(port: int) -> bool:
    """Whether something listens on localhost ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def terminate(pid: int, grace_s: float = 30.0) -> None:
    """Stop the process group of ``pid``: SIGTERM, then SIGKILL after ``grace_s``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        reap(pid)
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child and has exited (no zombie left)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kafka_ready(port: int) -> bool:
    """Whether the broker on localhost ``port`` answers a metadata request."""
    if not port_taken(port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": f"localhost:{port}"})
        admin.list_topics(timeout=2)
    except Exception:  # the broker is not answering metadata requests yet
        return False
    return True


def registry_ready(port: int, path: str) -> bool:
    """Whether the registry on localhost ``port`` (API at ``path``) lists its subjects."""
    try:
        response = httpx.get(f"http://localhost:{port}{path}/subjects", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
