"""The page's headline is a whole run; its detection figure comes from a run that alerted.

A quick run's input crosses no recipient's limit, so its detectors step raises no
``BULK_EXPORT``: the figure and its note then come from the latest (full) run whose detectors
step did, and say which. A partial run (``--only``) is never the headline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.benchmarks_md import _headline, _load
from bench.figures import detection_source
from bench.modes import HARNESS
from bench.page_detection import detection_note


def run(mode: str, date: str, alerts: list[int], **extra: Any) -> dict[str, Any]:
    entry = {
        "limit_per_hour": 2000,
        "bin_ms": 60_000,
        "bin_start_ms": [0, 60_000],
        "photos": [1, 2],
        "alerts_ms": alerts,
        "alerts_observed": [2001.0] * len(alerts),
        "alerts_threshold": [2000.0] * len(alerts),
        "suspended_ms": [],
        "resumed_ms": [],
    }
    return {
        "mode": mode,
        "date": date,
        "harness": HARNESS,
        "runs": {"gate": {}},
        "detection_timeline": {"date": date, "source": "x", "timeline": {"lovebird": entry}},
        **extra,
    }


def write(tmp: Path, name: str, data: dict[str, Any]) -> None:
    (tmp / f"{name}.json").write_text(json.dumps(data))


def test_a_partial_full_run_is_not_the_headline_but_draws_the_detection(tmp_path: Path) -> None:
    full = run("full", "2026-12-06", [60_000], partial_steps=["gate", "detectors"], code="abc1234")
    quick = run("quick", "2026-12-06", [])
    write(tmp_path, "2026-12-06-detection", full)
    write(tmp_path, "2026-12-06-quick", quick)
    stem, headline = _headline(_load(tmp_path)) or ("", {})
    assert stem == "2026-12-06-quick"
    assert detection_source(headline, tmp_path) == full["detection_timeline"]
    note = detection_note(headline, tmp_path)
    assert "full run of 2026-12-06" in note and "gate, detectors" in note and "abc1234" in note


def test_a_run_that_alerted_draws_its_own(tmp_path: Path) -> None:
    older = run("full", "2026-12-01", [60_000])
    quick = run("quick", "2026-12-06", [120_000])
    write(tmp_path, "2026-12-01", older)
    write(tmp_path, "2026-12-06-quick", quick)
    assert detection_source(quick, tmp_path) == quick["detection_timeline"]
    assert "this run's detectors step" in detection_note(quick, tmp_path)
