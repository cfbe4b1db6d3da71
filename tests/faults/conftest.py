"""Fault fixtures: the local three-node KRaft cluster (``consentinel stack up --brokers 3``).

The cluster is started here if it is not running, and stopped at the end only if this session
started it. A fault test that cannot start it FAILS; nothing here skips.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.settings import Settings, load_settings
from streams.stack import cluster
from streams.stack.local import LocalStack
from tests.integration.harness import GateEnv, drop_gate_env, make_gate_env


@dataclass
class Cluster:
    """The running three-node cluster, and the faults a test may inject into it."""

    stack: LocalStack

    def pid(self, node_id: int) -> int | None:
        """Return node ``node_id``'s pid, or None while it is down."""
        return self.stack.running_pid(cluster.node_name(node_id))

    def kill(self, node_id: int) -> None:
        """SIGKILL node ``node_id``: no controlled shutdown, no leadership hand-over."""
        pid = self.pid(node_id)
        assert pid is not None, f"node {node_id} is not running"
        os.killpg(pid, signal.SIGKILL)
        with_pid = Path(f"/proc/{pid}")
        for _ in range(200):
            if not with_pid.exists():
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)

    def restore(self) -> None:
        """Start every node that is down and wait until all three answer."""
        self.stack.up_cluster()

    def leaders(self, admin: AdminClient, topic: str) -> dict[int, int]:
        """Return ``{partition: leader node id}`` of ``topic``."""
        metadata = admin.list_topics(topic, timeout=30).topics[topic]
        return {p: m.leader for p, m in metadata.partitions.items()}


LOG_TAIL_LINES = 80
"""Lines of each process log a failed fault test shows (the process's last words)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed fault test shows the tail of every gate or detector log it started.

    A gate still alive is asked first for every thread's stack (``SIGUSR1``): where a stalled
    gate waits. The processes log into the test's temporary directory, which CI does not keep:
    without this a gate that stalled leaves nothing to read.
    """
    outcome = yield
    report = outcome.get_result()
    env = getattr(item, "funcargs", {}).get("cluster_env")
    if report.when != "call" or not report.failed or env is None:
        return
    alive = [p for p in env.processes if p.poll() is None]
    for process in alive:
        process.send_signal(signal.SIGUSR1)
    if alive:
        time.sleep(1.0)  # faulthandler writes the stacks at once; let them reach the log
    for process in env.processes:
        report.sections.append(
            (f"gate pid {process.pid}", f"exit status {process.poll()} (None: alive)")
        )
    for log in sorted(env.work_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        report.sections.append((f"last {len(lines)} lines of {log.name}", "\n".join(lines)))


@pytest.fixture(scope="session")
def kraft_cluster() -> Iterator[Cluster]:
    """The three-node cluster, all nodes up at the start of each test that uses it."""
    stack = LocalStack(load_settings().stack_home)
    already = all(stack.running_pid(n) is not None for n in cluster.NODE_NAMES)
    stack.up(brokers=cluster.NODES)
    try:
        yield Cluster(stack)
    finally:
        if not already:
            for name in cluster.NODE_NAMES:
                pid = stack.running_pid(name)
                if pid is not None:
                    os.killpg(pid, signal.SIGTERM)


@pytest.fixture
def cluster_settings(kraft_cluster: Cluster, endpoints: tuple[str, str]) -> Settings:
    """Settings pointing at the cluster (and the stack's registry)."""
    kraft_cluster.restore()  # a previous test may have left a node down
    return load_settings(
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap_servers(), SCHEMA_REGISTRY_URL=endpoints[1]
    )


@pytest.fixture
def cluster_env(cluster_settings: Settings, unique: str, tmp_path: Path) -> Iterator[GateEnv]:
    """A fresh, isolated gate environment (4 partitions, replication factor 3) on the cluster."""
    admin = AdminClient(cluster_settings.kafka_config())
    env = make_gate_env(cluster_settings, admin, unique, tmp_path)
    try:
        yield env
    finally:
        drop_gate_env(env)
