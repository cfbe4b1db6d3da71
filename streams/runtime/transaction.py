"""A processor's open transaction: what it holds until it commits, and when it is due.

As in quix-streams' checkpointing, inputs are processed into one open transaction until it is
due (``batch_max_events`` inputs taken, or ``commit_interval_ms`` since it opened), and it then
commits in the one order outputs → changelogs → offsets
(:class:`~streams.runtime.transport.Transaction`: Kafka's
:class:`~streams.runtime.checkpoint.Checkpoint`, or an in-memory one in tests). What its inputs
did besides their outputs (:class:`Effects`), the offsets of its tracked outputs and the global
tables' dead letters it carries reach the topology, the metrics and the readers only once it has
committed; an abort forgets all of them, and the caller rewinds to the last commit. Its life is
explicit (:class:`TransactionState`): idle → open → committing → idle.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from streams.runtime.metrics import RuntimeMetrics
from streams.runtime.options import RuntimeOptions
from streams.runtime.records import Output, Processed
from streams.runtime.task import PartitionTask
from streams.runtime.topology import Topology
from streams.runtime.transport import LetterSource, Transaction

Letters = list[tuple[LetterSource, list[Output]]]
"""Global tables' dead letters, each with the reader that keeps them until they are committed."""


class TransactionState(enum.Enum):
    """Where a processor's transaction is in its life."""

    IDLE = "idle"
    """None is open: the next batch (or punctuation) begins one."""
    OPEN = "open"
    """Inputs are processed into it; everything it holds is invisible to readers."""
    COMMITTING = "committing"
    """Its changelog and offsets are being added and it is committing: nothing more goes in."""


def monotonic_ms() -> float:
    """Milliseconds of the process's monotonic clock (the runner's commit cadence)."""
    return time.monotonic() * 1000


def transactional_producer(
    kafka_config: dict[str, Any], transactional_id: str, options: RuntimeOptions
) -> Producer:
    """Return the idempotent producer of a processor's transactions.

    A newer producer with the same ``transactional_id`` fences this one (the process restarts).
    """
    return Producer(
        {
            **kafka_config,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "transaction.timeout.ms": options.transaction_timeout_ms,
            "linger.ms": 5,
            "compression.type": "lz4",
            # A transaction begun just after a commit meets the coordinator still writing the
            # previous one's markers; it answers CONCURRENT_TRANSACTIONS and librdkafka retries
            # after this back-off (its default, 100 ms, was most of the gate's p99 at 2,000/s;
            # Java's client retries that error after 20 ms). Retries still back off exponentially
            # up to retry.backoff.max.ms, so an outage is not hammered.
            "retry.backoff.ms": 5,
            **options.producer_overrides,
        }
    )


@dataclass(slots=True)
class Effects:
    """What the inputs of one transaction did besides their outputs; it counts once committed."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) → the offset after the last input taken."""
    facts: list[Any] = field(default_factory=list)
    """Each input's facts, in input order (:meth:`~streams.runtime.topology.Topology.committed`)."""
    dead: list[tuple[str, str]] = field(default_factory=list)
    """(error kind, source topic) of each dead letter written."""

    def note(self, processed: Processed, topic: str) -> None:
        """Keep what one input of ``topic`` did besides its outputs: its facts, its dead letter."""
        if processed.facts is not None:
            self.facts.append(processed.facts)
        if processed.dead_letter_kind is not None:
            self.dead.append((processed.dead_letter_kind, topic))

    def output_too_large(self, topic: str) -> None:
        """Count the dead letter that replaced an output of an input of ``topic``."""
        self.dead.append(("OUTPUT_TOO_LARGE", topic))

    def report(self, topology: Topology, delivered: dict[tuple[str, int], int]) -> None:
        """Tell ``topology`` what its committed transaction did.

        It gets the facts, then (``delivered``) the highest offset each
        (topic, partition asked for or -1) of its tracked outputs got.
        """
        topology.committed(self.facts)
        topology.delivered(delivered)


class OpenTransaction:
    """A processor's transaction while it is open, and everything it holds until its commit.

    ``begin`` starts a transaction on the transport; ``clock_ms`` is the monotonic clock of the
    commit cadence (``commit_interval_ms``).
    """

    def __init__(
        self,
        begin: Callable[[], Transaction],
        topology: Topology,
        metrics: RuntimeMetrics,
        options: RuntimeOptions,
        clock_ms: Callable[[], float] = monotonic_ms,
    ) -> None:
        self._begin = begin
        self.topology = topology
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.batch_max_events = options.batch_max_events
        self.commit_interval_ms = options.commit_interval_ms
        self.state = TransactionState.IDLE
        self.checkpoint: Transaction | None = None
        """The transaction while it is open or committing, else None."""
        self.since = 0.0
        self.events = 0
        self.effects = Effects()
        self.batches: list[int] = []
        self.delivered: dict[tuple[str, int], int] = {}
        """(logical topic, partition asked for or -1) → the highest offset of a tracked output."""
        self.commits = 0
        """Transactions committed (for tests and the driver; the metrics count them too)."""
        self.aborts = 0
        """Transactions aborted."""
        self.dead_letter_counts: dict[tuple[str, str], int] = {}
        """(error kind, source topic) → dead letters committed."""
        self._letters: dict[int, int] = {}
        from streams.runtime.kept_store import KeptWrites

        self.kept = KeptWrites()
        """The kept stores this transaction changed: written once it has committed."""

    @property
    def is_open(self) -> bool:
        """Whether a transaction is open (or committing)."""
        return self.state is not TransactionState.IDLE

    def begin(self) -> Transaction:
        """Return the open transaction, beginning one if none is open."""
        if self.state is TransactionState.COMMITTING:
            raise RuntimeError("no input goes into a transaction that is committing")
        checkpoint = self.checkpoint
        if checkpoint is None:
            checkpoint = self.checkpoint = self._begin()
            self.state = TransactionState.OPEN
            self.since = self.clock_ms()
            self.delivered = {}
        return checkpoint

    @property
    def budget(self) -> int:
        """How many more inputs the open transaction takes (0 or less: it is full)."""
        return self.batch_max_events - self.events

    def due(self) -> bool:
        """Whether the open transaction is full, or old enough to commit."""
        return (
            self.events >= self.batch_max_events
            or self.clock_ms() - self.since >= self.commit_interval_ms
        )

    def wait_s(self, timeout_s: float) -> float:
        """Return ``timeout_s``, cut so that a wait ends by the open transaction's due time."""
        if self.checkpoint is None:
            return timeout_s
        left = (self.commit_interval_ms - (self.clock_ms() - self.since)) / 1000
        return min(timeout_s, max(left, 0.0))

    def taken(self, inputs: int) -> None:
        """Count one batch of ``inputs`` processed into the open transaction."""
        self.events += inputs
        if inputs:
            self.batches.append(inputs)

    def on_offset(self, output: Output) -> Callable[[int], None]:
        """Return what reports the offset of a tracked ``output`` once the broker has it."""
        where = (output.topic, output.partition if output.partition is not None else -1)

        def on_offset(offset: int) -> None:
            self.delivered[where] = max(offset, self.delivered.get(where, -1))

        return on_offset

    def unwritten_letters(self, readers: Sequence[LetterSource]) -> Letters:
        """Return the global tables' dead letters that no transaction holds yet."""
        letters: Letters = []
        for reader in readers:
            queued = self._letters.get(id(reader), 0)
            if len(reader.dead_letters) > queued:
                letters.append((reader, reader.dead_letters[queued:]))
        return letters

    def hold_letters(self, letters: Letters) -> None:
        """Count ``letters`` as written in the open transaction: a commit takes them off."""
        for reader, taken in letters:
            key = id(reader)
            self._letters[key] = self._letters.get(key, 0) + len(taken)

    def write_state(
        self, changelog_topic: str, tasks: Mapping[int, PartitionTask], group: Callable[[], Any]
    ) -> None:
        """Add every partition's state changes, then the consumed offsets, to the transaction.

        ``group`` returns the consumer's group metadata (which fences a zombie's offsets).
        """
        checkpoint = self.checkpoint
        assert checkpoint is not None
        self.state = TransactionState.COMMITTING
        for partition, task in tasks.items():
            self.kept.changelog(checkpoint, changelog_topic, partition, task)
        checkpoint.offsets(self.effects.offsets, group())

    def commit(self, readers: Sequence[LetterSource]) -> bool:
        """Commit, then hand over what the transaction held; False if it was aborted instead.

        After the commit the readers drop the dead letters it wrote, the topology gets the
        facts (:meth:`~streams.runtime.topology.Topology.committed`) and tracked offsets
        (``delivered``, when it has one), and the metrics count its dead letters and batches.
        """
        checkpoint = self.checkpoint
        assert checkpoint is not None
        began = time.perf_counter()
        if not checkpoint.commit(self._outcome):
            self.abort()
            return False
        self.metrics.commit_duration.observe(time.perf_counter() - began)
        self.kept.committed()
        effects, batches, delivered = self.effects, self.batches, self.delivered
        self._reset()
        for reader in readers:
            queued = self._letters.pop(id(reader), 0)
            if queued:
                del reader.dead_letters[:queued]
        effects.report(self.topology, delivered)
        for kind, topic in effects.dead:
            self.metrics.dead_letters.labels(kind, topic).inc()
            key = (kind, topic)
            self.dead_letter_counts[key] = self.dead_letter_counts.get(key, 0) + 1
        for size in batches:
            self.metrics.batch_size.observe(size)
        return True

    def abort(self) -> None:
        """Abort the open transaction, if any, and forget all it holds."""
        if self.checkpoint is not None:
            self.checkpoint.abort(self._outcome)
        self._reset()
        self._letters = {}

    def _outcome(self, outcome: str) -> None:
        if outcome == "committed":
            self.commits += 1
        else:
            self.aborts += 1
        self.metrics.transactions.labels(outcome).inc()

    def _reset(self) -> None:
        self.state = TransactionState.IDLE
        self.checkpoint = None
        self.kept.clear()
        self.events = 0
        self.effects = Effects()
        self.batches = []
