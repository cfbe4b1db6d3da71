"""The release rule of :class:`~streams.runtime.task.PartitionTask` around caught-up sources."""

from __future__ import annotations

from streams.runtime.records import RawInput
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer

UPLOADS, REQUESTS = "uploads", "requests"


def task() -> PartitionTask:
    return PartitionTask(0, None, PartitionSynchronizer([UPLOADS, REQUESTS], max_idle_ms=200))


def raw(topic: str, offset: int) -> RawInput:
    return RawInput(topic, 0, offset, 0, b"k", b"v")


def test_a_caught_up_source_that_grew_holds_the_merge_until_its_record_is_delivered() -> None:
    t = task()
    t.caught_up(UPLOADS, 0)  # both empty at assignment: the consumer reported their ends
    t.caught_up(REQUESTS, 0)
    t.accept(raw(REQUESTS, 0), 2_000)
    ends = {UPLOADS: 1, REQUESTS: 1}  # an upload was appended, not delivered yet

    assert list(t.release(10_000, ends.__getitem__)) == []
    assert list(t.release(60_000, ends.__getitem__)) == []  # not an idle wait: it stays held

    t.accept(raw(UPLOADS, 0), 1_000)
    released = list(t.release(60_000, ends.__getitem__))
    released += t.release(60_000, ends.__getitem__)  # the upload source settles at its end
    assert [(r.topic, r.offset) for r in released] == [(UPLOADS, 0), (REQUESTS, 0)]


def test_a_caught_up_source_that_did_not_grow_does_not_hold_the_merge() -> None:
    t = task()
    t.caught_up(UPLOADS, 5)
    t.caught_up(REQUESTS, 0)
    t.accept(raw(REQUESTS, 0), 2_000)
    ends = {UPLOADS: 5, REQUESTS: 1}

    assert [(r.topic, r.offset) for r in t.release(10_000, ends.__getitem__)] == [(REQUESTS, 0)]


def test_the_end_of_partition_offset_is_the_position_when_nothing_was_read() -> None:
    t = task()
    t.caught_up(UPLOADS, 7)
    assert t.positions[UPLOADS] == 7
    t.accept(raw(UPLOADS, 7), 1_000)
    t.caught_up(UPLOADS, 3)  # an older report never moves the position back
    assert t.positions[UPLOADS] == 8
