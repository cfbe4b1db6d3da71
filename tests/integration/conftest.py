from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.settings import Settings
from tests.integration.harness import GateEnv, drop_gate_env, make_gate_env


@pytest.fixture
def gate_env(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path
) -> Iterator[GateEnv]:
    """A fresh, isolated set of topics (4 partitions) with the schemas registered."""
    env = make_gate_env(settings, admin, unique, tmp_path)
    try:
        yield env
    finally:
        drop_gate_env(env)
