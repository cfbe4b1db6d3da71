"""One event-time merge over the sources of every partition a process holds.

The gate's windows live inside one partition number, so its merge (:class:`PartitionTask`, one
per partition) orders the sources of that number. A topology whose windows span partitions
(it re-keys its input onto a repartition topic and counts there, as the detectors do) needs
more: a record of partition 3 an hour behind partition 0 must still be counted in its hour. A
topology asks for that with ``TopologySpec.merge_partitions``; its merged sources of all the
partitions assigned to the process then form one merge, released by the same rule
(:meth:`PartitionTask.release`: event-time order; a stream waits for another that lags; an idle
one holds nothing beyond ``max_idle_ms``), over streams named ``topic#partition``.

Each partition's records still leave in offset order, so committing the offset after the last
record processed per partition stays exact. The buffer is dropped whenever the assignment
changes or the work since the last commit is undone; the consumer reads those records again
from the committed offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from streams.runtime.records import RawInput
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer


def stream_name(topic: str, partition: int) -> str:
    """Return the merge's name of one source partition."""
    return f"{topic}#{partition}"


def split_stream(name: str) -> tuple[str, int]:
    """Return the (topic, partition) a :func:`stream_name` names."""
    topic, _, partition = name.rpartition("#")
    return topic, int(partition)


class CrossPartitionMerge:
    """The merged sources of a set of partitions, released as one stream in event-time order."""

    def __init__(self, sources: Sequence[str], *, max_idle_ms: int) -> None:
        self.sources = tuple(sources)
        self.max_idle_ms = max_idle_ms
        self.partitions: tuple[int, ...] = ()
        self.task = self._new(())

    def _new(self, partitions: Iterable[int]) -> PartitionTask:
        # ties break by source order first (as in one partition), then by partition number
        streams = [stream_name(t, p) for t in self.sources for p in partitions]
        merge: PartitionSynchronizer[RawInput] = PartitionSynchronizer(
            streams, max_idle_ms=self.max_idle_ms
        )
        return PartitionTask(-1, None, merge)

    def reset(self, partitions: Iterable[int]) -> None:
        """Merge ``partitions`` from now on, with nothing buffered (the consumer reads again)."""
        self.partitions = tuple(sorted(set(partitions)))
        self.task = self._new(self.partitions)

    def accept(self, raw: RawInput, event_time_ms: int) -> None:
        """Queue one consumed record of a merged source."""
        self.task.accept(raw, event_time_ms, stream=stream_name(raw.topic, raw.partition))

    def caught_up(self, topic: str, partition: int, end: int | None = None) -> None:
        """Record that the consumer reached the current end of one source partition."""
        name = stream_name(topic, partition)
        if name in self.task.merge.streams:
            self.task.caught_up(name, end)

    def pending(self) -> int:
        """Return how many records are buffered."""
        return self.task.merge.pending()

    def release(self, now_ms: int, high: Callable[[str, int], int]) -> Iterator[RawInput]:
        """Yield the buffered records that may be processed now, in event-time order.

        ``high(topic, partition)`` is a source partition's high watermark as last known (-1:
        unknown), as for :meth:`PartitionTask.release`.
        """
        return self.task.release(now_ms, lambda name: high(*split_stream(name)))
