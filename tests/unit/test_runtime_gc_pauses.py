"""The runtime times CPython's collections into ``<prefix>_gc_pause_seconds``."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest

from bench.internals import HistogramSnapshot, internals
from streams.runtime import gc_tuning
from streams.runtime.gc_tuning import GcPauses, GcTuning
from streams.runtime.options import RuntimeOptions


def test_each_full_collection_is_one_generation_2_pause_in_the_exposition() -> None:
    GcTuning(RuntimeOptions(), GcPauses("test_gc_pause_seconds")).apply()
    timed = gc_tuning._TIMED[0]  # the process's first runner's collector (this one if first)
    name, timed.name = timed.name, "consentinel_gate_gc_pause_seconds"  # what the bench reads
    registry = CollectorRegistry()
    registry.register(timed)

    def snapshot() -> HistogramSnapshot:
        return HistogramSnapshot.parse(generate_latest(registry).decode())

    try:
        before = snapshot()
        gc.collect()
        gc.collect()
        seen = internals(before, snapshot())
    finally:
        timed.name = name
    assert seen["gc_pauses"]["gen2"]["collections"] == 2
    assert seen["gc_pauses"]["gen2"]["seconds"] >= 0


def test_a_pause_lands_in_the_first_bucket_that_holds_it() -> None:
    pauses = GcPauses("p")
    pauses.on_collection("start", {"generation": 1})
    pauses._started -= 0.03  # a 30 ms collection
    pauses.on_collection("stop", {"generation": 1})
    family = next(iter(pauses.collect()))
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name == "p_bucket" and s.labels["generation"] == "1"
    }
    assert buckets["0.025"] == 0 and buckets["0.05"] == 1 and buckets["+Inf"] == 1
