"""The detector topology's steps as plain functions: decode, route, apply the pure detectors.

The topology (:mod:`streams.detect.topology`) is three steps, each a method here so that it can
be tested without a broker:

1. :meth:`DetectorSteps.route_decision` decodes a ``governance.decisions`` value (a value it
   cannot use becomes a ``governance.dlq`` record) and forwards a compact JSON copy twice: keyed
   by recipient, and keyed by actor (requester or job). :meth:`DetectorSteps.route_read` forwards
   each ``training.reads`` event's job -> model to the actor side.
2. :meth:`DetectorSteps.on_recipient` applies one forwarded decision to the recipient's
   bulk-export state and recipient denial-burst state (table values keyed by recipient).
3. :meth:`DetectorSteps.on_actor` applies it to the requester's denial-burst state and the
   job's unconsented-training state (table values keyed by actor).

Every subject's state is a :class:`~streams.detect.state.Tracked`: the pure detector's state
object and the last source offset applied to it per partition. A forwarded copy whose source
offset is not beyond the last one applied is a replay and is skipped, so a replay never counts a
decision twice. (The runtime is exactly once, so a replay can only come from a reprocessed
input topic; the filter is a second line of defence and costs one dict lookup.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams import topics
from streams.core.policy import Policy
from streams.core.times import to_millis
from streams.detect import metrics
from streams.detect.core.bulk_export import BulkExportConfig, BulkExportOutcome
from streams.detect.core.denied_burst import BurstDimension, DeniedBurstConfig
from streams.detect.core.pipeline import DetectorSet
from streams.detect.core.records import Alert, Control, DecisionEvent
from streams.detect.core.unconsented_training import UnconsentedTrainingConfig
from streams.detect.state import Tracked
from streams.errors import ConsentinelError
from streams.runtime.dead_letters import dead_letter
from streams.runtime.records import RawInput
from streams.serde.wire import AvroCodec


@dataclass(frozen=True, slots=True)
class Output:
    """A record to produce: contract topic name (unprefixed), key, Avro record."""

    topic: str
    key: str
    record: dict[str, Any]


@dataclass
class Applied:
    """The new table values after one forwarded record, and what to produce."""

    values: dict[str, Any]
    outputs: list[Output] = field(default_factory=list)
    duplicate: bool = False


class DetectorSteps:
    """Shared by the agents: the policy, the pure detectors and the codec."""

    def __init__(
        self,
        policy: Policy,
        codec: AvroCodec,
        *,
        topic_prefix: str = "",
        bulk: BulkExportConfig | None = None,
        bursts: DeniedBurstConfig | None = None,
        training: UnconsentedTrainingConfig | None = None,
        publish_updates: bool = True,
    ) -> None:
        self.policy = policy
        self.codec = codec
        self.prefix = topic_prefix
        self.detectors = DetectorSet.from_policy(
            policy, bulk=bulk, bursts=bursts, training=training
        )
        self.publish_updates = publish_updates
        self.registered = frozenset(policy.recipients)
        self._recipient_gauges: dict[str, tuple[Any, Any, Any]] = {}
        """Each policy recipient's three gauge children (only policy recipients have them)."""
        for org, limit in self.detectors.bulk.limits.items():
            metrics.RECIPIENT_LIMIT.labels(org).set(limit.max_photos_per_hour)
        metrics.initialise(self.detectors.bulk.limits)

    def topic(self, contract_topic: str) -> str:
        """Return the real name of a contract topic (with the settings' prefix)."""
        return self.prefix + contract_topic

    # ------------------------------------------------------------------ step 1: route

    def route_decision(
        self,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        offset: int,
        decoded: Mapping[str, Any] | None = None,
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], Output | None]:
        """Decode one decision; return ``[(side, key, forwarded)]`` or a dead letter.

        ``side`` is ``"recipient"`` or ``"actor"``; ``decoded`` is the value if already decoded.
        """
        metrics.DECISIONS_CONSUMED.inc()
        source = topics.TOPIC_DECISIONS
        try:
            record = decoded
            if record is None:
                record = self.codec.decode(self.topic(source), value)
            event = DecisionEvent.from_record(record)
        except ConsentinelError as exc:
            return [], self._dead_letter(source, key, value, partition, offset, exc)
        metrics.EVENT_LAG.set(max(0.0, time.time() - event.at_ms / 1000))
        # "d": when the gate decided (its wall clock), for the detection latency of an alert
        forwarded = {"e": event.to_dict(), "src": [partition, offset], "d": _wall_ms(record)}
        return [
            ("recipient", self.recipient_key(event), forwarded),
            ("actor", event.actor, forwarded),
        ], None

    def recipient_key(self, event: DecisionEvent) -> str:
        """Return the recipient-side key of a decision: its recipient, or :data:`UNREGISTERED`.

        A decision that let nothing out to a recipient the policy does not know counts for no
        bulk export; its denial counts for the one :data:`UNREGISTERED` subject, so requests
        naming invented recipients cannot grow the detector's state (one entry, not one each).
        An ``ALLOW`` keeps its recipient (a gate whose policy is newer than the detector's).
        """
        org = event.recipient_org
        if event.allowed or org in self.registered:
            return org
        return UNREGISTERED

    def route_read(
        self,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        offset: int,
        decoded: Mapping[str, Any] | None = None,
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], Output | None]:
        """Decode one training read; forward its job -> model to the actor side.

        A read that cannot be decoded is skipped (the gate dead-letters the input topics).
        ``decoded`` is the value if already decoded.
        """
        try:
            record = (
                decoded
                if decoded is not None
                else self.codec.decode(self.topic(topics.TOPIC_TRAINING_READS), value)
            )
        except ConsentinelError:
            return [], None
        job, model = record.get("job_id"), record.get("model_id")
        if not isinstance(job, str) or not isinstance(model, str) or not job or not model:
            return [], None
        forwarded = {"job_model": [job, model, record.get("org")], "src": None}
        return [("actor", job, forwarded)], None

    def _dead_letter(
        self,
        source: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        offset: int,
        exc: ConsentinelError,
    ) -> Output:
        raw = RawInput(source, partition, offset, 0, key, value)
        letter = dead_letter(raw, exc.error_kind, str(exc), at_ms=int(time.time() * 1000))
        record = letter.value
        assert isinstance(record, dict)
        return Output(topics.TOPIC_DLQ, key.decode("utf-8", "replace") if key else "", record)

    # ------------------------------------------------------------------ step 2: recipients

    def on_recipient(
        self, forwarded: Mapping[str, Any], bulk: Tracked | None, burst: Tracked | None
    ) -> Applied:
        """Apply a forwarded decision to its recipient's states (``bulk``, ``burst``).

        The states are live objects (:class:`~streams.detect.state.Tracked`), changed in place;
        the returned values are what the table holds afterwards (None: delete).
        """
        event = DecisionEvent.from_dict(forwarded["e"])
        src = forwarded.get("src")
        if (bulk is not None and bulk.seen(src)) or (burst is not None and burst.seen(src)):
            return Applied({"bulk": bulk, "burst": burst}, duplicate=True)
        det = self.detectors
        org = self.recipient_key(event)
        decided = forwarded.get("d")
        outputs: list[Output] = []
        if org != UNREGISTERED:
            if bulk is None:
                bulk = Tracked(det.bulk.new_state(org))
            outcome = det.bulk.observe(bulk.state, event)
            bulk.note(src)
            self._gauges(outcome)
            outputs += self._outputs(outcome.alert, outcome.control, decided)
            _episode_gauge("BULK_EXPORT", "recipient", org, bulk.state.episode.active)
        if det.bursts.subjects(event):
            if burst is None:
                burst = Tracked(det.bursts.new_state(BurstDimension.RECIPIENT, org))
            found = det.bursts.observe(burst.state, event)
            burst.note(src)
            outputs += self._outputs(found.alert, None, decided)
            _episode_gauge("DENIED_BURST", "recipient", org, burst.state.episode.active)
            if burst.state.is_idle():
                burst = None
        return Applied({"bulk": bulk, "burst": burst}, outputs)

    def _gauges(self, outcome: BulkExportOutcome) -> None:
        if outcome.recipient not in self.registered:
            return  # an unregistered recipient has no gauges (labels stay bounded)
        gauges = self._recipient_gauges.get(outcome.recipient)
        if gauges is None:
            gauges = self._recipient_gauges[outcome.recipient] = (
                metrics.RECIPIENT_PHOTOS_LAST_HOUR.labels(outcome.recipient),
                metrics.RECIPIENT_BASELINE.labels(outcome.recipient),
                metrics.RECIPIENT_THRESHOLD.labels(outcome.recipient),
            )
        photos, baseline, threshold = gauges
        photos.set(outcome.observed)
        base = outcome.baseline
        baseline.set(float("nan") if base is None else base.median)
        limit = outcome.threshold
        threshold.set(float("nan") if limit is None else limit)

    def on_resume(self, bulk: Tracked, control_id: str, at_ms: int) -> list[Output]:
        """Apply an operator's resume to a recipient's bulk state; return what to produce."""
        outcome = self.detectors.bulk.resume(bulk.state, control_id, at_ms)
        if outcome is None:
            return []
        self._gauges(outcome)
        org = outcome.recipient
        _episode_gauge("BULK_EXPORT", "recipient", org, bulk.state.episode.active)
        return self._outputs(outcome.alert, outcome.control)

    # ------------------------------------------------------------------ step 3: actors

    def on_actor(
        self,
        forwarded: Mapping[str, Any],
        burst: Tracked | None,
        job: Tracked | None,
        job_model: str | None,
    ) -> Applied:
        """Apply a forwarded decision (or a job -> model fact) to its actor's states.

        Returns values for ``burst``, ``job`` and ``job_model`` (the model learned for the job);
        ``burst`` and ``job`` are live objects, changed in place.
        """
        if "job_model" in forwarded:
            _, model, _ = forwarded["job_model"]
            return Applied({"burst": burst, "job": job, "job_model": model})
        event = DecisionEvent.from_dict(forwarded["e"])
        src = forwarded.get("src")
        decided = forwarded.get("d")
        values: dict[str, Any] = {"burst": burst, "job": job, "job_model": job_model}
        if (burst is not None and burst.seen(src)) or (job is not None and job.seen(src)):
            return Applied(values, duplicate=True)
        det = self.detectors
        outputs: list[Output] = []
        if det.bursts.subjects(event):
            if burst is None:
                burst = Tracked(det.bursts.new_state(BurstDimension.REQUESTER, event.actor))
            found = det.bursts.observe(burst.state, event)
            burst.note(src)
            outputs += self._outputs(found.alert, None, decided)
            _episode_gauge("DENIED_BURST", "requester", event.actor, burst.state.episode.active)
            values["burst"] = None if burst.state.is_idle() else burst
        if det.training.watches(event):
            if job is None:
                job = Tracked(det.training.new_state(event.actor))
            alert = det.training.observe(job.state, event, model_id=job_model)
            job.note(src)
            outputs += self._outputs(alert, None, decided)
            values["job"] = job
        return Applied(values, outputs)

    # ------------------------------------------------------------------ outputs

    def _outputs(
        self, alert: Alert | None, control: Control | None, decided_ms: int | None = None
    ) -> list[Output]:
        """Turn an alert (or update) and a control into records to produce; count them.

        ``decided_ms`` is when the gate decided the crossing decision (wall clock): a new alert
        observes the detection latency from then to now.
        """
        out: list[Output] = []
        if alert is not None:
            if alert.revision == 0:
                metrics.ALERTS.labels(alert.kind.value, alert.severity.value).inc()
                if decided_ms:
                    latency = time.time() - decided_ms / 1000
                    metrics.DETECTION_LATENCY.observe(max(0.0, latency))
            else:
                metrics.ALERT_UPDATES.labels(alert.kind.value).inc()
            if alert.revision == 0 or self.publish_updates:
                out.append(Output(topics.TOPIC_ALERTS, alert.subject, alert.to_record()))
        if control is not None:
            metrics.SUSPENSIONS.labels(
                metrics.recipient_label(control.recipient_org, self.registered)
            ).inc()
            out.append(Output(topics.TOPIC_CONTROLS, control.recipient_org, control.to_record()))
        return out

    def encode(self, output: Output) -> tuple[str, bytes, bytes]:
        """Return ``(real topic, key bytes, value bytes)`` for an output."""
        name = self.topic(output.topic)
        return name, output.key.encode("utf-8"), self.codec.encode(name, output.record)


UNREGISTERED = "*unregistered*"
"""The one recipient-side subject of every recipient the policy does not know (no policy id
can take this name: policy ids use only ``[a-z0-9._-]``)."""

_ACTIVE: set[tuple[str, str, str]] = set()


def _episode_gauge(kind: str, subject_kind: str, subject: str, active: bool) -> None:
    """Keep ``consentinel_detector_episode_active`` in step with one subject's episode."""
    key = (kind, subject_kind, subject)
    if active and key not in _ACTIVE:
        _ACTIVE.add(key)
        metrics.EPISODE_ACTIVE.labels(kind, subject_kind).inc()
    elif not active and key in _ACTIVE:
        _ACTIVE.discard(key)
        metrics.EPISODE_ACTIVE.labels(kind, subject_kind).dec()


def _wall_ms(record: Mapping[str, Any]) -> int | None:
    """Return a decision's ``decided_at`` as epoch milliseconds (None when absent)."""
    value = record.get("decided_at")
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
