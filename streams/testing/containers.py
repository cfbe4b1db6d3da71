"""testcontainers fixtures for users with a Docker engine: Kafka 4 (KRaft) and Apicurio 3.

Tests on machines without Docker use the local stack instead (see ``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

KAFKA_IMAGE = "apache/kafka:4.1.1"
REGISTRY_IMAGE = "apicurio/apicurio-registry:3.3.3"


@contextmanager
def kafka_and_registry() -> Iterator[tuple[str, str]]:
    """Start a KRaft broker and an Apicurio registry; yield ``(bootstrap, ccompat_url)``."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
    kafka.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
    kafka.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    kafka.with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
    registry = DockerContainer(REGISTRY_IMAGE).with_exposed_ports(8080)
    with kafka, registry:
        wait_for_logs(registry, "started in", timeout=120)
        host = registry.get_container_host_ip()
        port = registry.get_exposed_port(8080)
        yield kafka.get_bootstrap_server(), f"http://{host}:{port}/apis/ccompat/v7"
