"""What a quick and a full run measure, and the fixed names and rates every step uses."""

from __future__ import annotations

from typing import Any

from bench.common import REPO

RESULTS = REPO / "bench" / "results"
OTHER_WORK_LIMIT = 0.25  # cores used by other work above which a throughput run is repeated
CEILING_OUT = "bench.ceiling.out"
FAUST_DECISIONS = "faust.governance.decisions"
FAUST_APPROVED = "faust.photo.share.approved"
QUIX_DECISIONS = "quix.governance.decisions"
QUIX_APPROVED = "quix.photo.share.approved"
LIVE_RPS = 2000.0  # the fixed live rate for p99
HARNESS = 12
"""Version of this harness (issue 12: the runtime gate, replay policy, peers, verdict mixes)."""

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "requests": 100_000,
        "users": 10_000,
        "paced_s": 8,
        "latency_systems": ["gate"],
        "restore_users": [100_000],
        "profile_s": 25,
        "faust_cap_s": 20,
        "quix_cap_s": 30,
        "commit_intervals_ms": [0, 250],
        "detector_decisions": 100_000,
        "repeats": 1,
        "max_repeats": 1,
        "timeout_s": 300,
    },
    "full": {
        "requests": 1_000_000,
        "users": 100_000,
        "paced_s": 60,
        "latency_systems": ["ceiling", "gate", "faust_peer", "scale_out"],
        "restore_users": [1_000_000, 10_000_000],
        "profile_s": 60,
        "faust_cap_s": 300,
        "quix_cap_s": 300,
        "commit_intervals_ms": [0, 50, 100, 250, 500, 1000],
        "detector_decisions": 1_000_000,
        "repeats": 2,
        "max_repeats": 4,
        "timeout_s": 3600,
    },
}
