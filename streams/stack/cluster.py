"""``consentinel stack up --brokers 3``: a local three-node KRaft cluster beside the single node.

Production runs on a replicated cluster; this one lets a developer, and the fault tests, see what a
broker's death, a leader's move or a lost quorum does to the gate. Each node is broker and
controller at once, with its own ports, config and data directory under the stack home::

    cluster/cluster.id              the cluster id every node was formatted with
    cluster/node-N/server.properties
    cluster/node-N/data/            node N's KRaft log directory

Clients bootstrap from :func:`bootstrap_servers`. Topics are replicated three times and need two
in-sync replicas to take a write (``min.insync.replicas=2``), the transaction state log too, so a
single broker's death stops nothing and a second one stops writes without losing any.

The single-node stack (``localhost:9092``) stays the default for ``make demo`` and the tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StackError
from streams.stack.kraft import new_cluster_id

NODES = 3
"""How many nodes ``--brokers 3`` starts (the only cluster size offered)."""
BROKER_PORTS = (9192, 9193, 9194)
"""Each node's PLAINTEXT client listener, node 1 first."""
CONTROLLER_PORTS = (9292, 9293, 9294)
"""Each node's KRaft controller listener, node 1 first."""
PROXIED_PORTS = (9392, 9393, 9394)
"""Each node's second client listener, meant to be reached only through a TCP proxy."""
PROXY_PORTS = (9492, 9493, 9494)
"""Where that listener is advertised: a proxy listening here (the fault tests run one) decides
what crosses, so that cutting it partitions its clients from the cluster."""
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


def node_name(node_id: int) -> str:
    """Return node ``node_id``'s name in ``stack up|down|status`` and its pid and log files."""
    return f"kafka-{node_id}"


NODE_NAMES = tuple(node_name(i) for i in range(1, NODES + 1))


def bootstrap_servers() -> str:
    """Return the cluster's client addresses (every node, so that any one may be down)."""
    return ",".join(f"localhost:{port}" for port in BROKER_PORTS)


def proxied_bootstrap_servers() -> str:
    """Return the client addresses behind the proxy (see :data:`PROXY_PORTS`)."""
    return ",".join(f"localhost:{port}" for port in PROXY_PORTS)


def cluster_dir(home: Path) -> Path:
    """Return the cluster's directory under the stack home."""
    return home / "cluster"


@dataclass(frozen=True)
class NodeLaunch:
    """How to start one node and tell that the cluster answers through it."""

    name: str
    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    where: str


def _properties(node_id: int, data: Path) -> str:
    voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(CONTROLLER_PORTS))
    port = BROKER_PORTS[node_id - 1]
    controller = CONTROLLER_PORTS[node_id - 1]
    proxied, proxy = PROXIED_PORTS[node_id - 1], PROXY_PORTS[node_id - 1]
    return "\n".join(
        [
            "# One node of the local three-node KRaft cluster. Written by `consentinel stack up "
            "--brokers 3`.",
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
            f"PROXIED://127.0.0.1:{proxied}",
            f"advertised.listeners=PLAINTEXT://localhost:{port},PROXIED://localhost:{proxy}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "PROXIED:PLAINTEXT",
            f"controller.quorum.voters={voters}",
            f"log.dirs={data}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"default.replication.factor={REPLICATION_FACTOR}",
            f"min.insync.replicas={MIN_INSYNC_REPLICAS}",
            f"offsets.topic.replication.factor={REPLICATION_FACTOR}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={REPLICATION_FACTOR}",
            f"transaction.state.log.min.isr={MIN_INSYNC_REPLICAS}",
            "transaction.state.log.num.partitions=8",
            f"share.coordinator.state.topic.replication.factor={REPLICATION_FACTOR}",
            f"share.coordinator.state.topic.min.isr={MIN_INSYNC_REPLICAS}",
            "group.initial.rebalance.delay.ms=0",
            "transaction.max.timeout.ms=900000",
            "unclean.leader.election.enable=false",
            "",
        ]
    )


def _cluster_id(home: Path) -> str:
    path = cluster_dir(home) / "cluster.id"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    path.write_text(cluster_id + "\n")
    return cluster_id


def cluster_nodes(home: Path, lib: Path, log_dir: Path, java: str) -> list[NodeLaunch]:
    """Write every node's config, format its storage once, and return how to start each."""
    cluster_id = _cluster_id(home)
    launches = []
    for node_id in range(1, NODES + 1):
        node_dir = cluster_dir(home) / f"node-{node_id}"
        data = node_dir / "data"
        node_dir.mkdir(parents=True, exist_ok=True)
        props = node_dir / "server.properties"
        props.write_text(_properties(node_id, data))
        log4j = node_dir / "log4j2.properties"
        log4j.write_text(
            (Path(__file__).parent / "kafka-log4j2.properties")
            .read_text()
            .replace("{log}", str(log_dir / f"{node_name(node_id)}-server.log"))
        )
        base = [java, "-cp", f"{lib}/*", f"-Dlog4j2.configurationFile={log4j}"]
        if not (data / "meta.properties").exists():
            result = subprocess.run(
                [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(
                    f"formatting KRaft storage of node {node_id} in {data} failed: "
                    f"{result.stderr.strip()[-800:]}",
                    hint=f"remove {cluster_dir(home)} and run `consentinel stack up --brokers 3` "
                    "again",
                )
        port = BROKER_PORTS[node_id - 1]
        launches.append(
            NodeLaunch(
                name=node_name(node_id),
                port=port,
                command=[
                    java,
                    "-Xms256m",
                    "-Xmx768m",
                    "-XX:+UseG1GC",
                    *base[1:],
                    "kafka.Kafka",
                    str(props),
                ],
                cwd=node_dir,
                ready=_cluster_answers_through(port),
                where=f"localhost:{port} (node {node_id} of {NODES}, data {data})",
            )
        )
    return launches


def _cluster_answers_through(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": f"localhost:{port}", "log_level": 0})
            metadata = admin.list_topics(timeout=2)
        except Exception:  # not answering metadata requests yet
            return False
        return len(metadata.brokers) >= NODES

    return ready
