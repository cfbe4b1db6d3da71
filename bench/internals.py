"""What a process under test says about itself during a measurement: its runtime histograms.

A latency run's tail has causes inside the gate that the send→visible clock cannot separate:
how long each transaction's commit took, and how long CPython's collector stopped the process.
:class:`HistogramSnapshot` reads the gate's ``/metrics`` before and after a phase, and
:func:`internals` turns the difference into a few numbers that go next to the latency.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

COMMIT = "consentinel_gate_transaction_commit_duration_seconds"
GC_PAUSE = "consentinel_gate_gc_pause_seconds"
LONG_PAUSE_S = 0.05
"""A collection longer than this counts as a long pause (a bucket bound of the histogram)."""


@dataclass
class HistogramSnapshot:
    """Bucket counts and sums of the histograms one ``/metrics`` page held at one moment."""

    buckets: dict[tuple[str, str, float], float] = field(default_factory=dict)
    """``(histogram, generation label or "", le)`` -> cumulative count."""
    sums: dict[tuple[str, str], float] = field(default_factory=dict)
    counts: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def scrape(cls, port: int, timeout_s: float = 5.0) -> HistogramSnapshot | None:
        """Read ``http://localhost:port/metrics``; None when it cannot be read."""
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=timeout_s) as r:
                text = r.read().decode("utf-8")
        except OSError:
            return None
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> HistogramSnapshot:
        """Read the commit and GC-pause histograms from a Prometheus text exposition."""
        snap = cls()
        for family in text_string_to_metric_families(text):
            if family.name not in (COMMIT, GC_PAUSE):
                continue
            for sample in family.samples:
                label = sample.labels.get("generation", "")
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    snap.buckets[(family.name, label, le)] = sample.value
                elif sample.name.endswith("_sum"):
                    snap.sums[(family.name, label)] = sample.value
                elif sample.name.endswith("_count"):
                    snap.counts[(family.name, label)] = sample.value
        return snap


def internals(before: HistogramSnapshot | None, after: HistogramSnapshot | None) -> dict[str, Any]:
    """Return the commits and collections between two snapshots (empty if either is missing).

    ``commit_p99_ms`` is the upper bound of the bucket holding the 99th percentile commit.
    """
    if before is None or after is None:
        return {}

    def delta_count(name: str, label: str = "") -> float:
        return after.counts.get((name, label), 0.0) - before.counts.get((name, label), 0.0)

    def delta_bucket(name: str, label: str, le: float) -> float:
        key = (name, label, le)
        return after.buckets.get(key, 0.0) - before.buckets.get(key, 0.0)

    out: dict[str, Any] = {}
    commits = delta_count(COMMIT)
    if commits > 0:
        bounds = sorted(le for (n, _, le) in after.buckets if n == COMMIT)
        p99 = next(le for le in bounds if delta_bucket(COMMIT, "", le) >= 0.99 * commits)
        out["commits"] = int(commits)
        out["commit_p99_ms"] = None if p99 == float("inf") else round(p99 * 1000, 1)
        total = after.sums.get((COMMIT, ""), 0.0) - before.sums.get((COMMIT, ""), 0.0)
        out["commit_mean_ms"] = round(total / commits * 1000, 2)
    pauses: dict[str, Any] = {}
    for generation in ("0", "1", "2"):
        count = delta_count(GC_PAUSE, generation)
        if count <= 0:
            continue
        seconds = after.sums.get((GC_PAUSE, generation), 0.0) - before.sums.get(
            (GC_PAUSE, generation), 0.0
        )
        long = count - delta_bucket(GC_PAUSE, generation, LONG_PAUSE_S)
        pauses[f"gen{generation}"] = {
            "collections": int(count),
            "seconds": round(seconds, 3),
            f"over_{int(LONG_PAUSE_S * 1000)}ms": int(long),
        }
    if pauses:
        out["gc_pauses"] = pauses
    return out
