"""The benchmark reads the gate's own histograms around a latency phase (bench/internals.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.internals import COMMIT, GC_PAUSE, HistogramSnapshot, internals


def histograms() -> tuple[CollectorRegistry, Histogram, Histogram]:
    registry = CollectorRegistry()
    commit = Histogram(
        COMMIT.removesuffix("_seconds"),
        "commit",
        unit="seconds",
        registry=registry,
        buckets=(0.005, 0.01, 0.05, 0.1),
    )
    pause = Histogram(
        GC_PAUSE.removesuffix("_seconds"),
        "gc",
        ["generation"],
        unit="seconds",
        registry=registry,
        buckets=(0.001, 0.05, 0.1),
    )
    return registry, commit, pause


def snapshot(registry: CollectorRegistry) -> HistogramSnapshot:
    return HistogramSnapshot.parse(generate_latest(registry).decode())


def test_only_what_happened_between_the_snapshots_counts() -> None:
    registry, commit, pause = histograms()
    commit.observe(0.09)  # before the phase: not counted
    pause.labels("2").observe(0.5)
    before = snapshot(registry)
    for _ in range(99):
        commit.observe(0.004)
    commit.observe(0.08)
    pause.labels("0").observe(0.0005)
    pause.labels("2").observe(0.07)
    pause.labels("2").observe(0.2)
    seen = internals(before, snapshot(registry))
    assert seen["commits"] == 100
    assert seen["commit_p99_ms"] == 5.0  # 99 of 100 commits took at most 5 ms
    assert seen["commit_mean_ms"] == round((99 * 0.004 + 0.08) / 100 * 1000, 2)
    assert seen["gc_pauses"]["gen2"] == {"collections": 2, "seconds": 0.27, "over_50ms": 2}
    assert seen["gc_pauses"]["gen0"] == {"collections": 1, "seconds": 0.001, "over_50ms": 0}
    assert "gen1" not in seen["gc_pauses"]


def test_a_missing_snapshot_reports_nothing() -> None:
    registry, _, _ = histograms()
    assert internals(None, snapshot(registry)) == {}
    assert internals(snapshot(registry), None) == {}


def test_the_faust_peer_can_read_lz4_batches() -> None:
    """The gate's producers compress with lz4; aiokafka (the faust peer) needs a codec for it."""
    from aiokafka.codec import has_lz4, lz4_decode

    assert has_lz4(), "the `bench` extra must install an lz4 codec for aiokafka (cramjam)"
    import cramjam

    framed = bytes(cramjam.lz4.compress(b"consentinel" * 10))
    assert lz4_decode(framed) == b"consentinel" * 10
