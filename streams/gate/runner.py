"""The gate's Kafka loop: consume → decide → produce, exactly once, with confluent-kafka.

Each iteration consumes a batch, releases inputs in event-time order per partition
(:class:`~streams.core.timesync.PartitionSynchronizer`), and writes in ONE transaction the
decisions, approved shares, alerts, dead letters, the state changelog records and the consumed
offsets. Hence after any crash either all of a batch's effects are visible to ``read_committed``
readers, or none are and the batch is decided again from the same state.

A partition is decided only after its state is restored from the changelog (fail closed), and only
after the controls topic has been read to its end. Rebalances happen inside ``consume`` — never
while a transaction is open — so revoked partitions carry no half-written work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streams import topics
from streams.core.timesync import PartitionSynchronizer
from streams.errors import ConsentinelError
from streams.gate import metrics
from streams.gate.controls import ControlsReader
from streams.gate.processor import GateProcessor, Output, RawInput
from streams.gate.state import PartitionState
from streams.gate.store import open_store
from streams.serde.wire import AvroCodec

log = logging.getLogger(__name__)

# Consent and uploads first: at equal event time they must be known before a request is decided.
STREAM_ORDER = (
    topics.TOPIC_CONSENT_CHANGES,
    topics.TOPIC_PHOTO_UPLOADS,
    topics.TOPIC_SHARE_REQUESTS,
    topics.TOPIC_TRAINING_READS,
)
CHANGELOG_TOPIC = "consentinel.gate.state-changelog"
GROUP_ID = "consentinel-gate"


class GateFatalError(ConsentinelError):
    """The gate cannot continue (fenced by a newer instance, or a fatal producer error)."""

    error_kind = "GATE_FATAL"


@dataclass
class RunnerOptions:
    """Tunables of the loop; the defaults suit production."""

    batch_max_events: int = 2000
    poll_timeout_s: float = 0.05
    max_idle_ms: int = 200
    pause_above: int = 20_000
    resume_below: int = 5_000
    state_store: str = "memory"
    state_dir: Any = None
    transaction_timeout_ms: int = 60_000
    lag_interval_s: float = 5.0
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


class GateRunner:
    """One gate process: a member of the ``consentinel-gate`` consumer group."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        codec: AvroCodec,
        processor: GateProcessor,
        *,
        instance_id: str,
        topic_prefix: str = "",
        options: RunnerOptions | None = None,
    ) -> None:
        self.codec = codec
        self.processor = processor
        self.options = options or RunnerOptions()
        self.prefix = topic_prefix
        self._logical = {self.physical(t): t for t in (*topics.ALL_TOPICS, CHANGELOG_TOPIC)}
        self._physical = {t: self.physical(t) for t in (*topics.ALL_TOPICS, CHANGELOG_TOPIC)}
        # metric children by label values: ``labels()`` costs a lock and a tuple lookup per call
        self._decision_counters: dict[tuple[str, str, str], Any] = {}
        self._photos_out_counters: dict[tuple[str, str], Any] = {}
        self._states: dict[int, PartitionState] = {}
        self._syncs: dict[int, PartitionSynchronizer[RawInput]] = {}
        self._paused: set[tuple[str, int]] = set()
        # (logical topic, partition) -> the offset after the last record accepted, for the streams
        # that got records since they were last known to be caught up (see _settle)
        self._unsettled: dict[tuple[str, int], int] = {}
        # (logical topic, partition) -> the offset after the last record accepted
        self._positions: dict[tuple[str, int], int] = {}
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        # partition -> (the merge's clock in ms, the wall clock when it last advanced); see _drain
        self._merge_clocks: dict[int, tuple[int, int]] = {}
        self._running = True
        self._next_lag_report = 0.0
        self.consumer = Consumer(
            {
                **kafka_config,
                "group.id": topic_prefix + GROUP_ID,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "partition.assignment.strategy": "range",
                "max.poll.interval.ms": 600_000,
                **self.options.consumer_overrides,
            }
        )
        self.producer = Producer(
            {
                **kafka_config,
                "transactional.id": f"{topic_prefix}{GROUP_ID}-{instance_id}",
                "enable.idempotence": True,
                "transaction.timeout.ms": self.options.transaction_timeout_ms,
                "linger.ms": 5,
                "compression.type": "lz4",
                **self.options.producer_overrides,
            }
        )
        self.controls = ControlsReader(
            kafka_config, codec, processor.suspensions, self.physical(topics.TOPIC_CONTROLS)
        )
        self._restore_config = {
            **kafka_config,
            "group.id": topic_prefix + GROUP_ID + "-restore",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # The end of the changelog shows as an empty fetch, which the broker holds for
            # fetch.wait.max.ms (default 500 ms) before answering: half a second per partition.
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": 4 * 1024 * 1024,
            # Once queued.min.messages are waiting, librdkafka pauses fetching for
            # fetch.queue.backoff.ms (default 1 s): the restore loop empties the queue in a
            # fraction of that and then sat idle, about 1 s per 100,000 records.
            "fetch.queue.backoff.ms": 10,
        }

    def physical(self, logical: str) -> str:
        """Return the broker's name of a contract topic (the prefix serves tests and tenants)."""
        return self.prefix + logical

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch and exit."""
        self._running = False

    @property
    def ready(self) -> bool:
        """Whether controls are read and every assigned partition is restored."""
        return self.controls.caught_up and bool(self._states)

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Run until :meth:`stop` is called (or ``until()`` returns true)."""
        self.producer.init_transactions()
        self.controls.catch_up()
        metrics.SUSPENDED_RECIPIENTS.set(len(self.processor.suspensions))
        self.consumer.subscribe(
            [self.physical(t) for t in STREAM_ORDER],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while self._running and not (until and until()):
                self._iteration()
        finally:
            self.consumer.close()
            self.controls.close()
            for state in self._states.values():
                state.close()
            self._states.clear()
            metrics.READY.set(0)
            metrics.ASSIGNED_PARTITIONS.set(0)

    def _iteration(self) -> None:
        messages = self._consume()
        if self.controls.poll():
            metrics.SUSPENDED_RECIPIENTS.set(len(self.processor.suspensions))
        for message in messages:
            self._accept(message)
        batch = self._drain()
        if batch:
            self._transact(batch)
        self._flow_control()
        if time.monotonic() >= self._next_lag_report:
            self._report_lag()

    # -- intake ---------------------------------------------------------------------------------
    def _consume(self) -> list[Message]:
        """Return up to a batch of what is already fetched, waiting only when nothing is.

        ``consume(n, timeout)`` would wait for ``n`` records or the whole timeout, adding up to
        ``poll_timeout_s`` to every decision's latency under moderate load. Records that arrive
        while a transaction commits form the next batch, so batches still grow with the load.
        """
        budget = self.options.batch_max_events
        messages = self.consumer.consume(budget, timeout=0)
        if messages:
            return messages
        first = self.consumer.poll(self.options.poll_timeout_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(budget - 1, timeout=0)]

    def _accept(self, message: Message) -> None:
        error = message.error()
        partition = message.partition()
        topic = self._logical.get(message.topic() or "", message.topic() or "")
        sync = self._syncs.get(partition) if partition is not None else None
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if sync is not None and partition is not None:
                    sync.mark_caught_up(topic)
                    self._unsettled.pop((topic, partition), None)
                return
            if error.fatal():
                raise GateFatalError(f"consumer failed: {error}")
            log.warning("consumer error (retrying): %s", error)
            return
        if sync is None or partition is None:
            return  # a message for a partition revoked in the meantime: its new owner decides it
        _, timestamp = message.timestamp()
        offset = message.offset() or 0
        raw = RawInput(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp,
            key=message.key(),
            value=message.value(),
        )
        sync.add(topic, timestamp, raw)
        self._unsettled[(topic, partition)] = offset + 1
        self._positions[(topic, partition)] = offset + 1

    def _settle(self) -> None:
        """Mark the streams whose last fetched record was the partition's end as caught up.

        The consumer's ``_PARTITION_EOF`` says the same, but only after a further fetch round
        trip; the high watermark cached from the fetch that brought the last record says it at
        once. Without this, under live traffic a request waits for its partition's other
        streams to report EOF (or for ``max_idle_ms``) whenever an upload or consent just came in.
        """
        for key, position in list(self._unsettled.items()):
            topic, partition = key
            sync = self._syncs.get(partition)
            if sync is None:
                del self._unsettled[key]
                continue
            if sync.pending(topic):
                continue
            if 0 <= self._high(topic, partition) <= position:
                sync.mark_caught_up(topic)
                del self._unsettled[key]

    def _high(self, topic: str, partition: int) -> int:
        """Return the partition's high watermark as of the last fetch (-1 before any fetch)."""
        key = (topic, partition)
        tp = self._tps.get(key)
        if tp is None:
            tp = self._tps[key] = TopicPartition(self.physical(topic), partition)
        _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        return int(high)

    def _lagging(self, partition: int, sync: PartitionSynchronizer[RawInput]) -> bool:
        """Tell whether an empty stream of ``partition`` is known to have more records to come.

        That is, its high watermark (as of the last fetch) is past what the gate has read.
        """
        for topic in STREAM_ORDER:
            if sync.pending(topic):
                continue
            position = self._positions.get((topic, partition))
            if position is not None and self._high(topic, partition) > position:
                return True
        return False

    def _merge_clock(self, partition: int, sync: PartitionSynchronizer[RawInput], now: int) -> int:
        """Return the clock the partition's event-time merge runs on: wall time, not lagging.

        The merge stops waiting for an empty stream after ``max_idle_ms``, so that a stream with
        nothing in flight does not hold the others forever. But a stream can also be empty
        because the consumer has not fetched its next records yet (flow control, a slow fetch)
        while the broker has them: on a large backlog that released requests before the
        uploads and consents they follow (decided ``UNKNOWN_PHOTO`` or ``NO_CONSENT`` although
        live they would not be). As in Kafka Streams (KIP-695), the wait is not counted while a
        stream is known to have records to come.
        """
        clock, last_wall = self._merge_clocks.get(partition, (now, now))
        if not self._lagging(partition, sync):
            clock += max(now - last_wall, 0)
        self._merge_clocks[partition] = (clock, now)
        return clock

    def _drain(self) -> list[RawInput]:
        if self._unsettled:
            self._settle()
        now = int(time.time() * 1000)
        budget = self.options.batch_max_events
        batch: list[RawInput] = []
        for partition, sync in self._syncs.items():
            for _, raw in sync.drain(self._merge_clock(partition, sync, now)):
                batch.append(raw)
                if len(batch) >= budget:
                    return batch
        return batch

    # -- the transaction ------------------------------------------------------------------------
    def _transact(self, batch: list[RawInput]) -> None:
        self.producer.begin_transaction()
        offsets: dict[tuple[str, int], int] = {}
        decided_at = time.time()
        latencies: list[float] = []
        physical = self._physical
        states = self._states
        decode = self.codec.decode
        process = self.processor.process
        produce = self._produce
        for raw in batch:
            state = states[raw.partition]
            topic = physical[raw.topic]
            try:
                record = decode(topic, raw.value)
            except ConsentinelError as exc:
                processed = self.processor.dead_letter(raw, exc.error_kind, str(exc))
            else:
                processed = process(raw, record, state)
            for output in processed.outputs:
                produce(output)
            if processed.dead_letter_kind is not None:
                metrics.DEAD_LETTERS.labels(processed.dead_letter_kind).inc()
            decision = processed.decision
            if decision is not None:
                self._count(decision)
                latencies.append(decided_at - decision.request.occurred_at_ms / 1000)
            offsets[(topic, raw.partition)] = raw.offset + 1
        changelog = physical[CHANGELOG_TOPIC]
        for partition in {raw.partition for raw in batch}:
            for key, value in states[partition].take_changes():
                self.producer.produce(changelog, key=key, value=value, partition=partition)
        self.producer.send_offsets_to_transaction(
            [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            self.consumer.consumer_group_metadata(),
        )
        self._commit()
        observe = metrics.DECISION_LATENCY.observe
        for latency in latencies:
            observe(max(latency, 0.0))
        metrics.BATCH_SIZE.observe(len(batch))

    def _produce(self, output: Output) -> None:
        value = output.value
        topic = self._physical[output.topic]
        payload = value if isinstance(value, bytes) else self.codec.encode(topic, value)
        while True:
            try:
                if output.partition is None:
                    self.producer.produce(topic, key=output.key, value=payload)
                else:
                    self.producer.produce(
                        topic, key=output.key, value=payload, partition=output.partition
                    )
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    def _count(self, decision: Any) -> None:
        request = decision.request
        kind = request.kind.value
        key = (decision.verdict.value, decision.reason.value, kind)
        counter = self._decision_counters.get(key)
        if counter is None:
            counter = self._decision_counters[key] = metrics.DECISIONS.labels(*key)
        counter.inc()
        if decision.allowed:
            recipient = request.recipient_org
            out_key = (recipient, kind)
            counter = self._photos_out_counters.get(out_key)
            if counter is None:
                if self.processor.policy.recipient(recipient) is None:
                    recipient = metrics.UNREGISTERED_RECIPIENT
                counter = self._photos_out_counters[out_key] = metrics.PHOTOS_OUT.labels(
                    recipient, kind
                )
            counter.inc()

    def _commit(self) -> None:
        try:
            self.producer.commit_transaction()
            metrics.TRANSACTIONS.labels("committed").inc()
        except KafkaException as exc:
            error = exc.args[0]
            if error.txn_requires_abort():
                log.warning("transaction must abort (%s): rewinding to the last commit", error)
                self.producer.abort_transaction()
                metrics.TRANSACTIONS.labels("aborted").inc()
                self._rewind()
                return
            if error.retriable():
                self._commit()
                return
            raise GateFatalError(f"cannot commit the transaction: {error}") from exc

    def _rewind(self) -> None:
        """After an abort, forget uncommitted work: re-restore state, seek to committed offsets."""
        partitions = sorted(self._states)
        for partition in partitions:
            self._states.pop(partition).close()
        assigned = self.consumer.assignment()
        committed = self.consumer.committed(assigned, timeout=30)
        for partition in partitions:
            self._restore(partition)
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self.consumer.seek(tp)

    # -- assignment -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        # Reading committed offsets with read_committed waits for any transaction the previous
        # owner left open to finish, so the changelog read below sees all of its effects.
        consumer.committed(assigned, timeout=60)
        for partition in sorted({tp.partition for tp in assigned} - set(self._states)):
            self._restore(partition)
        metrics.ASSIGNED_PARTITIONS.set(len(self._states))
        metrics.READY.set(1 if self.ready else 0)

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        for partition in {tp.partition for tp in revoked}:
            state = self._states.pop(partition, None)
            if state is not None:
                state.close()
            self._syncs.pop(partition, None)
            self._forget_positions(partition)
        self._paused = {tp for tp in self._paused if tp[1] in self._states}
        metrics.ASSIGNED_PARTITIONS.set(len(self._states))
        metrics.READY.set(1 if self.ready else 0)

    def restore_partition(self, partition: int) -> int:
        """Restore one partition's state from the changelog, as on assignment; return the records.

        What the assignment callback does for each new partition; public for tools that time it.
        """
        return self._restore(partition)

    def _restore(self, partition: int) -> int:
        started = time.monotonic()
        state = PartitionState(
            partition,
            open_store(self.options.state_store, self.options.state_dir, partition),
            cache_all=self.options.state_store == "memory",
        )
        restorer = Consumer(self._restore_config)
        tp = TopicPartition(self.physical(CHANGELOG_TOPIC), partition, OFFSET_BEGINNING)
        low, high = restorer.get_watermark_offsets(tp, timeout=30)
        count = 0
        if high > low:
            restorer.assign([tp])
            done = False
            while not done:
                # what is fetched already, else wait for the next record (or the EOF event)
                messages = restorer.consume(10_000, timeout=0) or restorer.consume(1, timeout=1.0)
                records: list[tuple[bytes, bytes | None]] = []
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            done = True
                            break
                        raise GateFatalError(f"restoring partition {partition} failed: {error}")
                    records.append((message.key() or b"", message.value()))
                state.restore_many(records)
                count += len(records)
        restorer.close()
        self._states[partition] = state
        self._forget_positions(partition)
        self._syncs[partition] = PartitionSynchronizer(
            STREAM_ORDER, max_idle_ms=self.options.max_idle_ms
        )
        elapsed = time.monotonic() - started
        metrics.RESTORE_DURATION.observe(elapsed)
        metrics.RESTORED_RECORDS.inc(count)
        log.info("partition %d restored: %d changelog records in %.2fs", partition, count, elapsed)
        return count

    def _forget_positions(self, partition: int) -> None:
        for key in [k for k in self._unsettled if k[1] == partition]:
            del self._unsettled[key]
        for key in [k for k in self._positions if k[1] == partition]:
            del self._positions[key]
        self._merge_clocks.pop(partition, None)

    # -- housekeeping ---------------------------------------------------------------------------
    def _flow_control(self) -> None:
        for partition, sync in self._syncs.items():
            for topic in STREAM_ORDER:
                key = (topic, partition)
                pending = sync.pending(topic)
                tp = TopicPartition(self.physical(topic), partition)
                if pending > self.options.pause_above and key not in self._paused:
                    self.consumer.pause([tp])
                    self._paused.add(key)
                elif pending < self.options.resume_below and key in self._paused:
                    self.consumer.resume([tp])
                    self._paused.discard(key)

    def _report_lag(self) -> None:
        self._next_lag_report = time.monotonic() + self.options.lag_interval_s
        lag: dict[str, int] = {}
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    logical = self._logical.get(tp.topic, tp.topic)
                    lag[logical] = lag.get(logical, 0) + max(high - tp.offset, 0)
        except KafkaException as exc:
            log.debug("lag report skipped: %s", exc)
            return
        for topic in STREAM_ORDER:
            metrics.CONSUMER_LAG.labels(topic).set(lag.get(topic, 0))
