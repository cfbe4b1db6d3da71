"""Any :class:`~streams.runtime.topology.Topology`, run in-process with no broker.

:class:`TopologyDriver` runs the runner's own loop (:class:`~streams.runtime.loop.StreamLoop`:
intake, process, outputs and local loopback, changelog, checkpoint, punctuation, the failure
rules) over an :class:`~streams.runtime.memory_log.InMemoryBroker`, one owner of every
partition. It is that loop's in-memory :class:`~streams.runtime.transport.Transport`: it swaps the
consumer and the producer, never the topology, the stores, the merge, the loop or the
dead-letter rules.

* **Intake and order** (:class:`~streams.runtime.memory_consumer.InMemoryConsumer`): each
  partition number is a :class:`~streams.runtime.task.PartitionTask` released through the same
  :meth:`~streams.runtime.task.PartitionTask.release` rule as the runner. A source is fetched
  to its end on every turn and is then *caught up*, unless the test holds it
  (:meth:`~TopologyDriver.hold`: records stay on the broker and the merge waits for them, it
  knows they exist) or hides its end (:meth:`~TopologyDriver.hide_end`: records are fetched but
  the end is unknown, so the merge waits up to ``max_idle_ms`` of the clock), or flow control
  paused it. An unsynchronized topology takes records in the order they were appended.
* **Transactions** (:class:`~streams.runtime.memory_transaction.MemoryTransaction`): a
  transaction's outputs (encoded with the codec) and changelog records reach the broker only at
  its commit, with the consumed offsets; it commits when due, as the runner's
  (``batch_max_events``, ``commit_interval_ms`` of the clock), and the broker aborts one open
  longer than ``transaction_timeout_ms``. Failures take the runner's paths: a
  :class:`~streams.errors.TransientError` aborts, rewinds (every partition restored from the
  committed changelog, reading resumed at the committed offsets) and is retried, without the
  runner's back-off and at most :data:`MAX_TRANSIENT_RETRIES` times in a row; a commit the
  broker refuses is aborted and redone; any other exception aborts and propagates — the process
  is dead, and the next :meth:`~TopologyDriver.run` is its restart (it restores and redoes the
  batch). :meth:`~TopologyDriver.fail`, :meth:`~TopologyDriver.fail_produce` and
  :meth:`~TopologyDriver.fail_commit` inject failures.
* **Internal topics**: with ``local_loopback`` (on by default, as in production) what an input
  writes to an internal source topic is processed at once, in the same transaction; without it
  the record is committed to the broker and read back, as from Kafka.
* **Global tables**: read to their end before the first input, then polled once per turn.
* **Restore**: a driver made on another's broker (``broker=``) restores each partition from the
  changelog and resumes from the committed offsets: a restarted process.
* **Clock**: :class:`ManualClock` moves only by :meth:`~TopologyDriver.advance`; it is the merge's
  wall clock, the commit cadence, the punctuation schedule, and (when the topology is built with
  it) the processor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

from streams.errors import TransientError
from streams.runtime.flow import FlowControl
from streams.runtime.loop import StreamLoop
from streams.runtime.memory_consumer import Fetch, InMemoryConsumer
from streams.runtime.memory_log import InMemoryBroker, LogRecord
from streams.runtime.memory_transaction import Faults, MemoryTransaction
from streams.runtime.metrics import runtime_metrics
from streams.runtime.options import RuntimeOptions
from streams.runtime.records import Processed, RawInput
from streams.runtime.stores import open_store
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer
from streams.runtime.topology import Topology
from streams.runtime.transport import LetterSource, Transaction
from streams.serde.testing import SAMPLE_RECORDS
from streams.serde.wire import AvroCodec

DEFAULT_START_MS = 1_764_000_000_000
"""Where a :class:`ManualClock` starts by default (2025-11-24T16:00:00Z, the samples' time)."""

MAX_TRANSIENT_RETRIES = 5
"""Consecutive transient failures the driver retries before it lets the last one propagate
(the runner retries forever, with a back-off; a test must not hang)."""

DRIVER_METRICS = "consentinel_driver"
"""The prefix of the runtime series of every driver in a process (the services' stay clean)."""

__all__ = [
    "DEFAULT_START_MS",
    "MAX_TRANSIENT_RETRIES",
    "Fetch",
    "InjectedFailure",
    "ManualClock",
    "TopologyDriver",
    "sample_record",
]

T = TypeVar("T", bound=Topology)


class InjectedFailure(RuntimeError):
    """The exception :meth:`TopologyDriver.fail` raises by default (a crash inside a batch)."""


class ManualClock:
    """Epoch milliseconds that move only when told (call it to read it)."""

    def __init__(self, start_ms: int = DEFAULT_START_MS) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        """Return the current time."""
        return self.now_ms

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (never backwards) and return the new time."""
        if ms < 0:
            raise ValueError("the clock does not go backwards")
        self.now_ms += ms
        return self.now_ms


def sample_record(codec: AvroCodec, topic: str, **fields: Any) -> dict[str, Any]:
    """Return the sample record of ``topic``'s schema (:data:`SAMPLE_RECORDS`) with ``fields``.

    Raises ``KeyError`` for a field the record does not have, so a typo cannot pass silently.
    """
    record = dict(SAMPLE_RECORDS[codec.catalog.for_topic(topic).name])
    unknown = set(fields) - set(record)
    if unknown:
        raise KeyError(f"{topic} records have no field(s) {sorted(unknown)}")
    record.update(fields)
    return record


class TopologyDriver(Generic[T]):
    """Runs one topology over an in-memory broker, exactly once, with a manual clock."""

    def __init__(
        self,
        topology: T,
        codec: AvroCodec,
        *,
        partitions: int = 4,
        broker: InMemoryBroker | None = None,
        clock: ManualClock | None = None,
        options: RuntimeOptions | None = None,
        topic_partitions: Mapping[str, int] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.topology: T = topology
        self.codec = codec
        self.spec = topology.spec
        self.broker = broker or InMemoryBroker(partitions, topic_partitions)
        self.partitions = self.broker.partitions
        self.clock = clock or ManualClock()
        self.options = options = options or RuntimeOptions()
        self.state_dir = state_dir or options.state_dir or Path(".consentinel/state")
        self.group = self.spec.name
        self.tasks: dict[int, PartitionTask] = {}
        self.consumer = InMemoryConsumer(
            self.broker,
            topology,
            group=self.group,
            clock=self.clock,
            max_idle_ms=options.max_idle_ms,
        )
        self.fetch_modes = self.consumer.fetch_modes
        self.faults = Faults()
        """Failures injected at produce or commit time (:meth:`fail_produce`, ``fail_commit``)."""
        self.flow = FlowControl(self.consumer, options.pause_above, options.resume_below)
        self.loop = StreamLoop(
            topology,
            codec,
            self,
            self.tasks,
            options=options,
            metrics=runtime_metrics(DRIVER_METRICS),
            clock_ms=self.clock,
            monotonic_ms=self.clock,
        )
        self.loop.process = self._process
        self._failure: tuple[int, BaseException] | None = None
        self._crashed = False
        topology.bind(self.partitions)
        self.consumer.poll_tables()  # read to the end before any input, as the runner's catch_up
        for partition in range(self.partitions):
            self._restore(partition)

    @property
    def commits(self) -> int:
        """Transactions committed by this driver."""
        return self.loop.txn.commits

    @property
    def aborts(self) -> int:
        """Transactions aborted by this driver (and rewound)."""
        return self.loop.txn.aborts

    @property
    def dead_letters(self) -> dict[tuple[str, str], int]:
        """(error kind, source topic) → dead letters committed (the runner's counter)."""
        return self.loop.txn.dead_letter_counts

    # -- what a producer and an operator do -----------------------------------------------------
    def feed(
        self,
        topic: str,
        key: bytes | str | None,
        value: dict[str, Any] | bytes | None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> LogRecord:
        """Write one record to ``topic`` as a producer would; return it, offset and all.

        A dict is encoded with the topic's schema (Confluent wire format), bytes are written
        verbatim. ``partition`` defaults to the key's murmur2 partition, ``timestamp_ms`` (the
        broker's ``LogAppendTime``) to the clock. Nothing is processed until :meth:`run`.
        """
        raw_key = key.encode() if isinstance(key, str) else key
        payload = self.codec.encode(topic, value) if isinstance(value, dict) else value
        where = self.broker.partition_of(topic, raw_key) if partition is None else partition
        at = self.clock() if timestamp_ms is None else timestamp_ms
        return self.broker.append(topic, where, raw_key, payload, at, headers)

    def control(
        self, topic: str, key: bytes | str | None, value: dict[str, Any] | bytes | None
    ) -> LogRecord:
        """Write one record to a global table's topic; it is applied at the next turn."""
        if topic not in self.consumer.tables:
            raise ValueError(f"{topic} is not a global table of {self.spec.name}")
        return self.feed(topic, key, value)

    def hold(self, topic: str, partition: int | None = None) -> None:
        """Stop fetching ``topic`` (one partition or all): its records wait on the broker."""
        self._set_fetch(topic, partition, Fetch.HELD)

    def hide_end(self, topic: str, partition: int | None = None) -> None:
        """Fetch ``topic`` but never report its end (the merge waits up to its idle limit)."""
        self._set_fetch(topic, partition, Fetch.END_UNKNOWN)

    def release(self, topic: str, partition: int | None = None) -> None:
        """Fetch ``topic`` normally again (undo :meth:`hold` and :meth:`hide_end`)."""
        self._set_fetch(topic, partition, Fetch.LIVE)

    def _set_fetch(self, topic: str, partition: int | None, mode: Fetch) -> None:
        if topic not in self.spec.sources:
            raise ValueError(f"{topic} is not a source of {self.spec.name}")
        if topic in self.spec.internal and self.options.local_loopback and mode is not Fetch.LIVE:
            raise ValueError(
                f"{topic} never reaches the broker here (local_loopback): hold it with"
                " RuntimeOptions(local_loopback=False), as when another process owns it"
            )
        numbers = range(self.partitions) if partition is None else (partition,)
        self.consumer.set_fetch(topic, numbers, mode)

    def fail(self, after: int = 0, error: BaseException | None = None) -> None:
        """Make the input that comes ``after`` more inputs raise ``error`` inside its batch.

        Default :class:`InjectedFailure`; a :class:`~streams.errors.TransientError` is retried
        by the loop, as the runner retries it. One shot.
        """
        self._failure = (after, error or InjectedFailure(f"injected failure after {after}"))

    def fail_produce(self, after: int = 0, error: BaseException | None = None) -> None:
        """Make the record produced ``after`` more records from now fail (output or changelog).

        Default :class:`InjectedFailure` (the process ends, as on a producer error the runner
        cannot recover from); a :class:`~streams.errors.TransientError` is retried. One shot.
        """
        self.faults.produce_after = after
        self.faults.produce_error = error or InjectedFailure(f"produce fails after {after}")

    def fail_commit(self, error: BaseException | None = None) -> None:
        """Make the next commit fail: refused by the broker, or (``error``) raise ``error``.

        Refused: the transaction is aborted and redone from the last commit, as the runner does
        on an error that requires an abort. With ``error`` (e.g.
        :class:`~streams.runtime.checkpoint.RuntimeFatalError`) the process ends. One shot.
        """
        if error is None:
            self.faults.commit_aborts = True
        else:
            self.faults.commit_error = error

    # -- running --------------------------------------------------------------------------------
    def run(self, max_turns: int | None = None) -> int:
        """Take turns until one does nothing (or ``max_turns``); return the commits made.

        A turn is the runner's loop iteration (:meth:`~streams.runtime.loop.StreamLoop.turn`):
        apply new global-table records, fetch, release what the open transaction still takes,
        punctuate if due, process, and commit when due; then flow control. The clock does not
        move while running, so with ``commit_interval_ms`` a transaction may stay open until
        :meth:`advance`. After an exception the process is dead: the next call restarts it.
        """
        if self._crashed:
            self._crashed = False
            self.rewind()
        before = self.commits
        turns = 0
        while max_turns is None or turns < max_turns:
            turns += 1
            try:
                worked = self.loop.turn()
            except BaseException:
                self.loop.txn.abort()  # as the runner's exit: nothing it held shows
                self._crashed = True
                raise
            self.flow.update(self.tasks, self.physical, self.consumer.cross)
            if not worked:
                break
        return self.commits - before

    def advance(self, ms: int) -> int:
        """Move the clock ``ms`` forward, then :meth:`run`; return the commits made.

        Punctuation becomes due every ``punctuate_interval_s`` of the clock, an open transaction
        after ``commit_interval_ms``, and a source whose end is unknown stops holding the merge
        after ``max_idle_ms``.
        """
        self.clock.advance(ms)
        return self.run()

    def _process(self, raw: RawInput, state: Any) -> Processed:
        if self._failure is not None:
            after, error = self._failure
            if after <= 0:
                self._failure = None
                raise error
            self._failure = (after - 1, error)
        return self.topology.process(raw, state)

    # -- the loop's transport -------------------------------------------------------------------
    @property
    def letter_sources(self) -> list[LetterSource]:
        """The in-memory consumer, which keeps the global tables' dead letters."""
        return [self.consumer]

    def fetch(self, budget: int, wait_s: float) -> list[RawInput]:
        """Apply the global tables' new records, then fetch up to ``budget`` inputs (no wait)."""
        self.consumer.poll_tables()
        return self.consumer.fetch(self.tasks, budget)

    def sources_behind(self, partition: int) -> bool:
        """Whether a source of ``partition`` has records the in-memory consumer holds back."""
        return self.consumer.sources_behind(self.tasks, partition)

    def begin(self) -> Transaction:
        """Begin a transaction on the in-memory broker."""
        return MemoryTransaction(
            self.broker,
            self.group,
            self.clock,
            timeout_ms=self.options.transaction_timeout_ms,
            faults=self.faults,
        )

    def group_metadata(self) -> Any:
        """Return the group whose offsets a commit moves."""
        return self.group

    def rewind(self) -> None:
        """Forget uncommitted work: restore every partition again, read from the commits."""
        for partition in sorted(self.tasks):
            self.tasks.pop(partition).state.close()
            self.topology.forget(partition)
            self._restore(partition)
        self.consumer.clear()

    def back_off(self, exc: TransientError, failures: int) -> None:
        """Retry at once (no sleeping in tests); give up after too many failures in a row."""
        if failures > MAX_TRANSIENT_RETRIES:
            raise exc

    def physical(self, logical: str) -> str:
        """Topics have their logical names on the in-memory broker."""
        return logical

    # -- state ----------------------------------------------------------------------------------
    def _restore(self, partition: int) -> int:
        store = open_store(self.options.state_store, self.state_dir / self.spec.name, partition)
        state = self.topology.open_state(partition, store)
        records = [(r.key or b"", r.value) for r in self.broker.log(self.spec.changelog, partition)]
        if records:
            state.restore_many(records)
        merge: PartitionSynchronizer[RawInput] = PartitionSynchronizer(
            self.consumer.merged, max_idle_ms=self.options.max_idle_ms
        )
        self.tasks[partition] = PartitionTask(partition, state, merge)
        self.consumer.seek_committed(partition)
        return len(records)

    def close(self) -> None:
        """Release every partition's store (the broker and its records stay)."""
        for task in self.tasks.values():
            task.state.close()
        self.tasks.clear()

    # -- what readers see -----------------------------------------------------------------------
    def records(self, topic: str, start: int = 0) -> list[LogRecord]:
        """Return the committed records of ``topic`` in append order, from the ``start``-th."""
        return self.broker.records(topic, start)

    def outputs(self, topic: str, partition: int | None = None) -> list[dict[str, Any]]:
        """Return the committed records of an Avro topic, decoded, in append order."""
        return [
            self.codec.decode(topic, record.value)
            for record in self.broker.records(topic)
            if partition is None or record.partition == partition
        ]

    def changelog(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Return the committed changelog records of ``partition``, oldest first."""
        return [(r.key or b"", r.value) for r in self.broker.log(self.spec.changelog, partition)]
