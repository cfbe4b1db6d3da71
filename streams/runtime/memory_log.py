"""An in-memory stand-in for the broker's logs, for the in-process topology driver.

:class:`~streams.runtime.testing.TopologyDriver` reads from and commits to it.
:class:`InMemoryBroker` keeps every topic partition as an append-only list of
:class:`LogRecord` (offsets from 0, never compacted) and each consumer group's committed
offsets. It holds only *committed* records: a transaction
(:class:`~streams.runtime.memory_transaction.MemoryTransaction`) appends its outputs and
changelog records at its commit, so whatever is here is what a ``read_committed`` reader sees.
It outlives a driver, so a new driver (a restarted process) can restore from the changelog and
resume from the committed offsets of the one before it; several drivers may share it (a gate
and a detector, the detector reading the gate's decisions). Offsets are never reused:
:meth:`InMemoryBroker.compact` (as log compaction) and :meth:`InMemoryBroker.delete_records`
(as retention) drop records, and readers read by offset (:meth:`InMemoryBroker.read`).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streams.core.partitioning import partition_for


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One committed record: where it sits, its broker timestamp, key and value bytes.

    ``seq`` orders every record of the broker by the time it was appended (the order in which
    an in-process consumer that reads everything sees records of different partitions).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] | None
    seq: int


class InMemoryBroker:
    """Topic partitions as lists and committed group offsets, in one process.

    Every topic has ``partitions`` partitions unless ``topic_partitions`` names another count
    (e.g. ``governance.controls``: 1). Topics come into being on first use.
    """

    def __init__(self, partitions: int, topic_partitions: Mapping[str, int] | None = None) -> None:
        if partitions < 1:
            raise ValueError("a topic has at least one partition")
        self.partitions = partitions
        self.topic_partitions = dict(topic_partitions or {})
        self._logs: dict[tuple[str, int], list[LogRecord]] = {}
        self._ends: dict[tuple[str, int], int] = {}
        self._by_topic: dict[str, list[LogRecord]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._seq = itertools.count()

    def partitions_of(self, topic: str) -> int:
        """Return the partition count of ``topic``."""
        return self.topic_partitions.get(topic, self.partitions)

    def partition_of(self, topic: str, key: bytes | None) -> int:
        """Return where the default partitioner puts ``key`` (murmur2; a null key goes to 0)."""
        count = self.partitions_of(topic)
        return 0 if key is None or count == 1 else partition_for(key, count)

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> LogRecord:
        """Append one record (committed at once) and return it with its offset."""
        if not 0 <= partition < self.partitions_of(topic):
            raise ValueError(
                f"{topic} has {self.partitions_of(topic)} partition(s), not a partition {partition}"
            )
        log = self._logs.setdefault((topic, partition), [])
        offset = self._ends.get((topic, partition), 0)
        self._ends[(topic, partition)] = offset + 1
        record = LogRecord(
            topic,
            partition,
            offset,
            timestamp_ms,
            key,
            value,
            tuple(headers) if headers else None,
            next(self._seq),
        )
        log.append(record)
        self._by_topic.setdefault(topic, []).append(record)
        return record

    def log(self, topic: str, partition: int) -> list[LogRecord]:
        """Return the records of one topic partition in offset order (the live list: read only)."""
        return self._logs.get((topic, partition), [])

    def read(self, topic: str, partition: int, position: int) -> list[LogRecord]:
        """Return the records of one topic partition at or after offset ``position``."""
        log = self._logs.get((topic, partition), [])
        if not log or log[-1].offset < position:
            return []
        if log[0].offset >= position:
            return log[:]
        return log[bisect.bisect_left(log, position, key=lambda record: record.offset) :]

    def end(self, topic: str, partition: int) -> int:
        """Return the offset the next record of the partition gets (its high watermark)."""
        return self._ends.get((topic, partition), 0)

    def compact(self, topics: Iterable[str]) -> None:
        """Keep only the last record of each key (dropping keys whose last one is a tombstone)."""
        for topic in topics:
            for (name, partition), log in list(self._logs.items()):
                if name != topic:
                    continue
                last = {record.key: record for record in log}
                kept = sorted(
                    (r for r in last.values() if r.value is not None), key=lambda r: r.offset
                )
                self._logs[(name, partition)] = kept
            self._reindex(topic)

    def delete_records(self, topics: Iterable[str]) -> None:
        """Drop every record of ``topics`` written so far (ends and offsets stay)."""
        for topic in topics:
            for key in self._logs:
                if key[0] == topic:
                    self._logs[key] = []
            self._reindex(topic)

    def _reindex(self, topic: str) -> None:
        kept = [r for (name, _), log in self._logs.items() if name == topic for r in log]
        self._by_topic[topic] = sorted(kept, key=lambda record: record.seq)

    def records(self, topic: str, start: int = 0) -> list[LogRecord]:
        """Return the kept records of ``topic`` (all partitions) in append order, from ``start``."""
        return self._by_topic.get(topic, [])[start:]

    def committed(self, group: str, topic: str, partition: int) -> int:
        """Return ``group``'s committed position on a partition (0: from the beginning)."""
        return self._committed.get((group, topic, partition), 0)

    def commit(self, group: str, positions: Mapping[tuple[str, int], int]) -> None:
        """Set ``group``'s committed positions (offset after the last processed record)."""
        for (topic, partition), offset in positions.items():
            self._committed[(group, topic, partition)] = offset
