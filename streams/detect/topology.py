"""The detectors as a topology on the stream runtime (:mod:`streams.runtime`), in two stages.

Stage 1 reads ``governance.decisions`` (keyed by owner) and ``training.reads``, merged across
all the partitions the process holds by event time (a decision's ``decided_at``, contract §5;
the runtime's merge, ``TopologySpec.merge_partitions``), and re-keys what
the detectors need onto two internal repartition topics, in the same transaction as the offsets
it consumed: ``consentinel-detector.by-recipient`` (keyed by recipient) and
``consentinel-detector.by-actor`` (keyed by requester or job, with each job's model). Stage 2
reads those topics, so that each subject's decisions meet in one partition, and applies them to
the pure detectors (:class:`~streams.detect.steps.DetectorSteps`) with their state in a
changelogged store. Alerts, ``SUSPEND_RECIPIENT`` controls and dead letters are written in stage
2's transactions. Recall orders and their acknowledgements (both keyed by recipient) are
tracked per partition, and a wall-clock punctuation raises ``RECALL_OVERDUE`` for an order not
fully acknowledged by its ``due_at`` (:mod:`streams.detect.recalls`). ``governance.controls`` is
a global table: an operator's ``RESUME_RECIPIENT`` ends the recipient's ``BULK_EXPORT`` episode
at the next punctuation (:mod:`streams.detect.resumes`). Every read is
``read_committed``: a decision from an aborted gate transaction
is never counted, and after any crash each decision is counted exactly once.

Where the windows are counted (stage 2) the merge holds while one process holds every
partition (its stage-1 output to its own partitions is processed at once, in merged order:
the runtime's local loopback). With several detector instances, what another instance's stage 1
forwards arrives in that instance's merged order, interleaved with this one's by commit: a
catch-up then counts each instance's partitions in order, not all of them together.

Stage 2's state (:class:`~streams.detect.state.DetectorState`): per subject, the pure detectors'
live state objects, changelogged as JSON once per transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streams import topics
from streams.core.partitioning import partition_for
from streams.detect import steps
from streams.detect.recalls import RecallStage, RecallState
from streams.detect.resumes import ResumesTable
from streams.detect.state import (
    BULK,
    JOB,
    MODEL,
    RECIPIENT_BURST,
    REQUESTER_BURST,
    DetectorState,
    StateCodec,
)
from streams.errors import ConsentinelError, TransientError
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.stores import KeyValueStore
from streams.runtime.topology import GlobalTable, TopologySpec

_JSON = json.JSONEncoder(separators=(",", ":"))

_EVENT_TIME = {topics.TOPIC_DECISIONS: "decided_at", topics.TOPIC_TRAINING_READS: "occurred_at"}
"""The field that gives a merged input its event time (others: their append time)."""


class DetectorTopology:
    """Routes decisions by subject (stage 1) and runs the detectors per subject (stage 2)."""

    def __init__(
        self,
        detector: steps.DetectorSteps,
        *,
        app_name: str = topics.DETECTOR_APP,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.steps = detector
        self.partitions = 0
        self.recall_stage = RecallStage(detector.registered, clock_ms, detector.policy)
        self._codec = StateCodec(detector.detectors)
        self._last_forwarded: tuple[bytes, dict[str, Any]] | None = None
        self._recalls: dict[int, RecallState] = {}
        by_recipient, by_actor, changelog = topics.detector_topics(app_name)
        self.by_recipient, self.by_actor = by_recipient, by_actor
        self._sides = {"recipient": by_recipient, "actor": by_actor}
        self.resumes = ResumesTable(detector.codec, detector.topic(topics.TOPIC_CONTROLS))
        self.spec = TopologySpec(
            name=app_name,
            sources=(
                topics.TOPIC_DECISIONS,
                topics.TOPIC_TRAINING_READS,
                topics.TOPIC_RECALLS,
                topics.TOPIC_RECALL_ACKS,
                by_recipient,
                by_actor,
            ),
            outputs=(
                topics.TOPIC_ALERTS,
                topics.TOPIC_CONTROLS,
                topics.TOPIC_DLQ,
                by_recipient,
                by_actor,
            ),
            changelog=changelog,
            internal=(by_recipient, by_actor),
            synchronized=True,
            merge_partitions=True,
            global_tables=(GlobalTable(topics.TOPIC_CONTROLS, self.resumes),),
        )

    def bind(self, partitions: int) -> None:
        """Learn the partition count of the sources (and so of the repartition topics)."""
        self.partitions = partitions

    def open_state(self, partition: int, store: KeyValueStore) -> DetectorState:
        """Return the partition's empty state over ``store``."""
        state = DetectorState(store, self._codec)
        self._recalls[partition] = state.recalls
        return state

    def forget(self, partition: int) -> None:
        """Drop a revoked partition's recall orders from the gauges."""
        self._recalls.pop(partition, None)

    def delivered(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Nothing to learn: the detector tracks none of its outputs' offsets."""

    def event_time(self, raw: RawInput) -> int:
        """Order inputs by event time across all partitions held (decoded once, kept on ``raw``).

        A decision by its ``decided_at`` (the detectors' clock), a training read by its
        ``occurred_at`` (never later than its decision's ``decided_at``), recall orders and
        acknowledgements by their append time. The runtime merges every partition's sources by
        this time (``merge_partitions``), so stage 1 forwards, and stage 2 counts, a backlog
        in the order live traffic had. An input that cannot be decoded is ordered by its append
        time; :meth:`process` dead-letters it (or it is retried, when the registry was down).
        """
        field = _EVENT_TIME.get(raw.topic)
        if field is None:
            return raw.timestamp_ms
        try:
            raw.decoded = record = self.steps.codec.decode(self.steps.topic(raw.topic), raw.value)
        except ConsentinelError:
            return raw.timestamp_ms
        at = record.get(field)
        return at if isinstance(at, int) and not isinstance(at, bool) else raw.timestamp_ms

    def process(self, raw: RawInput, state: DetectorState) -> Processed:
        """Route (stage 1) or apply (stage 2) one record."""
        try:
            if raw.topic == topics.TOPIC_DECISIONS:
                forwards, dead = self.steps.route_decision(
                    raw.key, raw.value, raw.partition, raw.offset, raw.decoded
                )
                if dead is not None:
                    return Processed([_output(dead)], dead_letter_kind=dead.record["error_kind"])
                return Processed(self._forward(forwards))
            if raw.topic == topics.TOPIC_TRAINING_READS:
                forwards, _ = self.steps.route_read(
                    raw.key, raw.value, raw.partition, raw.offset, raw.decoded
                )
                return Processed(self._forward(forwards))
            if raw.topic in (topics.TOPIC_RECALLS, topics.TOPIC_RECALL_ACKS):
                record = self.steps.codec.decode(self.steps.topic(raw.topic), raw.value)
                if raw.topic == topics.TOPIC_RECALLS:
                    return Processed(self.recall_stage.on_order(record, state.recalls))
                self.recall_stage.on_ack(raw, record, state.recalls)
                return Processed()
            forwarded = self._decode_forwarded(raw.value or b"{}")
            key = (raw.key or b"").decode("utf-8")
            if raw.topic == self.by_recipient:
                return self._on_recipient(key, forwarded, state)
            return self._on_actor(key, forwarded, state)
        except TransientError:
            raise
        except (ConsentinelError, ValueError, KeyError, TypeError) as exc:
            kind = getattr(exc, "error_kind", "INVALID_EVENT")
            return Processed(
                [
                    _output(
                        self.steps._dead_letter(
                            raw.topic, raw.key, raw.value, raw.partition, raw.offset, _wrap(exc)
                        )
                    )
                ],
                dead_letter_kind=kind,
            )

    def _forward(self, forwards: list[tuple[str, str, dict[str, Any]]]) -> list[Output]:
        """Re-key each copy onto its side's repartition topic; a copy sent twice is encoded once."""
        outputs = []
        encoded: dict[int, bytes] = {}
        for side, key, value in forwards:
            payload = encoded.get(id(value))
            if payload is None:
                payload = encoded[id(value)] = _JSON.encode(value).encode()
            key_bytes = key.encode("utf-8")
            outputs.append(
                Output(
                    self._sides[side],
                    partition_for(key_bytes, self.partitions),
                    key_bytes,
                    payload,
                )
            )
        return outputs

    def _decode_forwarded(self, payload: bytes) -> dict[str, Any]:
        """Decode a forwarded copy; the same bytes twice in a row (both sides) are decoded once.

        The decoded copy is only read, never changed, so sharing it is safe.
        """
        last = self._last_forwarded
        if last is not None and last[0] == payload:
            return last[1]
        forwarded = json.loads(payload)
        if not isinstance(forwarded, dict):
            raise ValueError(f"a forwarded copy is a JSON object, not {type(forwarded).__name__}")
        self._last_forwarded = (payload, forwarded)
        return forwarded

    def _on_recipient(self, key: str, forwarded: dict[str, Any], state: DetectorState) -> Processed:
        bulk_key, burst_key = BULK + key, RECIPIENT_BURST + key
        applied = self.steps.on_recipient(forwarded, state.get(bulk_key), state.get(burst_key))
        if applied.duplicate:
            return Processed()
        state.put(bulk_key, applied.values["bulk"])
        state.put(burst_key, applied.values["burst"])
        return Processed([_output(o) for o in applied.outputs])

    def _on_actor(self, key: str, forwarded: dict[str, Any], state: DetectorState) -> Processed:
        burst_key, job_key, model_key = REQUESTER_BURST + key, JOB + key, MODEL + key
        model = state.get(model_key)
        applied = self.steps.on_actor(forwarded, state.get(burst_key), state.get(job_key), model)
        if applied.duplicate:
            return Processed()
        values = applied.values
        state.put(burst_key, values["burst"])
        state.put(job_key, values["job"])
        if values["job_model"] != model:
            state.put(model_key, values["job_model"])
        return Processed([_output(o) for o in applied.outputs])

    def committed(self, facts: Sequence[Any]) -> None:
        """Nothing to count after the commit: the steps count as they go."""

    def punctuate(
        self, partition: int, state: DetectorState, now_ms: int, *, sources_behind: bool = False
    ) -> Processed:
        """Return what wall-clock time made due: overdue recalls, and resumes to apply.

        ``RECALL_OVERDUE`` alerts, and the alerts (and suspensions) of recipients that an
        operator resumed while still above their limit.
        """
        outputs = self._resumed(partition, state)
        outputs += self.recall_stage.overdue(state.recalls, now_ms)
        if partition == min(self._recalls, default=partition):
            self.recall_stage.gauge(list(self._recalls.values()), now_ms)
        return Processed(outputs)

    def _resumed(self, partition: int, state: DetectorState) -> list[Output]:
        """Apply the resumes of this partition's recipients (stage 2 counts them here)."""
        if not self.resumes.pending:
            return []
        outputs: list[Output] = []
        partitions = self.partitions

        def owns(org: str) -> bool:
            return partition_for(org.encode("utf-8"), partitions) == partition

        for org, control_id, at_ms in self.resumes.take(owns):
            bulk_key = BULK + org
            bulk = state.get(bulk_key)
            if bulk is None:
                continue
            produced = self.steps.on_resume(bulk, control_id, at_ms)
            state.put(bulk_key, bulk)
            outputs += [_output(o) for o in produced]
        return outputs


def _output(output: steps.Output) -> Output:
    """Turn a detector step's output into a runtime output (key as UTF-8 bytes)."""
    return Output(output.topic, None, output.key.encode("utf-8"), output.record)


def _wrap(exc: Exception) -> ConsentinelError:
    if isinstance(exc, ConsentinelError):
        return exc
    from streams.errors import InvalidEventError

    return InvalidEventError(f"unusable internal record: {type(exc).__name__}: {exc}")
