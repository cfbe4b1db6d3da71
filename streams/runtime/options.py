"""The tunables of the stream runtime, shared by the Kafka runner and the in-process driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRANSIENT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Waits after successive transient failures of a batch (the last one repeats)."""

INIT_TRANSACTIONS_TIMEOUT_S = 30.0
"""How long one ``init_transactions`` call may wait for the coordinator before it is retried
(librdkafka's own default waits for ever: a gate started during an outage must stay live)."""

REJOINS_ALLOWED = (3, 600.0)
"""A fenced consumer, or a wedged producer, is rebuilt in-process at most 3 times in 600 s;
then the process ends.

Fenced more often, the group most likely has another live member with the same instance id,
and rejoining would only fence that one in turn."""


class RenewalBudget:
    """Counts the in-process rebuilds of one client against :data:`REJOINS_ALLOWED`."""

    def __init__(self, allowed: tuple[int, float] = REJOINS_ALLOWED) -> None:
        self.most, self.window_s = allowed
        self._at: list[float] = []

    def spend(self, now_s: float) -> int:
        """Count one rebuild at ``now_s`` (monotonic); return how many fall in the window."""
        self._at = [t for t in self._at if now_s - t < self.window_s] + [now_s]
        return len(self._at)

    def exceeded(self, count: int) -> bool:
        """Whether ``count`` rebuilds in the window are more than allowed."""
        return count > self.most


@dataclass
class RuntimeOptions:
    """Tunables of the loop; the defaults suit production."""

    batch_max_events: int = 2000
    poll_timeout_s: float = 0.05
    max_idle_ms: int = 200
    caught_up_grace_ms: int = 50
    """How long a record waits before it overtakes a source that is only caught up as of the last
    fetch (:class:`~streams.runtime.timesync.PartitionSynchronizer`; 0: not at all)."""
    pause_above: int = 20_000
    resume_below: int = 5_000
    state_store: str = "memory"
    state_dir: Path | None = None
    kept_state_max_age_s: float = 20 * 3600.0
    """A RocksDB store kept across restarts is used (its changelog tail restored) only when it
    was last written less than this long ago; older, it is wiped and restored in full. Keep it
    below the changelog's ``delete.retention.ms`` (Kafka's default: 24 h): after that, compaction
    may remove tombstones the old copy would need."""
    transaction_timeout_ms: int = 60_000
    restore_timeout_s: float = 300.0
    lag_interval_s: float = 5.0
    punctuate_interval_s: float = 1.0
    liveness_timeout_s: float = 120.0
    reachability_interval_s: float = 5.0
    """How often a runner asks the cluster for metadata; two unanswered asks in a row make it
    not ready until one is answered (:mod:`streams.runtime.reachability`; 0: never asks)."""
    max_input_bytes: int = 256 * 1024
    max_output_bytes: int = 900 * 1024
    commit_interval_ms: int = 0
    """Commit cadence by time as well as by size: while fewer than ``batch_max_events`` inputs
    are waiting, keep processing what arrives into the open transaction and commit once it is
    this old (0: commit every iteration that has work, the lowest latency)."""
    gc_threshold0: int = 10_000
    """CPython's generation-0 collection threshold (its default is 700): the loop allocates
    short-lived objects per record, and each young collection also scans what survived."""
    gc_freeze_interval_s: float = 30.0
    """Move every object alive to CPython's permanent generation after a restore and then at
    most this often (between transactions; 0: never), so that full collections stop walking
    the long-lived state. Cyclic garbage alive at that moment is never collected: keep it rare."""
    local_loopback: bool = True
    """Process a record written to an internal source topic (repartition) at once, in the same
    transaction, when its partition is assigned to this process, instead of writing it to the
    broker and reading it back. Same effects, committed atomically with their cause."""
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
