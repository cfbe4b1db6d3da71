"""The demo's policy copy: replay time bounds and a short recall deadline for acme-vision only."""

from __future__ import annotations

from pathlib import Path

from streams.core.policy import load_policy
from streams.demo import DEMO_RECALL_DAYS, DEMO_TIME_BOUNDS, VENDOR, demo_policy
from streams.resources import example_policy


def test_the_demo_policy_trusts_its_simulated_clock_and_recalls_fast(tmp_path: Path) -> None:
    original = load_policy(example_policy())
    copy = load_policy(demo_policy(example_policy(), tmp_path / "demo" / "policy.yaml"))
    assert copy.time.max_skew_ms == DEMO_TIME_BOUNDS["max_skew_s"] * 1000
    assert copy.time.max_lateness_ms == DEMO_TIME_BOUNDS["max_lateness_s"] * 1000
    assert copy.recall_within_days(VENDOR) == DEMO_RECALL_DAYS
    assert copy.recall_within_days("lovebird-partners") == original.recall_within_days(
        "lovebird-partners"
    )
    assert set(copy.recipients) == set(original.recipients)
    assert copy.version == f"{original.version}+demo"
