"""The partitions a runner owns: its membership of the consumer group, and their restored state.

A runner is one static member of its topology's consumer group: a restarted instance (same id)
takes its partitions back at once, and range assignment gives one member the same partition
number of every source — provided every member's subscription names every source. librdkafka
subscribes only to the topics its metadata already knows: a member that joined before the
internal topics (created at start-up) were in its metadata was left out of theirs, and the
other member got every partition of them, so partition number N of the inputs and of the photo
claims went to different processes (issue #20: both took a task for N, the photo index was
split, claims were answered by a process without the uploads, requests waited or were decided
``UNKNOWN_PHOTO``). :func:`co_assigned` keeps only the partition numbers whose every source is
assigned here; a number assigned in part is not processed (it waits for the next rebalance, which
the member's next metadata refresh brings). It reads only committed records.

A partition is processed only once its state has been restored from the changelog (fail
closed): :attr:`Assignment.tasks` holds a :class:`~streams.runtime.task.PartitionTask` exactly
for each partition whose restore completed, and a partition is dropped whole — its state
closed, the topology told to forget it.

With the ``rocksdb`` store a partition's state is a :class:`~streams.runtime.kept_store.KeptStore`
in ``<state_dir>/<topology>/partition-<n>``, kept across restarts and revocations with the
changelog offset it reflects: taking the partition restores only the changelog's tail from there
(:func:`~streams.runtime.changelog.restore_kept`), and a rewind after an abort drops the
store's uncommitted writes and reopens the state over it, without reading the changelog at all.
The ``memory`` store is restored in full on every assignment and rewind, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer
from confluent_kafka.admin import AdminClient

from streams.runtime import changelog
from streams.runtime.kept_store import KeptStore
from streams.runtime.metrics import RuntimeMetrics
from streams.runtime.options import RuntimeOptions
from streams.runtime.stores import open_store
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer
from streams.runtime.topology import PartitionState, Topology

log = logging.getLogger(__name__)


PREFETCH_BATCHES = 4
"""How many batches (``batch_max_events``) of records librdkafka fetches ahead of the runner."""


def group_consumer(
    kafka_config: dict[str, Any], group: str, instance_id: str, options: RuntimeOptions
) -> Consumer:
    """Return the consumer of a runner's sources: member ``instance_id`` of ``group``.

    It commits offsets only within transactions, and starts a partition with no commit at
    its beginning.
    """
    return Consumer(
        {
            **kafka_config,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "partition.assignment.strategy": "range",
            "max.poll.interval.ms": 600_000,
            # Static membership: a restarted instance (same id) takes its partitions back at
            # once instead of waiting for the dead member's session to expire.
            "group.instance.id": f"{group}-{instance_id}",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            # A subscribed topic that was not in the metadata at join time (an internal topic
            # just created) is found at the next refresh, which rejoins with the full
            # subscription: within seconds instead of librdkafka's default 5 minutes.
            "topic.metadata.refresh.interval.ms": 10_000,
            # What the merge knows of a partition's end (its end-of-partition event, its high
            # watermark) is as old as librdkafka's prefetch queue: with the defaults it holds
            # 100,000 records and, once full, stops fetching every partition for 1 s at a time.
            # Working through such a queue takes seconds, and meanwhile a stream the merge saw
            # at its end may have records on the broker: a gate reading a backlog as it was
            # written released later events past them (1,214 of 400,000 requests decided
            # otherwise than by a gate reading the same backlog whole). A few batches' worth
            # keeps the ends fresh.
            "queued.min.messages": PREFETCH_BATCHES * options.batch_max_events,
            "fetch.queue.backoff.ms": 10,
            **options.consumer_overrides,
        }
    )


def co_assigned(
    assigned: list[Any], sources: frozenset[str], logical: Callable[[str], str]
) -> tuple[set[int], dict[int, set[str]]]:
    """Split an assignment into partition numbers held whole and those held in part.

    Returns the numbers of which every source's partition is in ``assigned`` (the runner may
    process them), and for each other number the sources assigned elsewhere (``logical`` maps a
    broker topic name to its logical name).
    """
    held: dict[int, set[str]] = {}
    for tp in assigned:
        held.setdefault(tp.partition, set()).add(logical(tp.topic))
    whole = {number for number, names in held.items() if sources <= names}
    missing = {n: set(sources - names) for n, names in held.items() if n not in whole}
    return whole, missing


class Assignment:
    """The partitions a runner may process now, each with its state whole."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        topology: Topology,
        *,
        group: str,
        changelog_topic: str,
        options: RuntimeOptions,
        metrics: RuntimeMetrics,
        turned: Callable[[], None],
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.tasks: dict[int, PartitionTask] = {}
        """Partition number → its task (the same dict for the assignment's life)."""
        self.topology = topology
        self.options = options
        self.metrics = metrics
        self._kafka_config = kafka_config
        self._group = group
        self._changelog_topic = changelog_topic
        self._turned = turned
        self._stopping = stopping
        spec = topology.spec
        self._merged = [t for t in spec.sources if t not in spec.internal]
        self._state_dir = (options.state_dir or Path(".consentinel/state")) / spec.name
        self._admin: AdminClient | None = None

    @property
    def kept(self) -> bool:
        """Whether partitions' state is kept across restarts (the ``rocksdb`` store)."""
        return self.options.state_store == "rocksdb"

    def restore(self, partition: int) -> int:
        """Restore ``partition``'s state from the changelog and take it; return the records read.

        A kept store reads only the changelog's tail from its offset. Raises
        :class:`~streams.errors.TransientError` while the broker is unreachable (the partition
        is then not taken).
        """
        started = time.monotonic()
        self._turned()
        directory = self._state_dir / f"partition-{partition}"
        kept: KeptStore | None = None
        if self.kept:
            if self._admin is None:
                self._admin = AdminClient(self._kafka_config)
            identity = changelog.describe_changelog(self._admin, self._changelog_topic, partition)
            kept = KeptStore.open(directory, identity)
            offset_before = kept.offset
            try:
                state, count = changelog.restore_kept(
                    self._kafka_config,
                    self._group + "-restore",
                    kept,
                    lambda store: self.topology.open_state(partition, store),
                    timeout_s=self.options.restore_timeout_s,
                    max_age_ms=int(self.options.kept_state_max_age_s * 1000),
                    cancelled=self._stopping,
                )
            except BaseException:
                kept.close()  # what was restored so far stays, with its offset
                raise
            start = 0 if kept.wiped_because else offset_before
            how = f"kept store, from changelog offset {start}"
            if kept.wiped_because:
                how += f"; its old copy wiped: {kept.wiped_because}"
        else:
            store = open_store(self.options.state_store, self._state_dir, partition)
            state = self.topology.open_state(partition, store)
            count = changelog.restore_partition(
                self._kafka_config,
                self._group + "-restore",
                self._changelog_topic,
                partition,
                state,
                timeout_s=self.options.restore_timeout_s,
                cancelled=self._stopping,
            )
            how = "full"
        self.tasks[partition] = self._task(partition, state, kept)
        elapsed = time.monotonic() - started
        self._turned()
        self.metrics.restore_duration.observe(elapsed)
        self.metrics.restored_records.inc(count)
        log.info(
            "partition %d restored: %d changelog records in %.2fs (%s)",
            partition,
            count,
            elapsed,
            how,
        )
        return count

    def _task(self, partition: int, state: PartitionState, kept: KeptStore | None) -> PartitionTask:
        merge: PartitionSynchronizer[Any] = PartitionSynchronizer(
            self._merged,
            max_idle_ms=self.options.max_idle_ms,
            caught_up_grace_ms=self.options.caught_up_grace_ms,
        )
        return PartitionTask(partition, state, merge, kept=kept)

    def drop(self, partition: int) -> None:
        """Give ``partition`` up (if taken): close its state, and have the topology forget it.

        A kept store closes without its uncommitted writes; its files stay for a later restore.
        """
        task = self.tasks.pop(partition, None)
        if task is not None:
            task.state.close()
        self.topology.forget(partition)

    def rewind(self, consumer: Consumer) -> None:
        """Take every partition back to its last commit, forgetting all work since.

        A kept store drops its uncommitted writes and the state is reopened over it (the store
        holds exactly what was committed: nothing is read from the changelog); any other state
        is restored from the changelog again. ``consumer`` then reads on from the committed
        offsets (a partition with none from its beginning).
        """
        partitions = sorted(self.tasks)
        kept = {p: self.tasks[p].kept for p in partitions if self.tasks[p].kept is not None}
        for partition in partitions:
            if partition in kept:
                self._reopen(partition, kept[partition])
            else:
                self.drop(partition)
        committed = consumer.committed(consumer.assignment(), timeout=60)
        for partition in partitions:
            if partition not in kept:
                self.restore(partition)
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(tp)

    def _reopen(self, partition: int, store: KeptStore) -> None:
        """Reopen ``partition``'s state over its kept store, as of the store's last commit."""
        store.rollback()
        forget = getattr(self.topology, "forget", None)
        if forget is not None:
            forget(partition)
        state = self.topology.open_state(partition, store)
        self.tasks[partition] = self._task(partition, state, store)
        log.info(
            "partition %d rewound to its kept state at changelog offset %d", partition, store.offset
        )

    def close(self) -> None:
        """Close every partition's state and hold none."""
        for task in self.tasks.values():
            task.state.close()
        self.tasks.clear()
        self.metrics.assigned_partitions.set(0)
