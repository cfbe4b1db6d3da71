"""The contract's governance records that several components write: ``Alert`` and ``Control``.

One definition for the gate (``RETROACTIVE_VIOLATION`` alerts), the detectors (every other alert
and the suspensions they order) and the operators' commands (``recipients suspend|resume``).
:meth:`Alert.to_record` / :meth:`Control.to_record` return exactly the Avro schema's fields,
timestamps as int epoch milliseconds. Ids come from :func:`stable_id`, a UUID derived from what
identifies the episode, never random: a replay after a crash yields the same ids, so consumers
can deduplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DETECTOR_ACTOR = "consentinel-detector"
"""The ``actor`` of every control the detector writes."""

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
