"""What the detectors read (:class:`DecisionEvent`), plus the governance records they write.

:class:`Alert` and :class:`Control` are the contract's records, defined once in
:mod:`streams.core.governance` and re-exported here for the detectors' modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.core.governance import (
    DETECTOR_ACTOR,
    Alert,
    AlertAction,
    AlertKind,
    Control,
    ControlKind,
    Severity,
    stable_id,
)
from streams.core.times import to_millis
from streams.errors import InvalidEventError

__all__ = [
    "ALLOW",
    "DENY",
    "DETECTOR_ACTOR",
    "HOLD",
    "SHARE",
    "TRAINING_READ",
    "Alert",
    "AlertAction",
    "AlertKind",
    "Control",
    "ControlKind",
    "DecisionEvent",
    "Severity",
    "push_sample",
    "stable_id",
]

ALLOW = "ALLOW"
DENY = "DENY"
HOLD = "HOLD"
SHARE = "SHARE"
TRAINING_READ = "TRAINING_READ"


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
