"""The runtime times CPython's collections into ``<prefix>_gc_pause_seconds``."""

from __future__ import annotations

import gc
import itertools
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bench.internals import HistogramSnapshot, internals
from streams.runtime import gc_tuning
from streams.runtime.gc_tuning import GcPauses, GcTuning
from streams.runtime.options import RuntimeOptions


def test_each_forced_collection_is_one_pause_of_its_generation_in_the_exposition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    GcTuning(RuntimeOptions(), GcPauses("test_gc_pause_seconds")).apply()
    timed = gc_tuning._TIMED[0]  # the process's first runner's collector (this one if first)
    name, timed.name = timed.name, "consentinel_gate_gc_pause_seconds"  # what the bench reads
    registry = CollectorRegistry()
    registry.register(timed)
    ticks = itertools.count()
    # every reading of the collector's clock is 4 ms after the previous one: each pause is 4 ms
    monkeypatch.setattr(gc_tuning, "time", SimpleNamespace(perf_counter=lambda: next(ticks) / 250))

    def snapshot() -> HistogramSnapshot:
        return HistogramSnapshot.parse(generate_latest(registry).decode())

    enabled = gc.isenabled()
    gc.disable()  # no automatic collection in between: only the forced ones below are counted
    try:
        before = snapshot()
        gc.collect(0)
        gc.collect(1)
        gc.collect(1)
        gc.collect()
        gc.collect()
        gc.collect()
        seen = internals(before, snapshot())
    finally:
        timed.name = name
        if enabled:
            gc.enable()
    pauses = seen.get("gc_pauses", {})
    assert {g: pauses.get(g, {}).get("collections", 0) for g in ("gen0", "gen1", "gen2")} == {
        "gen0": 1,
        "gen1": 2,
        "gen2": 3,
    }
    assert pauses["gen0"]["seconds"] == pytest.approx(0.004)
    assert pauses["gen1"]["seconds"] == pytest.approx(0.008)
    assert pauses["gen2"]["seconds"] == pytest.approx(0.012)


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
