"""The gate as a topology on the stream runtime (:mod:`streams.runtime`).

Sources: the five co-partitioned input topics, merged per partition in event-time order of their
``occurred_at`` (consent, uploads and erasures first at equal times, so they are known before a
request of the same millisecond). Global table: ``governance.controls``. Outputs: decisions,
approved shares, alerts, recall orders, signed chain checkpoints and dead letters. State:
:class:`~streams.gate.state.PartitionState` over the changelog
``consentinel.gate.state-changelog``. What the gate decides is :class:`GateProcessor`'s; this
module only adapts it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from streams import topics
from streams.core.checkpoint import CheckpointPolicy, SigningKey, build_checkpoint
from streams.errors import ConsentinelError, TransientError
from streams.gate import metrics, photos
from streams.gate.controls import ControlsTable
from streams.gate.processor import GateProcessor
from streams.gate.state import PartitionState
from streams.preflight import LOG_APPEND_TIME
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.stores import KeyValueStore, MemoryStore
from streams.runtime.topology import GlobalTable, TopologySpec
from streams.serde.wire import AvroCodec

GATE_NAME = "consentinel-gate"
"""The gate's consumer group and transactional-id base (after the deployment's prefix)."""

STREAM_ORDER = (
    topics.TOPIC_CONSENT_CHANGES,
    topics.TOPIC_PHOTO_UPLOADS,
    topics.TOPIC_ERASURE_REQUESTS,
    topics.TOPIC_SHARE_REQUESTS,
    topics.TOPIC_TRAINING_READS,
)
"""The gate's sources; at equal event time, earlier ones are processed first."""


class GateTopology:
    """Decides every request exactly once (see :mod:`streams.gate.processor`)."""

    def __init__(
        self,
        processor: GateProcessor,
        codec: AvroCodec,
        *,
        topic_prefix: str,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.processor = processor
        self.signing_key = signing_key
        self.checkpoints = CheckpointPolicy()
        self._heads: dict[int, tuple[int, str, int]] = {}  # partition → (offset, hash, count)
        self._pending_heads: dict[int, tuple[str, int]] = {}
        self.codec = codec
        self.prefix = topic_prefix
        processor.decode_input = self.decode
        self.partitions = 0
        self.controls = ControlsTable(
            codec, topic_prefix + topics.TOPIC_CONTROLS, processor.suspensions
        )
        self.spec = TopologySpec(
            name=GATE_NAME,
            sources=(
                *STREAM_ORDER,
                topics.TOPIC_GATE_PHOTO_CLAIMS,
                topics.TOPIC_GATE_PHOTO_VERDICTS,
            ),
            outputs=(
                topics.TOPIC_DECISIONS,
                topics.TOPIC_SHARE_APPROVED,
                topics.TOPIC_ALERTS,
                topics.TOPIC_RECALLS,
                topics.TOPIC_CHECKPOINTS,
                topics.TOPIC_DLQ,
                topics.TOPIC_GATE_PHOTO_CLAIMS,
                topics.TOPIC_GATE_PHOTO_VERDICTS,
            ),
            changelog=topics.TOPIC_GATE_CHANGELOG,
            internal=(topics.TOPIC_GATE_PHOTO_CLAIMS, topics.TOPIC_GATE_PHOTO_VERDICTS),
            global_tables=(GlobalTable(topics.TOPIC_CONTROLS, self.controls),),
            source_configs=LOG_APPEND_TIME,  # CONTRACT §3: the append time is the broker's
        )
        self._decision_counters: dict[tuple[str, str, str], Any] = {}
        self._photos_out_counters: dict[tuple[str, str], Any] = {}

    def decode(self, raw: RawInput) -> dict[str, Any]:
        """Decode an input's value with its topic's schema (raises for an unreadable one)."""
        record: dict[str, Any] = self.codec.decode(self.prefix + raw.topic, raw.value)
        return record

    def bind(self, partitions: int) -> None:
        """Learn the input topics' partition count."""
        self.partitions = partitions
        self.processor.bind(partitions)

    def open_state(self, partition: int, store: KeyValueStore) -> PartitionState:
        """Return the partition's empty state over ``store``."""
        return PartitionState(partition, store, cache_all=isinstance(store, MemoryStore))

    def event_time(self, raw: RawInput) -> int:
        """Order inputs by their ``occurred_at`` (decoded once here and kept on ``raw``).

        An input that cannot be decoded (yet) is ordered by its append time; :meth:`process`
        then dead-letters it, or the runtime retries it when the registry was unreachable.
        """
        try:
            raw.decoded = record = self.codec.decode(self.prefix + raw.topic, raw.value)
        except ConsentinelError:
            return raw.timestamp_ms
        occurred = record.get("occurred_at")
        return occurred if isinstance(occurred, int) else raw.timestamp_ms

    def process(self, raw: RawInput, state: PartitionState) -> Processed:
        """Decode one input and decide it (or dead-letter it)."""
        if raw.topic in self.spec.internal:
            message = photos.decode_message(raw.value)
            if raw.topic == topics.TOPIC_GATE_PHOTO_CLAIMS:
                return self.processor.on_claim(message, state)
            return self._track(raw.partition, self.processor.on_verdict(message, state), state)
        record = raw.decoded
        if record is None:
            try:
                record = self.codec.decode(self.prefix + raw.topic, raw.value)
            except ConsentinelError as exc:
                if isinstance(exc, TransientError):
                    raise  # the registry is down: the runtime retries the batch
                return self.processor.dead_letter(raw, exc.error_kind, str(exc))
        return self._track(raw.partition, self.processor.process(raw, record, state), state)

    def _track(self, partition: int, processed: Processed, state: PartitionState) -> Processed:
        """Mark decisions for offset tracking: their heads are what checkpoints sign."""
        for output in processed.outputs:
            if output.topic == topics.TOPIC_DECISIONS:
                output.track = True
                self._pending_heads[partition] = (state.head, state.decisions)
        return processed

    def punctuate(
        self, partition: int, state: PartitionState, now_ms: int, *, sources_behind: bool = False
    ) -> Processed:
        """Decide what waited for an unknown photo and is sure now; sign the head when due.

        The requests whose grace for an unknown photo has passed are decided, unless a source
        of the partition has records still to come (``sources_behind``: the upload they wait
        for may be among them); the partition's signed chain head is returned when one is due
        (CONTRACT §6).
        """
        released = self.processor.queues.release_unsure(state, None if sources_behind else now_ms)
        if released.outputs:
            self._track(partition, released, state)
        released.outputs += self._checkpoint(partition, now_ms)
        return released

    def _checkpoint(self, partition: int, now_ms: int) -> list[Output]:
        head = self._heads.get(partition)
        if self.signing_key is None or head is None:
            return []
        offset, hash_, count = head
        if not self.checkpoints.due(partition, count, now_ms):
            return []
        record = build_checkpoint(
            self.signing_key,
            partition=partition,
            offset=offset,
            hash=hash_,
            decisions=count,
            at_ms=now_ms,
        )
        self.checkpoints.emitted(partition, count, now_ms)
        return [Output(topics.TOPIC_CHECKPOINTS, partition, str(partition).encode(), record)]

    def delivered(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Learn where the committed decisions landed: the heads that checkpoints may sign."""
        for (topic, partition), offset in offsets.items():
            pending = self._pending_heads.pop(partition, None)
            if topic == topics.TOPIC_DECISIONS and pending is not None:
                self._heads[partition] = (offset, *pending)
        self._pending_heads.clear()

    def forget(self, partition: int) -> None:
        """Drop what is known of a revoked (or rewound) partition's chain head."""
        self._heads.pop(partition, None)
        self._pending_heads.pop(partition, None)
        self.checkpoints.forget(partition)

    def committed(self, facts: Sequence[Any]) -> None:
        """Count the committed decisions and their latency (one ``inc`` per series a commit)."""
        now_ms = time.time() * 1000
        decisions: dict[tuple[str, str, str], int] = {}
        out: dict[tuple[str, str], int] = {}
        delays = []
        for fact in facts:
            for decision in fact if isinstance(fact, list) else [fact]:
                request = decision.request
                kind = request.kind.value
                key = (decision.verdict.value, decision.reason.value, kind)
                decisions[key] = decisions.get(key, 0) + 1
                if decision.allowed:
                    out_key = (request.recipient_org, kind)
                    out[out_key] = out.get(out_key, 0) + 1
                delays.append(now_ms - request.occurred_at_ms)
        for key, count in decisions.items():
            counter = self._decision_counters.get(key)
            if counter is None:
                counter = self._decision_counters[key] = metrics.DECISIONS.labels(*key)
            counter.inc(count)
        for out_key, count in out.items():
            self._photos_out(*out_key).inc(count)
        observe = metrics.DECISION_LATENCY.observe
        for delay_ms in delays:
            observe(max(delay_ms / 1000, 0.0))
        metrics.SUSPENDED_RECIPIENTS.set(len(self.processor.suspensions))

    def _photos_out(self, recipient: str, kind: str) -> Any:
        counter = self._photos_out_counters.get((recipient, kind))
        if counter is None:
            label = recipient
            if self.processor.policy.recipient(recipient) is None:
                label = metrics.UNREGISTERED_RECIPIENT
            counter = self._photos_out_counters[(recipient, kind)] = metrics.PHOTOS_OUT.labels(
                label, kind
            )
        return counter
