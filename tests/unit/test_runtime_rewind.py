"""After an abort the runner rewinds: what it forgets, it also stops holding back.

A source partition paused by flow control stays paused in librdkafka through a seek. Its task's
merge buffer, which paused it, is dropped with the task on a rewind, so nothing would resume it:
the partition would stall until the next rebalance.
"""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from streams.runtime import changelog
from tests.unit.offline_runner import offline_runner
from tests.unit.test_runtime_coassignment import Consumer, Producer, Topology, assignment


class PausingConsumer(Consumer):
    def __init__(self) -> None:
        self.resumed: list[tuple[str, int]] = []

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed += [(tp.topic, tp.partition) for tp in partitions]

    def assignment(self) -> list[TopicPartition]:
        return []

    def seek(self, partition: TopicPartition) -> None:
        pass


def test_a_rewind_resumes_the_partitions_paused_for_the_buffers_it_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = PausingConsumer()
    monkeypatch.setattr(changelog, "restore_partition", lambda *args, **kwargs: 0)
    runner = offline_runner(
        monkeypatch,
        Topology(),
        consumers=lambda: consumer,
        producers=Producer,
        metrics_prefix="test_runtime_rewind",
        topic_prefix="p.",
    )
    everything = {"uploads": range(2), "requests": range(2), "claims": range(2)}
    runner._on_assign(consumer, assignment({**everything, "verdicts": range(2)}))  # type: ignore[arg-type]
    runner.tasks[1].paused.add("uploads")  # its merge buffer was full

    runner.rewind()

    assert consumer.resumed == [("p.uploads", 1)]
    assert sorted(runner.tasks) == [0, 1] and not runner.tasks[1].paused
