"""The runtime's Prometheus metrics, one set per processor (``consentinel_gate_*``, ...).

Every processor on the runtime exports the same series under its own prefix, so dashboards and
alert rules read the gate and the detectors alike. Labels are bounded: ``outcome`` is
committed/aborted/retried, ``topic`` a logical topic the processor consumes, ``generation`` one
of CPython's three collector generations.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from streams.runtime.gc_tuning import GcPauses

_BY_PREFIX: dict[str, RuntimeMetrics] = {}


@dataclass(frozen=True)
class RuntimeMetrics:
    """The series the runtime keeps for one processor."""

    transactions: Counter
    batch_size: Histogram
    consumer_lag: Gauge
    restore_duration: Histogram
    restored_records: Counter
    assigned_partitions: Gauge
    ready: Gauge
    last_iteration: Gauge
    transient_errors: Counter
    consumer_rejoins: Counter
    producer_replacements: Counter
    dead_letters: Counter
    commit_duration: Histogram
    gc_pause: GcPauses


def runtime_metrics(prefix: str) -> RuntimeMetrics:
    """Return the runtime's series under ``prefix`` (created once per process)."""
    existing = _BY_PREFIX.get(prefix)
    if existing is not None:
        return existing
    made = RuntimeMetrics(
        transactions=Counter(
            f"{prefix}_transactions_total", "Kafka transactions by outcome.", ["outcome"]
        ),
        batch_size=Histogram(
            f"{prefix}_batch_events",
            "Input events processed per transaction.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
        ),
        consumer_lag=Gauge(
            f"{prefix}_consumer_lag_messages",
            "Input records not yet processed (high watermark minus position), by topic.",
            ["topic"],
        ),
        restore_duration=Histogram(
            f"{prefix}_state_restore_duration_seconds",
            "Time to restore one partition's state from its changelog.",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        ),
        restored_records=Counter(
            f"{prefix}_state_restored_records_total",
            "Changelog records replayed while restoring state.",
        ),
        assigned_partitions=Gauge(
            f"{prefix}_assigned_partitions", "Input partitions this process is assigned."
        ),
        ready=Gauge(
            f"{prefix}_ready",
            "1 as /ready: assigned by the group, global tables read, state restored, cluster up.",
        ),
        last_iteration=Gauge(
            f"{prefix}_loop_last_iteration_timestamp_seconds",
            "When the processing loop last turned (Unix time); liveness fails when it is old.",
        ),
        transient_errors=Counter(
            f"{prefix}_transient_errors_total",
            "Batches retried because a dependency (broker, registry) was unreachable.",
        ),
        consumer_rejoins=Counter(
            f"{prefix}_consumer_rejoins_total",
            "Times the group membership was fenced and the group rejoined with a new consumer.",
        ),
        producer_replacements=Counter(
            f"{prefix}_producer_replacements_total",
            "Times the transactional producer wedged in a call and was replaced.",
        ),
        dead_letters=Counter(
            f"{prefix}_dead_letters_total",
            "Records sent to governance.dlq, by error kind and logical source topic.",
            ["kind", "topic"],
        ),
        commit_duration=Histogram(
            f"{prefix}_transaction_commit_duration_seconds",
            "Time to commit one transaction (its outputs flushed, the commit acknowledged).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        ),
        gc_pause=GcPauses(f"{prefix}_gc_pause_seconds"),
    )
    REGISTRY.register(made.gc_pause)
    for outcome in ("committed", "aborted"):
        made.transactions.labels(outcome)
    _BY_PREFIX[prefix] = made
    return made
