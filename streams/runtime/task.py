"""One partition number of a topology, as the runtime holds it while the partition is assigned.

A :class:`PartitionTask` owns everything that belongs to that partition number: the
topology's state, the event-time merge buffer of its sources, how far each source has been read,
which sources are paused, and the merge's clock. It is dropped whole on revocation, so no
per-partition fact can outlive the assignment.

:meth:`PartitionTask.release` is the whole release rule of a synchronized topology (settle the
sources known to be at their end, then drain the merge on a clock that stands still while a
source lags), given only each source's high watermark: the Kafka runner and the in-process
:class:`~streams.runtime.testing.TopologyDriver` both release through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.runtime.records import RawInput
from streams.runtime.timesync import PartitionSynchronizer


@dataclass
class PartitionTask:
    """The runtime's view of one assigned partition number."""

    partition: int
    state: Any
    merge: PartitionSynchronizer[RawInput]
    positions: dict[str, int] = field(default_factory=dict)
    """Logical source → the offset after the last record accepted (absent: none yet)."""
    fetched: set[str] = field(default_factory=set)
    """Sources for which the consumer has reported a fetch (a record or the partition's end)."""
    unsettled: dict[str, int] = field(default_factory=dict)
    """Sources that got records since they were last known to be caught up → their position."""
    paused: set[str] = field(default_factory=set)
    merge_clock_ms: int | None = None
    merge_wall_ms: int | None = None
    kept: Any = None
    """The partition's :class:`~streams.runtime.kept_store.KeptStore` when its state is kept
    across restarts (written only after each commit), else None."""

    def accept(self, raw: RawInput, event_time_ms: int, stream: str | None = None) -> None:
        """Queue one consumed record for the merge (as ``stream``, by default its topic)."""
        name = raw.topic if stream is None else stream
        self.merge.add(name, event_time_ms, raw)
        self.positions[name] = raw.offset + 1
        self.unsettled[name] = raw.offset + 1
        self.fetched.add(name)

    def caught_up(self, topic: str, end: int | None = None) -> None:
        """Record that the consumer reached the current end of ``topic``'s partition.

        ``end`` is the offset the consumer reported that end at (its position there), if known.
        """
        if end is not None and end > self.positions.get(topic, -1):
            self.positions[topic] = end
        if topic in self.merge.streams:
            self.merge.mark_caught_up(topic)
        self.unsettled.pop(topic, None)
        self.fetched.add(topic)

    def unsettle(self, high: Callable[[str], int]) -> None:
        """Mark caught-up sources whose partition has grown past the position as behind.

        A source is caught up when the consumer reported its end; records appended after that
        (the high watermark of a later fetch is past the position) are not delivered yet, and
        the merge must not release later events of the other sources before them. Without
        this, a source that was empty at assignment stayed "caught up" until its first record
        was delivered, and a backlog written after start-up was released out of event-time
        order (requests decided before the uploads they follow).
        """
        for topic in self.merge.streams:
            if self.merge.pending(topic) or not self.merge.is_caught_up(topic):
                continue
            position = self.positions.get(topic)
            if position is not None and high(topic) > position:
                self.merge.mark_behind(topic)

    def clock(self, now_ms: int, lagging: bool) -> int:
        """Return the merge's clock: wall time that does not run while a source is lagging.

        The merge stops waiting for an empty source after its idle limit, so that a source with
        nothing in flight does not hold the others forever. But a source can also be empty
        because the consumer has not fetched what the broker has (flow control, a slow or first
        fetch): releasing then would decide requests before the uploads and consents they
        follow. As in Kafka Streams (KIP-695), the wait is not counted while a source is known
        (or, before its first fetch, not known not) to have records to come.
        """
        if self.merge_clock_ms is None or self.merge_wall_ms is None:
            self.merge_clock_ms, self.merge_wall_ms = now_ms, now_ms
        if not lagging:
            self.merge_clock_ms += max(now_ms - self.merge_wall_ms, 0)
        self.merge_wall_ms = now_ms
        return self.merge_clock_ms

    def settle(self, high: Callable[[str], int]) -> None:
        """Mark sources whose last accepted record was their partition's end as caught up.

        ``high(topic)`` is the source partition's high watermark as last known (-1: unknown).
        The consumer's end-of-partition event says the same, but only after one more fetch
        round trip; the high watermark that came with the last fetch says it at once.
        """
        for topic, position in list(self.unsettled.items()):
            if self.merge.pending(topic):
                continue
            if 0 <= high(topic) <= position:
                self.caught_up(topic)

    def lagging(self, high: Callable[[str], int]) -> bool:
        """Whether an empty source has (or, before its first fetch, may have) records to come."""
        for topic in self.merge.streams:
            if self.merge.pending(topic):
                continue
            if topic not in self.fetched:
                return True  # nothing fetched yet: its lag is unknown, so wait (KIP-695)
            position = self.positions.get(topic)
            if position is not None and high(topic) > position:
                return True
        return False

    def release(self, now_ms: int, high: Callable[[str], int]) -> Iterator[RawInput]:
        """Yield the accepted records that may be processed now, in event-time order.

        ``now_ms`` is the wall clock (the merge's idle limit counts on it, except while a source
        lags); ``high`` as in :meth:`settle`. Stop iterating early to leave the rest queued.
        """
        if self.unsettled:
            self.settle(high)
        self.unsettle(high)
        for _, raw in self.merge.drain(self.clock(now_ms, self.lagging(high))):
            yield raw
