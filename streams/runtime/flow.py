"""Flow control: pause a source partition whose merge buffer is full, resume it when drained.

The event-time merge holds records of fast sources while it waits for slow ones; without a
bound, a backlog on one topic would fill memory. A source partition is paused above
``pause_above`` buffered records and resumed below ``resume_below``, so small batches are never
starved and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, TopicPartition

from streams.runtime.task import PartitionTask


class FlowControl:
    """Pauses and resumes source partitions of one consumer by buffered record count."""

    def __init__(self, consumer: Consumer, pause_above: int, resume_below: int) -> None:
        self.consumer = consumer
        self.pause_above = pause_above
        self.resume_below = resume_below

    def update(self, tasks: Mapping[int, PartitionTask], physical: Callable[[str], str]) -> None:
        """Pause or resume each task's sources by how many of their records are buffered."""
        for partition, task in tasks.items():
            for topic in task.merge.streams:
                pending = task.merge.pending(topic)
                if pending > self.pause_above and topic not in task.paused:
                    self.consumer.pause([TopicPartition(physical(topic), partition)])
                    task.paused.add(topic)
                elif pending < self.resume_below and topic in task.paused:
                    self.consumer.resume([TopicPartition(physical(topic), partition)])
                    task.paused.discard(topic)
