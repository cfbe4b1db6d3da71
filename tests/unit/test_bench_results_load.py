"""BENCHMARKS.md is rendered from bench.run's results only, whatever else bench/results holds.

`make bench-quick` on a fresh clone failed at its last step: bench.restart's result file (a
list of runs) was read as a bench.run result and the page was never written.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.benchmarks_md import _load


def test_files_of_other_benchmarks_are_not_taken_for_runs(tmp_path: Path) -> None:
    (tmp_path / "2026-12-05-restart.json").write_text(json.dumps({"runs": [{"users": 1}]}))
    (tmp_path / "2026-12-06-quick.json").write_text(json.dumps({"runs": {"gate": {}}}))
    assert [stem for stem, _ in _load(tmp_path)] == ["2026-12-06-quick"]
