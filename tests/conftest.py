"""Session fixtures: a real Kafka broker and a real schema registry, never mocks.

Where they come from, in order:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``SCHEMA_REGISTRY_URL`` when both are set (an existing stack);
2. testcontainers, when a Docker engine answers (``CONSENTINEL_TEST_DOCKER=1`` to force);
3. otherwise the local stack (``consentinel stack up``), started here if it is not running and
   stopped at the end only if this session started it.

An integration test that cannot reach them FAILS; nothing here skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def _docker_available() -> bool:
    if os.environ.get("CONSENTINEL_TEST_DOCKER") == "0":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _from_containers() -> Iterator[tuple[str, str]]:
    from streams.testing.containers import kafka_and_registry

    with kafka_and_registry() as (bootstrap, registry):
        yield bootstrap, registry


def _from_local_stack() -> Iterator[tuple[str, str]]:
    from streams.stack.local import LocalStack

    stack = LocalStack(load_settings().stack_home)
    already = stack.running_pid("kafka") is not None and stack.running_pid("registry") is not None
    stack.up()
    try:
        yield "localhost:9092", "http://localhost:8081/apis/ccompat/v7"
    finally:
        if not already:
            stack.down()


@pytest.fixture(scope="session")
def endpoints() -> Iterator[tuple[str, str]]:
    """``(bootstrap_servers, registry_url)`` of a reachable broker and registry."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    registry = os.environ.get("SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        yield bootstrap, registry
    elif os.environ.get("CONSENTINEL_TEST_DOCKER") == "1" or (
        os.environ.get("CI") is None and _docker_available()
    ):
        yield from _from_containers()
    else:
        yield from _from_local_stack()


@pytest.fixture(scope="session")
def settings(endpoints: tuple[str, str]) -> Settings:
    """Settings pointing at the test broker and registry."""
    bootstrap, registry = endpoints
    return load_settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SCHEMA_REGISTRY_URL=registry)


@pytest.fixture(scope="session")
def kafka_config(settings: Settings) -> dict[str, object]:
    """librdkafka settings for the test broker."""
    return settings.kafka_config()


@pytest.fixture(scope="session")
def registry_url(settings: Settings) -> str:
    """The Confluent-compatible URL of the test registry."""
    return settings.schema_registry_url


@pytest.fixture(scope="session")
def admin(kafka_config: dict[str, object]):  # type: ignore[no-untyped-def]
    """An AdminClient on the test broker, checked to answer."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient(dict(kafka_config))
    client.list_topics(timeout=30)  # fails the test session loudly if the broker is unreachable
    return client


@pytest.fixture
def unique() -> str:
    """A short unique token for ids and scratch topic names."""
    return uuid.uuid4().hex[:10]
