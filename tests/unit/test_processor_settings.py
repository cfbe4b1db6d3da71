"""Every processor takes its runtime settings from the environment the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.detect.app import build_detector
from streams.errors import ConfigError
from streams.gate.app import build_runner
from streams.settings import load_settings

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"


def test_the_gate_and_the_detector_take_the_commit_interval_grace_store_and_state_dir(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        CONSENTINEL_COMMIT_INTERVAL_MS="250",
        CONSENTINEL_CAUGHT_UP_GRACE_MS="7",
        CONSENTINEL_STATE_STORE="rocksdb",
        CONSENTINEL_STATE_DIR=str(tmp_path),
        CONSENTINEL_INSTANCE_ID="pod-7",
        CONSENTINEL_SIGNING_KEY="",
    )
    gate = build_runner(settings, POLICY, unsigned=True)
    detector = build_detector(settings, POLICY)
    try:
        for runner in (gate, detector):
            options = runner.options
            assert options.commit_interval_ms == 250  # the detector ignored it
            assert options.caught_up_grace_ms == 7
            assert options.state_store == "rocksdb"
            assert options.state_dir == tmp_path / "pod-7"
    finally:
        for runner in (gate, detector):
            runner.consumer.close()


def test_a_negative_grace_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(CONSENTINEL_CAUGHT_UP_GRACE_MS="-1")
    assert "CONSENTINEL_CAUGHT_UP_GRACE_MS" in str(caught.value)
