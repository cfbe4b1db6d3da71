"""``read_to_end`` with a ``stop_at`` bound (a report's ``--until``), on a fake consumer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from streams.errors import AuthorizationError
from streams.runtime.read_to_end import read_to_end


@dataclass
class FakeMessage:
    """Just what read_to_end looks at."""

    _topic: str
    _partition: int
    _offset: int

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class FakeConsumer:
    """Two partitions of ten records each; hands out everything from the assigned offsets."""

    def __init__(self) -> None:
        self.queue: list[FakeMessage] = []
        self.paused: list[tuple[str, int]] = []

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 10

    def assign(self, starts: list[TopicPartition]) -> None:
        for tp in starts:
            self.queue += [FakeMessage(tp.topic, tp.partition, o) for o in range(tp.offset, 10)]

    def consume(self, num: int, timeout: float) -> list[Any]:
        taken, self.queue = self.queue[:num], self.queue[num:]
        return taken

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in partitions]


def test_stop_at_bounds_the_read_and_pauses_finished_partitions() -> None:
    consumer = FakeConsumer()
    seen: list[tuple[int | None, int | None]] = []
    count = read_to_end(
        consumer,  # type: ignore[arg-type]
        [TopicPartition("t", 0, 2), TopicPartition("t", 1, 0)],
        lambda batch: seen.extend((m.partition(), m.offset()) for m in batch),
        timeout_s=5,
        what="t",
        stop_at={("t", 0): 5, ("t", 1): 0},
    )
    assert seen == [(0, 2), (0, 3), (0, 4)]  # nothing at or past the bound
    assert count == 3
    assert set(consumer.paused) == {("t", 0), ("t", 1)}


def test_without_stop_at_every_record_up_to_the_high_watermark() -> None:
    consumer = FakeConsumer()
    seen: list[tuple[int | None, int | None]] = []
    read_to_end(
        consumer,  # type: ignore[arg-type]
        [TopicPartition("t", 0, 7)],
        lambda batch: seen.extend((m.partition(), m.offset()) for m in batch),
        timeout_s=5,
        what="t",
    )
    assert seen == [(0, 7), (0, 8), (0, 9)]
    assert consumer.paused == []


class RefusedMessage(FakeMessage):
    """The consumer error a fetch the principal may not make returns."""

    def error(self) -> Any:
        return KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)


class RefusingConsumer(FakeConsumer):
    """A topic this principal may describe (it writes it) but not read."""

    fetches = 0

    def consume(self, num: int, timeout: float) -> list[Any]:
        self.fetches += 1
        return [RefusedMessage("t", 0, 0)]


def test_a_refused_read_fails_at_once_naming_the_acl() -> None:
    consumer = RefusingConsumer()
    with pytest.raises(AuthorizationError, match="acls apply") as refused:
        read_to_end(
            consumer,  # type: ignore[arg-type]
            [TopicPartition("t", 0, 0)],
            lambda batch: None,
            timeout_s=60,
            what="governance.controls",
        )
    assert "governance.controls" in str(refused.value)
    assert consumer.fetches == 1  # not retried until the timeout: no retry cures it
