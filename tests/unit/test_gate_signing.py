"""The gate refuses to start without a signing key unless told ``--unsigned`` (contract §6).

Without ``CONSENTINEL_SIGNING_KEY`` it would write no signed chain heads, and `audit verify` could
not tell a partition rewritten with a recomputed chain from the real one. Running unsigned is
possible, but only when asked for, logged, and visible as ``consentinel_gate_unsigned`` = 1.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from streams import cli
from streams.core.checkpoint import generate_key_pair
from streams.errors import SigningKeyError
from streams.gate.app import build_runner, signing_key_or_refuse
from streams.settings import load_settings
from streams.stack.keys import ensure_key_pair, key_paths

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"


def unsigned_gauge() -> float | None:
    return REGISTRY.get_sample_value("consentinel_gate_unsigned")


def test_a_gate_without_a_signing_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTINEL_SIGNING_KEY", raising=False)
    settings = load_settings()
    with pytest.raises(SigningKeyError) as refused:
        build_runner(settings, POLICY)
    message = str(refused.value)
    assert "CONSENTINEL_SIGNING_KEY is not set" in message and "refuses to start" in message
    assert "--unsigned" in message and "audit keygen" in message
    assert "\n" not in message  # one line


def test_unsigned_only_when_asked_logged_and_exported(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(CONSENTINEL_SIGNING_KEY="")
    assert settings.signing_key_path is None
    with caplog.at_level(logging.WARNING, logger="streams.gate.app"):
        assert signing_key_or_refuse(settings, unsigned=True) is None
    assert unsigned_gauge() == 1
    assert any("--unsigned" in r.getMessage() for r in caplog.records)


def test_a_signing_gate_reports_it_is_signed(tmp_path: Path) -> None:
    private, _, key_id = generate_key_pair(tmp_path)
    settings = load_settings(CONSENTINEL_SIGNING_KEY=str(private))
    key = signing_key_or_refuse(settings)
    assert key is not None and key.key_id == key_id
    assert unsigned_gauge() == 0


def test_a_signing_key_others_can_read_stops_the_gate(tmp_path: Path) -> None:
    private, _, _ = generate_key_pair(tmp_path)
    os.chmod(private, 0o644)
    with pytest.raises(SigningKeyError, match="mode 644"):
        build_runner(load_settings(CONSENTINEL_SIGNING_KEY=str(private)), POLICY)


def test_the_gate_command_takes_unsigned() -> None:
    args = cli.build_parser().parse_args(["gate", "--unsigned"])
    assert args.unsigned is True
    assert cli.build_parser().parse_args(["gate"]).unsigned is False


def test_the_local_stack_makes_one_key_pair_and_keeps_it(tmp_path: Path) -> None:
    said: list[str] = []
    private, public = ensure_key_pair(tmp_path, say=said.append)
    assert (private, public) == key_paths(tmp_path)
    assert oct(private.stat().st_mode & 0o777) == oct(0o600)
    assert oct(private.parent.stat().st_mode & 0o777) == oct(0o700)
    first = private.read_bytes()
    assert ensure_key_pair(tmp_path, say=said.append) == (private, public)
    assert private.read_bytes() == first and len(said) == 1
    settings = load_settings(CONSENTINEL_SIGNING_KEY=str(private))
    assert signing_key_or_refuse(settings) is not None
