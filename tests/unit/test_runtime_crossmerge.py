"""The runtime's merge over all partitions a process holds (TopologySpec.merge_partitions)."""

from __future__ import annotations

from streams.runtime.crossmerge import CrossPartitionMerge, split_stream, stream_name
from streams.runtime.records import RawInput


def raw(partition: int, offset: int) -> RawInput:
    return RawInput("decisions", partition, offset, 0, None, None)


def test_partitions_are_released_in_event_time_order_each_in_offset_order() -> None:
    merge = CrossPartitionMerge(["decisions"], max_idle_ms=200)
    merge.reset([0, 1])
    for offset, at in enumerate([10, 20, 30]):
        merge.accept(raw(0, offset), at)
    for offset, at in enumerate([15, 25]):
        merge.accept(raw(1, offset), at)
    merge.caught_up("decisions", 0)
    merge.caught_up("decisions", 1)
    released = [(r.partition, r.offset) for r in merge.release(0, lambda t, p: -1)]
    assert released == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]


def test_a_lagging_partition_holds_the_others_and_an_idle_one_does_not() -> None:
    merge = CrossPartitionMerge(["decisions"], max_idle_ms=200)
    merge.reset([0, 1, 2])
    merge.accept(raw(0, 0), 10)
    merge.caught_up("decisions", 0)
    merge.caught_up("decisions", 2)  # idle: at its end, nothing to come
    ends = {0: 1, 1: 5, 2: 0}  # partition 1 has 5 records the consumer has not delivered
    merge.caught_up("decisions", 1, end=0)
    assert list(merge.release(0, lambda t, p: ends[p])) == []
    assert list(merge.release(10_000, lambda t, p: ends[p])) == []  # however long it lags
    merge.accept(raw(1, 0), 5)
    assert [(r.partition, r.offset) for r in merge.release(10_000, lambda t, p: ends[p])] == [
        (1, 0)
    ]


def test_reset_drops_what_is_buffered() -> None:
    merge = CrossPartitionMerge(["decisions"], max_idle_ms=200)
    merge.reset([0])
    merge.accept(raw(0, 0), 10)
    merge.reset([0, 1])
    assert merge.pending() == 0
    assert split_stream(stream_name("a#b", 3)) == ("a#b", 3)
