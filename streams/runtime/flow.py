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

            def where(topic: str, partition: int = partition) -> TopicPartition:
                return TopicPartition(physical(topic), partition)

            self.update_task(task, where)

    def update_task(self, task: PartitionTask, where: Callable[[str], TopicPartition]) -> None:
        """Pause or resume the streams of one merge; ``where`` names a stream's partition."""
        for stream in task.merge.streams:
            pending = task.merge.pending(stream)
            if pending > self.pause_above and stream not in task.paused:
                self.consumer.pause([where(stream)])
                task.paused.add(stream)
            elif pending < self.resume_below and stream in task.paused:
                self.consumer.resume([where(stream)])
                task.paused.discard(stream)
