"""A stop (SIGTERM) while a partition's restore waits for an unreachable cluster ends at once.

In a fault run a gate stuck restoring (the cluster gone again) ignored SIGTERM for over 60 s:
the changelog read waited out its 300 s timeout before it looked at the stop.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.errors import TransientError
from streams.runtime.read_to_end import read_to_end
from tests.unit.test_runtime_start_up import SlowCoordinatorProducer
from tests.unit.test_runtime_wedged_producer import quiet_runner


class EndlessConsumer:
    """A partition with records it never delivers (the leader is gone)."""

    def __init__(self) -> None:
        self.consumes = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, 10

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.consumes += 1
        return []


def test_a_cancelled_read_stops_waiting_for_the_end() -> None:
    consumer = EndlessConsumer()
    with pytest.raises(TransientError, match="stopped while reading the changelog"):
        read_to_end(
            consumer,  # type: ignore[arg-type]
            [TopicPartition("changelog", 0, 0)],
            lambda records: None,
            timeout_s=300,
            what="the changelog",
            cancelled=lambda: consumer.consumes >= 4,
        )
    assert consumer.consumes == 4, "looked at the stop on every turn of the wait"


def test_a_stop_during_a_restore_ends_the_retries_without_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = quiet_runner(
        monkeypatch, lambda: SlowCoordinatorProducer(timeouts=0), "test_runtime_stop_restoring"
    )
    attempts: list[int] = []

    def restore(partition: int) -> int:
        attempts.append(partition)
        if len(attempts) == 2:
            runner.stop()  # SIGTERM arrives while the second attempt waits
        raise TransientError("could not read the changelog to its end")

    monkeypatch.setattr(runner.assignment, "restore", restore)
    runner._restore_retrying(3)  # returns: no error, the partition not taken
    assert attempts == [3, 3]
    assert 3 not in runner.tasks
