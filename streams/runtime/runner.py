"""The stream runtime's Kafka loop: consume → process → produce, exactly once, for any topology.

Each iteration takes what the consumer has fetched, releases it per partition in event-time
order (:class:`~streams.runtime.timesync.PartitionSynchronizer`, when the topology asks for it),
has the :class:`~streams.runtime.topology.Topology` process it, and writes in ONE transaction
(:class:`~streams.runtime.checkpoint.Checkpoint`) the outputs, the state changelog records and
the consumed offsets. After any crash either all of a batch's effects are visible to
``read_committed`` readers, or none are and the batch is processed again from the same state.

A partition is processed only after its state is restored from the changelog (fail closed), and
only after every global table has been read to its end. Rebalances happen inside ``consume`` —
never while a transaction is open — so a revoked partition carries no half-written work. A
dependency that is unreachable (:class:`~streams.errors.TransientError`) aborts the batch, which
is retried from the last commit after a back-off; it is never dead-lettered or skipped.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.errors import ConsentinelError, TransientError
from streams.runtime import changelog
from streams.runtime.checkpoint import Checkpoint, RuntimeFatalError
from streams.runtime.dead_letters import oversize_input, oversize_output
from streams.runtime.flow import FlowControl
from streams.runtime.global_table import GlobalTableReader
from streams.runtime.metrics import runtime_metrics
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.stores import open_store
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer
from streams.runtime.topology import Topology
from streams.serde.wire import AvroCodec

log = logging.getLogger(__name__)

TRANSIENT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Waits after successive transient failures of a batch (the last one repeats)."""


@dataclass
class RuntimeOptions:
    """Tunables of the loop; the defaults suit production."""

    batch_max_events: int = 2000
    poll_timeout_s: float = 0.05
    max_idle_ms: int = 200
    pause_above: int = 20_000
    resume_below: int = 5_000
    state_store: str = "memory"
    state_dir: Path | None = None
    transaction_timeout_ms: int = 60_000
    restore_timeout_s: float = 300.0
    lag_interval_s: float = 5.0
    punctuate_interval_s: float = 1.0
    liveness_timeout_s: float = 120.0
    max_input_bytes: int = 256 * 1024
    max_output_bytes: int = 900 * 1024
    commit_interval_ms: int = 0
    """Commit cadence by time as well as by size: while fewer than ``batch_max_events`` inputs
    are waiting, keep processing what arrives into the open transaction and commit once it is
    this old (0: commit every iteration that has work, the lowest latency)."""
    gc_threshold0: int = 10_000
    """CPython's generation-0 collection threshold (its default is 700): the loop allocates
    short-lived objects per record, and each young collection also scans what survived."""
    gc_freeze_interval_s: float = 30.0
    """Move every object alive to CPython's permanent generation after a restore and then at
    most this often (between transactions; 0: never), so that full collections stop walking
    the long-lived state. Cyclic garbage alive at that moment is never collected: keep it rare."""
    local_loopback: bool = True
    """Process a record written to an internal source topic (repartition) at once, in the same
    transaction, when its partition is assigned to this process, instead of writing it to the
    broker and reading it back. Same effects, committed atomically with their cause."""
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T", bound=Topology)


class StreamRunner(Generic[T]):
    """One process of a topology: a member of its consumer group, with its own transactions."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        codec: AvroCodec,
        topology: T,
        *,
        instance_id: str,
        topic_prefix: str = "",
        options: RuntimeOptions | None = None,
        metrics_prefix: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.codec = codec
        self.topology: T = topology
        self.spec = topology.spec
        self.options = options or RuntimeOptions()
        self.prefix = topic_prefix
        self.metrics = runtime_metrics(metrics_prefix)
        self.clock_ms = clock_ms
        spec = self.spec
        names = {*spec.sources, *spec.outputs, *spec.internal, spec.changelog}
        names |= {table.topic for table in spec.global_tables}
        self._physical = {name: topic_prefix + name for name in names}
        self._logical = {physical: name for name, physical in self._physical.items()}
        self._internal = frozenset(spec.internal)
        sources = frozenset(spec.sources)
        self._unordered_topics = self._internal if spec.synchronized else sources
        loopback = self.options.local_loopback
        self._loopback = self._internal & sources if loopback else frozenset()
        self.group = topic_prefix + spec.name
        self.tasks: dict[int, PartitionTask] = {}
        self._unordered: list[RawInput] = []
        self._running = True
        self._started = False
        self._restoring = False
        self._last_turn = time.monotonic()
        self._next_lag_report = 0.0
        self._next_punctuation = 0.0
        self._transient_failures = 0
        self._offsets: dict[tuple[str, int], int] = {}
        self._checkpoint: Checkpoint | None = None
        self._open_since = 0.0
        self._open_events = 0
        self._open_offsets: dict[tuple[str, int], int] = {}
        self._open_facts: list[Any] = []
        self._open_dead: list[tuple[str, str]] = []
        self._open_batches: list[int] = []
        self._letters_queued: dict[int, int] = {}
        self._next_freeze = 0.0
        self.problem: str | None = None
        self._kafka_config = kafka_config
        self.consumer = Consumer(
            {
                **kafka_config,
                "group.id": self.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "partition.assignment.strategy": "range",
                "max.poll.interval.ms": 600_000,
                # Static membership: a restarted instance (same id) takes its partitions back at
                # once instead of waiting for the dead member's session to expire.
                "group.instance.id": f"{self.group}-{instance_id}",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                **self.options.consumer_overrides,
            }
        )
        self.producer = Producer(
            {
                **kafka_config,
                "transactional.id": f"{self.group}-{instance_id}",
                "enable.idempotence": True,
                "transaction.timeout.ms": self.options.transaction_timeout_ms,
                "linger.ms": 5,
                "compression.type": "lz4",
                **self.options.producer_overrides,
            }
        )
        self.globals = [
            GlobalTableReader(
                kafka_config, table, physical_topic=self.physical(table.topic), clock_ms=clock_ms
            )
            for table in spec.global_tables
        ]
        self.flow = FlowControl(self.consumer, self.options.pause_above, self.options.resume_below)

    def physical(self, logical: str) -> str:
        """Return the broker's name of a logical topic (the prefix serves tests and tenants)."""
        return self._physical.get(logical, self.prefix + logical)

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch and exit."""
        self._running = False

    @property
    def ready(self) -> bool:
        """Whether this instance may take traffic: started, global tables whole, state restored.

        An instance with no partitions assigned (more replicas than partitions) is ready.
        """
        return (
            self._started
            and not self._restoring
            and self.problem is None
            and all(reader.healthy for reader in self.globals)
        )

    @property
    def live(self) -> bool:
        """Whether the loop has turned within ``liveness_timeout_s`` (restores count as turns)."""
        return time.monotonic() - self._last_turn < self.options.liveness_timeout_s

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Run until :meth:`stop` is called (or ``until()`` returns true)."""
        try:
            partitions = self._wait_for_sources(until)
            if partitions is None:
                return
            self.topology.bind(partitions)
            if self.options.gc_threshold0 > 0:
                _, gen1, gen2 = gc.get_threshold()
                gc.set_threshold(self.options.gc_threshold0, gen1, gen2)
            self.producer.init_transactions()
            for reader in self.globals:
                reader.catch_up()
            self.consumer.subscribe(
                [self.physical(t) for t in self.spec.sources],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            self._started = True
            while self._running and not (until and until()):
                self._iteration()
            self._commit_open()  # what an open transaction holds (commit_interval_ms)
        finally:
            self._abort_open()
            self._started = False
            self.metrics.ready.set(0)
            self.consumer.close()
            for reader in self.globals:
                reader.close()
            for task in self.tasks.values():
                task.state.close()
            self.tasks.clear()
            self.metrics.assigned_partitions.set(0)

    def _wait_for_sources(self, until: Callable[[], bool] | None) -> int | None:
        """Check the sources and create internal topics; wait, not ready, while one is missing."""
        admin = AdminClient(self._kafka_config)
        external = [self.physical(t) for t in self.spec.sources if t not in self.spec.internal]
        while self._running and not (until and until()):
            self._last_turn = time.monotonic()
            try:
                partitions = changelog.check_sources(admin, external)
                changelog.ensure_internal_topics(
                    admin,
                    partitions,
                    [self.physical(t) for t in self.spec.internal],
                    [self.physical(self.spec.changelog)],
                )
            except ConsentinelError as exc:
                if self.problem != str(exc):
                    log.error("%s: not ready: %s", self.spec.name, exc)
                self.problem = str(exc)
                time.sleep(2.0)
                continue
            self.problem = None
            return partitions
        return None

    def _iteration(self) -> None:
        self._last_turn = time.monotonic()
        self.metrics.last_iteration.set(time.time())
        messages = self._consume()
        for reader in self.globals:
            reader.poll()
        accept = self._accept
        for message in messages:
            accept(message)
        batch = self._drain()
        # global tables' dead letters stay with their reader until a commit has written them
        letters = []
        for reader in self.globals:
            queued = self._letters_queued.get(id(reader), 0)
            if len(reader.dead_letters) > queued:
                letters.append((reader, reader.dead_letters[queued:]))
        extra: list[Output] = [letter for _, taken in letters for letter in taken]
        if time.monotonic() >= self._next_punctuation:
            self._next_punctuation = time.monotonic() + self.options.punctuate_interval_s
            now = self.clock_ms()
            for partition, task in self.tasks.items():
                extra += self.topology.punctuate(partition, task.state, now)
        if (batch or extra) and self._process_batch(batch, extra):
            for reader, taken in letters:
                key = id(reader)
                self._letters_queued[key] = self._letters_queued.get(key, 0) + len(taken)
        if self._checkpoint is not None and (
            not self._running
            or self._open_events >= self.options.batch_max_events
            or (time.monotonic() - self._open_since) * 1000 >= self.options.commit_interval_ms
        ):
            self._commit_open()
        self.flow.update(self.tasks, self.physical)
        self.metrics.ready.set(1 if self.ready else 0)
        if time.monotonic() >= self._next_lag_report:
            self._report_lag()

    # -- intake ---------------------------------------------------------------------------------
    def _consume(self) -> list[Message]:
        """Return up to a batch of what is already fetched, waiting only when nothing is."""
        budget = self.options.batch_max_events - self._open_events
        if budget <= 0:
            return []
        messages = self.consumer.consume(budget, timeout=0)
        if messages:
            return messages
        timeout = self.options.poll_timeout_s
        if self._checkpoint is not None:  # do not wait past the open transaction's commit time
            left = self.options.commit_interval_ms / 1000 - (time.monotonic() - self._open_since)
            timeout = min(timeout, max(left, 0.0))
        first = self.consumer.poll(timeout)
        if first is None:
            return []
        return [first, *self.consumer.consume(budget - 1, timeout=0)]

    def _accept(self, message: Message) -> None:
        error = message.error()
        partition = message.partition()
        task = self.tasks.get(partition) if partition is not None else None
        if error is not None:
            topic = self._logical.get(message.topic() or "", message.topic() or "")
            if error.code() == KafkaError._PARTITION_EOF:
                if task is not None:
                    task.caught_up(topic, message.offset())
                return
            if error.fatal():
                raise RuntimeFatalError(f"consumer failed: {error}")
            log.warning("consumer error (librdkafka retries): %s", error)
            return
        if task is None or partition is None:
            return  # a record of a partition revoked in the meantime: its new owner takes it
        physical = message.topic() or ""
        topic = self._logical.get(physical, physical)
        raw = RawInput(
            topic,
            partition,
            message.offset() or 0,
            message.timestamp()[1],
            message.key(),
            message.value(),
        )
        if topic in self._unordered_topics:
            task.positions[topic] = raw.offset + 1
            self._unordered.append(raw)
            return
        task.accept(raw, self.topology.event_time(raw))

    def _high(self, topic: str, *, partition: int) -> int:
        """Return the partition's high watermark as of the last fetch (-1 before any fetch)."""
        _, high = self.consumer.get_watermark_offsets(
            TopicPartition(self.physical(topic), partition), cached=True
        )
        return int(high)

    def _drain(self) -> list[RawInput]:
        unordered, self._unordered = self._unordered, []
        if not self.spec.synchronized:
            return unordered
        now = int(time.time() * 1000)
        budget = self.options.batch_max_events - self._open_events
        batch: list[RawInput] = unordered  # internal topics: in arrival order, before the merge
        for task in self.tasks.values():
            if len(batch) >= budget:
                break
            for raw in task.release(now, functools.partial(self._high, partition=task.partition)):
                batch.append(raw)
                if len(batch) >= budget:
                    break
        return batch

    # -- the transaction ------------------------------------------------------------------------
    def _transact(self, batch: list[RawInput], extra: list[Output]) -> bool:
        """Process ``batch`` and write it with ``extra`` in one transaction; True if committed."""
        return self._process_batch(batch, extra) and self._commit_open()

    def _process_batch(self, batch: list[RawInput], extra: list[Output]) -> bool:
        """Process ``batch`` and queue it with ``extra`` in the open transaction (opened if none).

        Return False when a transient failure aborted the transaction (the work since the last
        commit is rewound and redone).
        """
        if self._checkpoint is None:
            self._checkpoint = Checkpoint(self.producer)
            self._open_since = time.monotonic()
            self._offsets = {}
        checkpoint = self._checkpoint
        offsets = self._open_offsets
        facts = self._open_facts
        dead = self._open_dead
        physical = self._physical
        try:
            for raw in batch:
                self._handle(checkpoint, raw, facts, dead)
                offsets[(physical.get(raw.topic) or self.physical(raw.topic), raw.partition)] = (
                    raw.offset + 1
                )
            for output in extra:
                self._write(checkpoint, output, None)
        except TransientError as exc:
            self._abort_open()
            self._back_off(exc)
            self._rewind()
            return False
        except BaseException:
            self._abort_open()
            raise
        self._open_events += len(batch)
        if batch:
            self._open_batches.append(len(batch))
        return True

    def _handle(
        self, checkpoint: Checkpoint, raw: RawInput, facts: list[Any], dead: list[Any]
    ) -> None:
        """Process one input, and at once what it writes to a locally assigned internal source."""
        pending = [raw]
        loopback = self._loopback
        tasks = self.tasks
        process = self.topology.process
        limit = self.options.max_input_bytes
        i = 0
        while i < len(pending):
            item = pending[i]
            i += 1
            value = item.value
            if value is not None and len(value) > limit:
                processed = self._process(item)  # the oversize dead letter
            else:
                processed = process(item, tasks[item.partition].state)
            for output in processed.outputs:
                if (
                    output.topic in loopback
                    and output.partition in tasks
                    and output.value.__class__ is bytes
                ):
                    assert output.partition is not None and isinstance(output.value, bytes)
                    pending.append(
                        RawInput(
                            output.topic,
                            output.partition,
                            -1,
                            item.timestamp_ms,
                            output.key,
                            output.value,
                        )
                    )
                elif not self._write(checkpoint, output, item):
                    dead.append(("OUTPUT_TOO_LARGE", item.topic))
            if processed.facts is not None:
                facts.append(processed.facts)
            if processed.dead_letter_kind is not None:
                dead.append((processed.dead_letter_kind, item.topic))

    def _reset_open(self) -> None:
        self._checkpoint = None
        self._open_events = 0
        self._open_offsets = {}
        self._open_facts = []
        self._open_dead = []
        self._open_batches = []

    def _abort_open(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.abort(lambda o: self.metrics.transactions.labels(o).inc())
        self._reset_open()
        self._letters_queued = {}

    def _commit_open(self) -> bool:
        """Write the changelogs and offsets of the open transaction and commit it."""
        checkpoint = self._checkpoint
        if checkpoint is None:
            return True
        outcome = self.metrics.transactions.labels
        try:
            changelog_topic = self.physical(self.spec.changelog)
            for partition, task in self.tasks.items():
                checkpoint.changelog(changelog_topic, partition, task.state.take_changes())
            checkpoint.offsets(self._open_offsets, self.consumer.consumer_group_metadata())
        except TransientError as exc:
            self._abort_open()
            self._back_off(exc)
            self._rewind()
            return False
        except BaseException:
            self._abort_open()
            raise
        if not checkpoint.commit(lambda o: outcome(o).inc()):
            self._reset_open()
            self._letters_queued = {}
            self._rewind()
            return False
        facts, dead, batches = self._open_facts, self._open_dead, self._open_batches
        self._reset_open()
        for reader in self.globals:
            queued = self._letters_queued.pop(id(reader), 0)
            if queued:
                del reader.dead_letters[:queued]
        self._transient_failures = 0
        self.topology.committed(facts)
        delivered = getattr(self.topology, "delivered", None)
        if delivered is not None:
            delivered(self._offsets)
        for kind, topic in dead:
            self.metrics.dead_letters.labels(kind, topic).inc()
        for size in batches:
            self.metrics.batch_size.observe(size)
        self._maybe_freeze()
        return True

    def _maybe_freeze(self, force: bool = False) -> None:
        interval = self.options.gc_freeze_interval_s
        if interval > 0 and (force or time.monotonic() >= self._next_freeze):
            gc.freeze()
            self._next_freeze = time.monotonic() + interval

    def _process(self, raw: RawInput) -> Processed:
        value = raw.value
        if value is not None and len(value) > self.options.max_input_bytes:
            letter = oversize_input(raw, self.options.max_input_bytes, at_ms=self.clock_ms())
            if letter is not None:
                return Processed([letter], dead_letter_kind="INPUT_TOO_LARGE")
        return self.topology.process(raw, self.tasks[raw.partition].state)

    def _write(self, checkpoint: Checkpoint, output: Output, source: RawInput | None) -> bool:
        """Queue one output; return False when it was too large and a dead letter took its place."""
        topic = self._physical.get(output.topic) or self.physical(output.topic)
        value = output.value
        payload = value if isinstance(value, bytes) else self.codec.encode(topic, value)
        if source is not None and len(payload) > self.options.max_output_bytes:
            limit = self.options.max_output_bytes
            at = self.clock_ms()
            letter = oversize_output(source, output.topic, len(payload), limit, at_ms=at)
            if letter is not None:
                assert isinstance(letter.value, dict)
                dlq = self.physical(letter.topic)
                payload = self.codec.encode(dlq, letter.value)
                checkpoint.produce(dlq, letter.key, payload, letter.partition)
                return False
        on_offset = None
        if output.track:
            where = (output.topic, output.partition if output.partition is not None else -1)

            def on_offset(offset: int) -> None:
                self._offsets[where] = max(offset, self._offsets.get(where, -1))

        checkpoint.produce(topic, output.key, payload, output.partition, output.headers, on_offset)
        return True

    def _back_off(self, exc: TransientError) -> None:
        self.metrics.transient_errors.inc()
        wait = TRANSIENT_BACKOFF_S[min(self._transient_failures, len(TRANSIENT_BACKOFF_S) - 1)]
        self._transient_failures += 1
        log.warning("transient failure, batch retried in %.1fs: %s", wait, exc)
        deadline = time.monotonic() + wait
        while self._running and time.monotonic() < deadline:
            self._last_turn = time.monotonic()
            time.sleep(0.1)

    def _rewind(self) -> None:
        """After an abort, forget uncommitted work: restore state again, seek to committed."""
        partitions = sorted(self.tasks)
        for partition in partitions:
            self.tasks.pop(partition).state.close()
            self._forget(partition)
        self._unordered = []
        assigned = self.consumer.assignment()
        committed = self.consumer.committed(assigned, timeout=60)
        for partition in partitions:
            self._restore(partition)
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(tp)

    # -- assignment -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, assigned: list[Any]) -> None:
        # Reading committed offsets with read_committed waits for any transaction the previous
        # owner left committing, so the changelog read below sees all of its effects.
        self._commit_open()  # never restore or rebalance under an open transaction
        self._restoring = True
        try:
            consumer.committed(assigned, timeout=60)
            for partition in sorted({tp.partition for tp in assigned} - set(self.tasks)):
                self._restore_retrying(partition)
        finally:
            self._restoring = False
        self._maybe_freeze(force=True)  # the restored state is long-lived
        self.metrics.assigned_partitions.set(len(self.tasks))

    def _on_revoke(self, consumer: Consumer, revoked: list[Any]) -> None:
        if self._checkpoint is not None:
            try:
                self._commit_open()  # the revoked partitions' work, before their new owner reads
            except Exception as exc:  # fenced or lost: the new owner redoes it from the commit
                log.warning("open transaction not committed on revocation: %s", exc)
                self._abort_open()
        for partition in {tp.partition for tp in revoked}:
            task = self.tasks.pop(partition, None)
            if task is not None:
                task.state.close()
            self._forget(partition)
        self._unordered = [raw for raw in self._unordered if raw.partition in self.tasks]
        self.metrics.assigned_partitions.set(len(self.tasks))

    def _forget(self, partition: int) -> None:
        forget = getattr(self.topology, "forget", None)
        if forget is not None:
            forget(partition)

    def _restore_retrying(self, partition: int) -> None:
        """Restore ``partition``, retrying with back-off while the broker is unreachable."""
        while True:
            try:
                self._restore(partition)
                return
            except TransientError as exc:
                self._back_off(exc)
                if not self._running:
                    raise

    def restore_partition(self, partition: int) -> int:
        """Restore one partition's state from the changelog, as on assignment; return records."""
        return self._restore(partition)

    def _restore(self, partition: int) -> int:
        started = time.monotonic()
        self._last_turn = started
        state_dir = self.options.state_dir or Path(".consentinel/state")
        store = open_store(self.options.state_store, state_dir / self.spec.name, partition)
        state = self.topology.open_state(partition, store)
        count = changelog.restore_partition(
            self._kafka_config,
            self.group + "-restore",
            self.physical(self.spec.changelog),
            partition,
            state,
            timeout_s=self.options.restore_timeout_s,
        )
        self.tasks[partition] = PartitionTask(
            partition,
            state,
            PartitionSynchronizer(
                [t for t in self.spec.sources if t not in self.spec.internal],
                max_idle_ms=self.options.max_idle_ms,
            ),
        )
        elapsed = time.monotonic() - started
        self._last_turn = time.monotonic()
        self.metrics.restore_duration.observe(elapsed)
        self.metrics.restored_records.inc(count)
        log.info("partition %d restored: %d changelog records in %.2fs", partition, count, elapsed)
        return count

    # -- housekeeping ---------------------------------------------------------------------------
    def _report_lag(self) -> None:
        self._next_lag_report = time.monotonic() + self.options.lag_interval_s
        lag: dict[str, int] = {}
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    logical = self._logical.get(tp.topic, tp.topic)
                    lag[logical] = lag.get(logical, 0) + max(high - tp.offset, 0)
        except Exception as exc:  # a lag report is best effort
            log.debug("lag report skipped: %s", exc)
            return
        for topic in self.spec.sources:
            self.metrics.consumer_lag.labels(topic).set(lag.get(topic, 0))
