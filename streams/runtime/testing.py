"""Any :class:`~streams.runtime.topology.Topology`, run in-process with no broker.

:class:`TopologyDriver` has the semantics of :class:`~streams.runtime.runner.StreamRunner` over an
:class:`~streams.runtime.memory_log.InMemoryBroker`, one owner of every partition:

* **Intake and order** (:class:`~streams.runtime.memory_consumer.InMemoryConsumer`): each
  partition number is a :class:`~streams.runtime.task.PartitionTask` released through the same
  :meth:`~streams.runtime.task.PartitionTask.release` rule as the runner. A source is fetched
  to its end on every turn and is then *caught up*, unless the test holds it
  (:meth:`~TopologyDriver.hold`: records stay on the broker and the merge waits for them, it
  knows they exist) or hides its end (:meth:`~TopologyDriver.hide_end`: records are fetched but
  the end is unknown, so the merge waits up to ``max_idle_ms`` of the clock). An
  unsynchronized topology takes records in the order they were appended.
* **Transactions**: a batch's outputs (encoded with the codec, as the runner encodes them) and
  changelog records reach the broker only at its commit, with the consumed offsets. An exception
  inside a batch drops all of them and rewinds: every partition's state is restored from the
  committed changelog and reading resumes at the committed offsets. A
  :class:`~streams.errors.TransientError` is then retried (as the runner retries it, without the
  back-off); any other exception propagates, and the next :meth:`~TopologyDriver.run` redoes the
  batch. :meth:`~TopologyDriver.fail` injects such an exception.
* **Internal topics**: what a batch writes to an internal topic that is also a source is read
  back as input of that partition once the batch is committed, as from the broker.
* **Global tables**: read to their end before the first input, then polled once per turn.
* **Restore**: a driver made on another's broker (``broker=``) restores each partition from the
  changelog and resumes from the committed offsets: a restarted process.
* **Clock**: :class:`ManualClock` moves only by :meth:`~TopologyDriver.advance`; it is the merge's
  wall clock, the punctuation schedule, and (when the topology is built with it) the processor's.

Nothing here is a mock of Kafka's client: the driver replaces the consumer and producer, not the
topology, the stores, the merge or the dead-letter rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from streams.errors import TransientError
from streams.runtime.dead_letters import oversize_input, oversize_output
from streams.runtime.memory_consumer import Fetch, InMemoryConsumer
from streams.runtime.memory_log import InMemoryBroker, LogRecord
from streams.runtime.options import RuntimeOptions
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.stores import open_store
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer
from streams.runtime.topology import Topology
from streams.runtime.transaction import Effects
from streams.serde.testing import SAMPLE_RECORDS
from streams.serde.wire import AvroCodec

DEFAULT_START_MS = 1_764_000_000_000
"""Where a :class:`ManualClock` starts by default (2025-11-24T16:00:00Z, the samples' time)."""

MAX_TRANSIENT_RETRIES = 5
"""Consecutive transient failures the driver retries before it lets the last one propagate
(the runner retries forever, with a back-off; a test must not hang)."""

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
        self.options = options or RuntimeOptions()
        self.state_dir = state_dir or self.options.state_dir or Path(".consentinel/state")
        self.group = self.spec.name
        self.tasks: dict[int, PartitionTask] = {}
        self.consumer = InMemoryConsumer(
            self.broker,
            topology,
            group=self.group,
            batch_max_events=self.options.batch_max_events,
            clock=self.clock,
            max_idle_ms=self.options.max_idle_ms,
        )
        self.fetch_modes = self.consumer.fetch_modes
        self.commits = 0
        """Transactions committed by this driver."""
        self.aborts = 0
        """Transactions aborted by this driver (and rewound)."""
        self.dead_letters: dict[tuple[str, str], int] = {}
        """(error kind, source topic) → dead letters committed (the runner's counter)."""
        self._failure: tuple[int, BaseException] | None = None
        self._next_punctuation_ms = self.clock()
        topology.bind(self.partitions)
        self.consumer.poll_tables()  # read to the end before any input, as the runner's catch_up
        for partition in range(self.partitions):
            self._restore(partition)

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
        numbers = range(self.partitions) if partition is None else (partition,)
        self.consumer.set_fetch(topic, numbers, mode)

    def fail(self, after: int = 0, error: BaseException | None = None) -> None:
        """Make the input that comes ``after`` more inputs raise ``error`` inside its batch.

        Default :class:`InjectedFailure`; a :class:`~streams.errors.TransientError` is retried
        by the driver itself, as the runner retries it. One shot.
        """
        self._failure = (after, error or InjectedFailure(f"injected failure after {after}"))

    # -- running --------------------------------------------------------------------------------
    def run(self, max_turns: int | None = None) -> int:
        """Take turns until one does nothing (or ``max_turns``); return the commits made.

        A turn is the runner's loop iteration: apply new global-table records, fetch, release
        up to ``batch_max_events`` inputs, punctuate if due, and process and commit them in one
        transaction. The clock does not move while running.
        """
        before = self.commits
        turns = 0
        retries = 0
        while max_turns is None or turns < max_turns:
            turns += 1
            try:
                if not self._turn():
                    break
                retries = 0
            except TransientError:
                retries += 1
                if retries > MAX_TRANSIENT_RETRIES:
                    raise
        return self.commits - before

    def advance(self, ms: int) -> int:
        """Move the clock ``ms`` forward, then :meth:`run`; return the commits made.

        Punctuation becomes due every ``punctuate_interval_s`` of the clock, and a source whose
        end is unknown stops holding the merge after ``max_idle_ms``.
        """
        self.clock.advance(ms)
        return self.run()

    def _turn(self) -> bool:
        self.consumer.poll_tables()
        batch = self.consumer.fetch(self.tasks)
        letters = list(self.consumer.table_letters)  # kept until a commit has written them
        extra = list(letters)
        now = self.clock()
        if now >= self._next_punctuation_ms:
            self._next_punctuation_ms = now + int(self.options.punctuate_interval_s * 1000)
            for partition, task in self.tasks.items():
                extra += self.topology.punctuate(partition, task.state, now)
        if not batch and not extra:
            return False
        self._transact(batch, extra)
        del self.consumer.table_letters[: len(letters)]
        return True

    # -- the transaction ------------------------------------------------------------------------
    def _transact(self, batch: Sequence[RawInput], extra: Sequence[Output]) -> None:
        pending: list[_Pending] = []
        effects = Effects()
        try:
            for raw in batch:
                processed = self._process(raw)
                for output in processed.outputs:
                    if not self._write(pending, output, raw):
                        effects.output_too_large(raw.topic)
                effects.note(processed, raw.topic)
                effects.offsets[(raw.topic, raw.partition)] = raw.offset + 1
            for output in extra:
                self._write(pending, output, None)
            changes = [(p, task.state.take_changes()) for p, task in self.tasks.items()]
        except BaseException:
            self.aborts += 1
            self._rewind()
            raise
        delivered: dict[tuple[str, int], int] = {}
        for topic, partition, key, payload, headers, track in pending:
            record = self.broker.append(topic, partition, key, payload, self.clock(), headers)
            if track is not None:
                delivered[track] = max(record.offset, delivered.get(track, -1))
        for partition, records in changes:
            for key, value in records:
                self.broker.append(self.spec.changelog, partition, key, value, self.clock())
        self.broker.commit(self.group, effects.offsets)
        self.commits += 1
        effects.report(self.topology, delivered)
        for letter in effects.dead:
            self.dead_letters[letter] = self.dead_letters.get(letter, 0) + 1

    def _process(self, raw: RawInput) -> Processed:
        if self._failure is not None:
            after, error = self._failure
            if after <= 0:
                self._failure = None
                raise error
            self._failure = (after - 1, error)
        letter = oversize_input(raw, self.options.max_input_bytes, at_ms=self.clock())
        if letter is not None:
            return Processed([letter], dead_letter_kind="INPUT_TOO_LARGE")
        return self.topology.process(raw, self.tasks[raw.partition].state)

    def _write(
        self,
        pending: list[_Pending],
        output: Output,
        source: RawInput | None,
    ) -> bool:
        """Encode and queue one output, as the runner does; False when a dead letter replaced it."""
        value = output.value
        payload = value if isinstance(value, bytes) else self.codec.encode(output.topic, value)
        if source is not None:
            limit = self.options.max_output_bytes
            at = self.clock()
            letter = oversize_output(source, output.topic, len(payload), limit, at_ms=at)
            if letter is not None:
                assert isinstance(letter.value, dict)
                encoded = self.codec.encode(letter.topic, letter.value)
                pending.append((letter.topic, source.partition, letter.key, encoded, None, None))
                return False
        partition = output.partition
        if partition is None:
            partition = self.broker.partition_of(output.topic, output.key)
        # As the runner reports them: by the partition asked for (-1: the partitioner's choice).
        track = (output.topic, -1 if output.partition is None else output.partition)
        pending.append(
            (
                output.topic,
                partition,
                output.key,
                payload,
                output.headers,
                track if output.track else None,
            )
        )
        return True

    # -- state ----------------------------------------------------------------------------------
    def _rewind(self) -> None:
        """Forget uncommitted work: restore every partition again, read from the commits."""
        forget = getattr(self.topology, "forget", None)
        for partition in sorted(self.tasks):
            self.tasks.pop(partition).state.close()
            if forget is not None:
                forget(partition)
            self._restore(partition)
        self.consumer.clear()

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


_Pending = tuple[
    str, int, bytes | None, bytes, list[tuple[str, bytes]] | None, tuple[str, int] | None
]
"""An output queued in the open transaction: topic, partition, key, value, headers, and where
its offset is reported when the output is tracked (``Output.track``)."""
