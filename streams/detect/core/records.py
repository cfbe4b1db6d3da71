"""What the detectors read (:class:`DecisionEvent`) and write (:class:`Alert`, :class:`Control`).

:class:`Alert` and :class:`Control` map 1:1 onto the contract's ``Alert`` and ``Control`` Avro
records: :meth:`Alert.to_record` / :meth:`Control.to_record` return exactly the schema's fields,
timestamps as int epoch milliseconds. Their ids come from :func:`stable_id`, a UUID derived from
what identifies the episode (kind, subject, the bucket the episode started in), never random: a
replay of the same decisions after a crash yields the same ids, so consumers can deduplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from streams.core.times import to_millis
from streams.errors import InvalidEventError

DETECTOR_ACTOR = "consentinel-detector"
"""The ``actor`` of every control the detector writes."""

ALLOW = "ALLOW"
DENY = "DENY"
HOLD = "HOLD"
SHARE = "SHARE"
TRAINING_READ = "TRAINING_READ"

_ID_NAMESPACE = uuid.UUID("6b3f1f0e-6d1c-5a47-9a38-0c6e5e1d2a11")


def stable_id(*parts: str | int) -> str:
    """Return a UUID (version 5) naming ``parts``: equal parts always give the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(str(part) for part in parts)))


class AlertKind(StrEnum):
    """What a detector saw (the contract's ``AlertKind``)."""

    BULK_EXPORT = "BULK_EXPORT"
    DENIED_BURST = "DENIED_BURST"
    UNCONSENTED_TRAINING = "UNCONSENTED_TRAINING"
    RETROACTIVE_VIOLATION = "RETROACTIVE_VIOLATION"
    RECALL_OVERDUE = "RECALL_OVERDUE"


class Severity(StrEnum):
    """How urgently a person should look."""

    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertAction(StrEnum):
    """What the detector did about an alert."""

    NONE = "NONE"
    RECIPIENT_SUSPENDED = "RECIPIENT_SUSPENDED"


class ControlKind(StrEnum):
    """An operational command to every gate worker."""

    SUSPEND_RECIPIENT = "SUSPEND_RECIPIENT"
    RESUME_RECIPIENT = "RESUME_RECIPIENT"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, field for field the contract's ``Alert`` record.

    ``raised_at`` is the event time at which the detector saw the crossing (the pure detectors
    have no wall clock; the runner may stamp its own). ``revision`` is 0 for the alert itself and
    counts later updates of the same episode (same ``alert_id``, refreshed figures); it is not
    part of the Avro record.
    """

    alert_id: str
    raised_at: int
    kind: AlertKind
    severity: Severity
    subject: str
    window_start: int
    window_end: int
    observed: int
    threshold: float
    baseline: float | None
    summary: str
    sample_event_ids: tuple[str, ...] = ()
    action: AlertAction = AlertAction.NONE
    revision: int = 0

    def to_record(self) -> dict[str, Any]:
        """Return the Avro ``Alert`` record (exactly the schema's fields)."""
        return {
            "alert_id": self.alert_id,
            "raised_at": self.raised_at,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "observed": self.observed,
            "threshold": float(self.threshold),
            "baseline": None if self.baseline is None else float(self.baseline),
            "summary": self.summary,
            "sample_event_ids": list(self.sample_event_ids),
            "action": self.action.value,
        }


@dataclass(frozen=True, slots=True)
class Control:
    """One control, field for field the contract's ``Control`` record; key ``recipient_org``."""

    control_id: str
    at: int
    kind: ControlKind
    recipient_org: str
    reason: str
    actor: str = DETECTOR_ACTOR

    def to_record(self) -> dict[str, Any]:
        """Return the Avro ``Control`` record (exactly the schema's fields)."""
        return {
            "control_id": self.control_id,
            "at": self.at,
            "kind": self.kind.value,
            "recipient_org": self.recipient_org,
            "reason": self.reason,
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """The part of a ``Decision`` record the detectors use.

    ``at_ms`` is the detectors' clock (CONTRACT §5): the decision's ``decided_at``, the gate's
    clock, so that a forged ``occurred_at`` cannot blind a window (``occurred_at`` only when a
    record has no ``decided_at``). ``verdict``, ``subject_kind`` and ``reason`` are kept as symbols
    (``UNKNOWN`` included), so a symbol newer than this version is never mistaken for ``ALLOW``.
    ``model_id`` is read when the record carries one (a proposed optional field), else ``None``.
    """

    decision_id: str
    subject_event_id: str
    subject_kind: str
    photo_id: str
    owner_id: str
    actor: str
    recipient_org: str
    purpose: str
    verdict: str
    reason: str
    at_ms: int
    model_id: str | None = None
    categories: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """Whether the photo was let out (verdict ``ALLOW``)."""
        return self.verdict == ALLOW

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (see :meth:`from_dict`)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecisionEvent:
        """Rebuild from :meth:`to_dict` output."""
        values = dict(data)
        values["categories"] = tuple(values.get("categories") or ())
        return cls(**values)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DecisionEvent:
        """Build from a decoded ``Decision`` record; raise ``InvalidEventError`` if unusable."""

        def text(name: str) -> str:
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidEventError(
                    f"Decision {record.get('decision_id')!r}: field {name!r} is missing or empty"
                )
            return value

        occurred = _millis(record.get("occurred_at"))
        decided = _millis(record.get("decided_at"))
        at_ms = decided if decided else occurred
        if not at_ms:
            raise InvalidEventError(
                f"Decision {record.get('decision_id')!r} has neither occurred_at nor decided_at"
            )
        model = record.get("model_id")
        categories = record.get("categories") or ()
        return cls(
            decision_id=text("decision_id"),
            subject_event_id=text("subject_event_id"),
            subject_kind=text("subject_kind"),
            photo_id=text("photo_id"),
            owner_id=text("owner_id"),
            actor=text("actor"),
            recipient_org=text("recipient_org"),
            purpose=str(record.get("purpose") or "UNKNOWN"),
            verdict=text("verdict"),
            reason=str(record.get("reason") or "UNKNOWN"),
            at_ms=at_ms,
            model_id=model if isinstance(model, str) and model else None,
            categories=tuple(str(c) for c in categories),
        )


def _millis(value: Any) -> int:
    """Return a timestamp field as epoch milliseconds (0 when absent or unusable)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return to_millis(value)
    return 0


def push_sample(samples: list[str], event_id: str, size: int) -> None:
    """Append ``event_id`` to ``samples``, keeping only the latest ``size`` distinct ids."""
    if event_id in samples:
        return
    samples.append(event_id)
    if len(samples) > size:
        del samples[: len(samples) - size]
