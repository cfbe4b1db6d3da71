"""Flow control: pause a source partition whose merge buffer is full, resume it when drained.

The event-time merge holds records of fast sources while it waits for slow ones; without a
bound, a backlog on one topic would fill memory. A source partition is paused above
``pause_above`` buffered records and resumed below ``resume_below``, so small batches are never
starved and memory stays bounded. The Kafka runner pauses its consumer; the in-process driver
pauses its in-memory one, by the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from confluent_kafka import TopicPartition

from streams.runtime.crossmerge import CrossPartitionMerge, split_stream
from streams.runtime.task import PartitionTask


class Pausable(Protocol):
    """A consumer whose partitions can be paused and resumed."""

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop fetching ``partitions``."""

    def resume(self, partitions: list[TopicPartition]) -> None:
        """Fetch ``partitions`` again."""


class FlowControl:
    """Pauses and resumes source partitions of one consumer by buffered record count."""

    def __init__(self, consumer: Pausable, pause_above: int, resume_below: int) -> None:
        self.consumer = consumer
        self.pause_above = pause_above
        self.resume_below = resume_below

    def update(
        self,
        tasks: Mapping[int, PartitionTask],
        physical: Callable[[str], str],
        cross: CrossPartitionMerge | None = None,
    ) -> None:
        """Pause or resume each task's sources by how many of their records are buffered.

        ``cross``: the streams of the cross-partition merge too (``merge_partitions``).
        """
        for partition, task in tasks.items():

            def where(topic: str, partition: int = partition) -> TopicPartition:
                return TopicPartition(physical(topic), partition)

            self.update_task(task, where)
        if cross is not None:

            def where_stream(stream: str) -> TopicPartition:
                topic, partition = split_stream(stream)
                return TopicPartition(physical(topic), partition)

            self.update_task(cross.task, where_stream)

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
