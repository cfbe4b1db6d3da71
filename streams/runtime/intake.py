"""The runner's intake: what the consumer fetched, buffered per partition and released in batches.

As in quix-streams' internal consumer buffering, a fetched record of a synchronized topology's
source waits in its partition's merge (:class:`~streams.runtime.task.PartitionTask`) until the
release rule lets it out in event-time order; a record of an internal topic, or of any source
of an unsynchronized topology, is taken in arrival order, ahead of the merge. A record of a
partition not assigned here (revoked meanwhile) is dropped: its new owner reads it. A batch
holds at most the inputs the open transaction still takes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streams.runtime.checkpoint import ConsumerFencedError
from streams.runtime.crossmerge import CrossPartitionMerge, split_stream
from streams.runtime.records import RawInput
from streams.runtime.task import PartitionTask
from streams.runtime.topology import Topology

log = logging.getLogger(__name__)


class Intake:
    """The fetched records of a runner's assigned partitions that no transaction holds yet."""

    def __init__(
        self,
        consumer: Consumer,
        topology: Topology,
        tasks: Mapping[int, PartitionTask],
        *,
        physical: Callable[[str], str],
        logical: Mapping[str, str],
        unordered_topics: frozenset[str],
        max_idle_ms: int = 200,
    ) -> None:
        self.consumer = consumer
        self.topology = topology
        self.tasks = tasks
        self.synchronized = topology.spec.synchronized
        self._physical = physical
        self._logical = logical
        self._unordered_topics = unordered_topics
        self._unordered: list[RawInput] = []
        spec = topology.spec
        self.cross: CrossPartitionMerge | None = None
        """The one merge of all assigned partitions (``TopologySpec.merge_partitions``)."""
        if spec.synchronized and spec.merge_partitions:
            merged = [t for t in spec.sources if t not in unordered_topics]
            self.cross = CrossPartitionMerge(merged, max_idle_ms=max_idle_ms)

    def accept(self, messages: list[Message]) -> None:
        """Take fetched records (and end-of-partition events) into their partitions' buffers.

        Raises :class:`~streams.runtime.checkpoint.ConsumerFencedError` on a fatal consumer error:
        one whose code is ``_FATAL`` too, although ``error.fatal()`` is false on it (librdkafka
        hands a consumer's fatal error, such as a static member fenced by its
        ``group.instance.id``, as an event with that code; the consumer never fetches again).
        """
        tasks = self.tasks
        logical = self._logical
        unordered_topics = self._unordered_topics
        event_time = self.topology.event_time
        cross = self.cross
        for message in messages:
            error = message.error()
            partition = message.partition()
            task = tasks.get(partition) if partition is not None else None
            if error is not None:
                topic = logical.get(message.topic() or "", message.topic() or "")
                if error.code() == KafkaError._PARTITION_EOF:
                    if task is not None:
                        task.caught_up(topic, message.offset())
                        if cross is not None and partition is not None:
                            cross.caught_up(topic, partition, message.offset())
                    continue
                if error.fatal() or error.code() == KafkaError._FATAL:
                    raise ConsumerFencedError(
                        f"the consumer cannot consume any more: {error}",
                        hint="the runner rejoins the group with a new consumer and resumes"
                        " from the last commit; if that keeps failing, another process runs"
                        " with the same CONSENTINEL_INSTANCE_ID",
                    )
                log.warning("consumer error (librdkafka retries): %s", error)
                continue
            if task is None or partition is None:
                continue  # a record of a partition revoked in the meantime: its new owner takes it
            physical = message.topic() or ""
            topic = logical.get(physical, physical)
            raw = RawInput(
                topic,
                partition,
                message.offset() or 0,
                message.timestamp()[1],
                message.key(),
                message.value(),
            )
            if topic in unordered_topics:
                task.positions[topic] = raw.offset + 1
                self._unordered.append(raw)
                continue
            if cross is not None:
                task.positions[topic] = raw.offset + 1
                cross.accept(raw, event_time(raw))
                continue
            task.accept(raw, event_time(raw))

    def drain(self, budget: int) -> list[RawInput]:
        """Return the records that may be processed now, in order.

        Those taken in arrival order come first, all of them; merged records follow, while
        fewer than ``budget`` are taken.
        """
        unordered, self._unordered = self._unordered, []
        if not self.synchronized:
            return unordered
        now = int(time.time() * 1000)
        batch: list[RawInput] = unordered  # internal topics: in arrival order, before the merge
        if self.cross is not None:
            if len(batch) < budget:
                for raw in self.cross.release(now, self._high_of):
                    batch.append(raw)
                    if len(batch) >= budget:
                        break
            return batch
        for task in self.tasks.values():
            if len(batch) >= budget:
                break
            for raw in task.release(now, functools.partial(self._high, partition=task.partition)):
                batch.append(raw)
                if len(batch) >= budget:
                    break
        return batch

    def sources_behind(self, partition: int) -> bool:
        """Whether a merged source of ``partition`` has records still to come.

        That is: it is empty here while its partition's high watermark (as of the last fetch)
        is past the position, or nothing of it is fetched yet.
        """
        task = self.tasks.get(partition)
        if task is None or not self.synchronized:
            return False
        if self.cross is not None:
            return self.cross.task.lagging(lambda name: self._high_of(*split_stream(name)))
        return task.lagging(functools.partial(self._high, partition=partition))

    def clear(self) -> None:
        """Drop every record not processed yet (the consumer reads them again)."""
        self._unordered = []
        if self.cross is not None:
            paused = [self.where(stream) for stream in self.cross.task.paused]
            if paused:
                self.consumer.resume(paused)
            self.cross.reset(self.tasks)

    def restart(self, consumer: Consumer) -> None:
        """Start over on a new ``consumer`` with nothing buffered and nothing paused.

        For a runner that replaced a fenced consumer after giving up every partition.
        """
        self.consumer = consumer
        self._unordered = []
        if self.cross is not None:
            self.cross.reset(self.tasks)

    def keep_assigned(self) -> None:
        """Drop the records taken in arrival order of partitions no longer assigned.

        The cross-partition merge starts over with the partitions held now (the range
        assignor revokes every partition before a new assignment, and each is read again
        from its committed offset).
        """
        self._unordered = [raw for raw in self._unordered if raw.partition in self.tasks]
        if self.cross is not None:
            self.cross.reset(self.tasks)

    def reassigned(self) -> None:
        """Merge the partitions held now (after an assignment; nothing of theirs is buffered)."""
        if self.cross is not None and set(self.cross.partitions) != set(self.tasks):
            self.cross.reset(self.tasks)

    def where(self, stream: str) -> TopicPartition:
        """Return the partition a cross-merge stream names (physical topic)."""
        topic, partition = split_stream(stream)
        return TopicPartition(self._physical(topic), partition)

    def _high_of(self, topic: str, partition: int) -> int:
        return self._high(topic, partition=partition)

    def _high(self, topic: str, *, partition: int) -> int:
        """Return the partition's high watermark as of the last fetch (-1 before any fetch)."""
        _, high = self.consumer.get_watermark_offsets(
            TopicPartition(self._physical(topic), partition), cached=True
        )
        return int(high)
