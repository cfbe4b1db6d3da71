from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.settings import Settings
from tests.integration.harness import REPLAY, GateEnv, GateProfile, drop_gate_env, make_gate_env


@pytest.fixture
def gate_profile() -> GateProfile:
    """How :func:`gate_env`'s gates run: the tests' replay settings.

    A test runs under production settings too with
    ``@pytest.mark.parametrize("gate_profile", PROFILES, ids=profile_id)`` (harness).
    """
    return REPLAY


@pytest.fixture
def gate_env(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path, gate_profile: GateProfile
) -> Iterator[GateEnv]:
    """A fresh, isolated set of topics (4 partitions) with the schemas registered."""
    env = make_gate_env(settings, admin, unique, tmp_path, profile=gate_profile)
    try:
        yield env
    finally:
        drop_gate_env(env)
