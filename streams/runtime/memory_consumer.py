"""The in-process driver's consumer: what it fetches from an in-memory broker, turn by turn.

It stands where the runner's Kafka consumer and :mod:`~streams.runtime.intake` stand. A source
partition is fetched to its end on every turn and is then *caught up*, unless it is held
(:attr:`Fetch.HELD`) or its end is hidden (:attr:`Fetch.END_UNKNOWN`). A synchronized
topology's source records go through their partition's merge; records of internal topics come
first, in the order they were appended. An unsynchronized topology takes every record in the
order it was appended. A fetch takes at most the inputs the open transaction still takes. A
partition paused by flow control (:meth:`InMemoryConsumer.pause`) is not fetched, and its end is
known, as a held one. Global tables are read from the beginning of every partition, whatever
the assignment.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence

from confluent_kafka import TopicPartition

from streams.errors import TransientError
from streams.runtime.crossmerge import CrossPartitionMerge, split_stream
from streams.runtime.dead_letters import dead_letter
from streams.runtime.memory_log import InMemoryBroker, LogRecord
from streams.runtime.records import Output, RawInput
from streams.runtime.task import PartitionTask
from streams.runtime.topology import Topology


class Fetch(enum.Enum):
    """How the driver's consumer fetches one source partition."""

    LIVE = "live"
    """Everything on the broker is fetched each turn, then the source is at its end."""
    HELD = "held"
    """Nothing is fetched; the broker's end is known, so the merge waits (records to come)."""
    END_UNKNOWN = "end-unknown"
    """Records are fetched but the end is never reported: the merge's idle limit applies."""


class InMemoryConsumer:
    """One consumer group member that owns every partition of a topology's sources."""

    def __init__(
        self,
        broker: InMemoryBroker,
        topology: Topology,
        *,
        group: str,
        clock: Callable[[], int],
        max_idle_ms: int = 200,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.spec = topology.spec
        self.group = group
        self.clock = clock
        self.merged = [t for t in self.spec.sources if t not in self.spec.internal]
        """The sources the event-time merge orders (internal topics bypass it, as in the runner)."""
        self.tables = {table.topic: table for table in self.spec.global_tables}
        self.fetch_modes: dict[tuple[str, int], Fetch] = {}
        self.dead_letters: list[Output] = []
        """Dead letters of unreadable global-table records, until a commit has written them."""
        self.paused: set[tuple[str, int]] = set()
        """Source partitions paused by flow control."""
        self._fetched: dict[tuple[str, int], int] = {}
        self._unordered: list[RawInput] = []
        self._table_read: dict[tuple[str, int], int] = {}
        self.cross: CrossPartitionMerge | None = None
        """The one merge of every partition (``TopologySpec.merge_partitions``), as the runner's."""
        if self.spec.synchronized and self.spec.merge_partitions:
            self.cross = CrossPartitionMerge(self.merged, max_idle_ms=max_idle_ms)
            self.cross.reset(range(broker.partitions))

    def set_fetch(self, topic: str, partitions: Iterable[int], mode: Fetch) -> None:
        """Fetch ``topic``'s ``partitions`` as ``mode`` says from now on."""
        for number in partitions:
            self.fetch_modes[(topic, number)] = mode

    def seek_committed(self, partition: int) -> None:
        """Read ``partition`` of every source on from the group's committed offsets."""
        for topic in self.spec.sources:
            self._fetched[(topic, partition)] = self.broker.committed(self.group, topic, partition)

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop fetching ``partitions`` (flow control) until :meth:`resume`."""
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch ``partitions`` again."""
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def clear(self) -> None:
        """Drop every record fetched and not yet processed (after a seek, it is read again).

        Every paused partition is resumed: the merge buffers that paused them are gone.
        """
        self._unordered = []
        self.paused.clear()
        if self.cross is not None:
            self.cross.reset(self.cross.partitions)

    def fetch(self, tasks: Mapping[int, PartitionTask], budget: int) -> list[RawInput]:
        """Fetch, and return the inputs that may be processed now, in order.

        Records of internal topics (and of an unsynchronized topology, up to ``budget``) come
        in the order they were appended; merged ones follow while fewer than ``budget`` are
        taken.
        """
        if self.spec.synchronized:
            return self._fetch_merged(tasks, budget)
        return self._fetch_unordered(tasks, budget)

    def poll_tables(self) -> None:
        """Apply the global tables' new records (a letter replaces each unreadable one).

        A :class:`~streams.errors.TransientError` propagates, and the record is read again.
        """
        for topic, table in self.tables.items():
            for partition in range(self.broker.partitions_of(topic)):
                start = self._table_read.get((topic, partition), 0)
                records = self.broker.read(topic, partition, start)
                if records:
                    self._table_read[(topic, partition)] = records[-1].offset + 1
                for record in records:
                    raw = _raw(record)
                    try:
                        table.handler.apply(raw)
                    except TransientError:
                        self._table_read[(topic, partition)] = raw.offset
                        raise
                    except Exception as exc:
                        kind = getattr(exc, "error_kind", None)
                        if kind is None:
                            raise
                        table.handler.broken(raw, str(exc))
                        letter = dead_letter(raw, kind, str(exc), at_ms=self.clock(), partition=0)
                        self.dead_letters.append(letter)

    def sources_behind(self, tasks: Mapping[int, PartitionTask], partition: int) -> bool:
        """Whether a merged source of ``partition`` has records not fetched yet.

        The same judgement as the runner's :meth:`~streams.runtime.intake.Intake.sources_behind`.
        """
        task = tasks.get(partition)
        if task is None or not self.spec.synchronized:
            return False
        if self.cross is not None:

            def high(name: str) -> int:
                topic, number = split_stream(name)
                return self._high(number)(topic)

            return self.cross.task.lagging(high)
        return task.lagging(self._high(partition))

    def _high(self, partition: int) -> Callable[[str], int]:
        def high(topic: str) -> int:
            mode = self.fetch_modes.get((topic, partition), Fetch.LIVE)
            return -1 if mode is Fetch.END_UNKNOWN else self.broker.end(topic, partition)

        return high

    def _unread(self, topic: str, partition: int) -> list[LogRecord]:
        """Return what the consumer fetches now from one source partition (and take it)."""
        if self._held(topic, partition):
            return []
        records = self.broker.read(topic, partition, self._fetched.get((topic, partition), 0))
        if records:
            self._fetched[(topic, partition)] = records[-1].offset + 1
        return records

    def _arrivals(self, partitions: Iterable[int], topics: Sequence[str]) -> list[LogRecord]:
        """Fetch ``topics`` of ``partitions``; return their records in the order of appending."""
        fetched = [
            record
            for partition in partitions
            for topic in topics
            for record in self._unread(topic, partition)
        ]
        fetched.sort(key=lambda record: record.seq)
        return fetched

    def _held(self, topic: str, partition: int) -> bool:
        """Whether nothing of the partition is fetched now (held by the test, or paused)."""
        held = self.fetch_modes.get((topic, partition), Fetch.LIVE) is Fetch.HELD
        return held or (topic, partition) in self.paused

    def _live(self, topic: str, partition: int) -> bool:
        """Whether the partition's end is reported once it is fetched (held, paused: not)."""
        live = self.fetch_modes.get((topic, partition), Fetch.LIVE) is Fetch.LIVE
        return live and (topic, partition) not in self.paused

    def _fetch_merged(self, tasks: Mapping[int, PartitionTask], budget: int) -> list[RawInput]:
        now = self.clock()
        batch: list[RawInput] = []
        # internal topics as in the runner: in arrival order, before the merge
        for record in self._arrivals(tasks, self.spec.internal):
            raw = _raw(record)
            tasks[raw.partition].positions[raw.topic] = raw.offset + 1
            batch.append(raw)
        if self.cross is not None:
            return self._fetch_cross(tasks, self.cross, batch, budget)
        for partition, task in tasks.items():
            for topic in self.merged:
                for record in self._unread(topic, partition):
                    raw = _raw(record)
                    task.accept(raw, self.topology.event_time(raw))
                if self._live(topic, partition):
                    task.caught_up(topic)  # the consumer's end-of-partition event
        for task in tasks.values():
            if len(batch) >= budget:
                break
            for raw in task.release(now, self._high(task.partition)):
                batch.append(raw)
                if len(batch) >= budget:
                    break
        return batch

    def _fetch_cross(
        self,
        tasks: Mapping[int, PartitionTask],
        cross: CrossPartitionMerge,
        batch: list[RawInput],
        budget: int,
    ) -> list[RawInput]:
        """Release the merged sources of every partition through one merge, as the runner does."""
        for partition in tasks:
            for topic in self.merged:
                for record in self._unread(topic, partition):
                    raw = _raw(record)
                    tasks[partition].positions[raw.topic] = raw.offset + 1
                    cross.accept(raw, self.topology.event_time(raw))
                if self._live(topic, partition):
                    cross.caught_up(topic, partition)  # the consumer's end-of-partition event

        def high(topic: str, partition: int) -> int:
            return self._high(partition)(topic)

        if len(batch) >= budget:
            return batch
        for raw in cross.release(self.clock(), high):
            batch.append(raw)
            if len(batch) >= budget:
                break
        return batch

    def _fetch_unordered(self, tasks: Mapping[int, PartitionTask], budget: int) -> list[RawInput]:
        if len(self._unordered) < budget:
            fetched = self._arrivals(tasks, self.spec.sources)
            self._unordered += [_raw(record) for record in fetched]
        batch, self._unordered = self._unordered[:budget], self._unordered[budget:]
        for raw in batch:
            tasks[raw.partition].positions[raw.topic] = raw.offset + 1
        return batch


def _raw(record: LogRecord) -> RawInput:
    return RawInput(
        record.topic, record.partition, record.offset, record.timestamp_ms, record.key, record.value
    )
