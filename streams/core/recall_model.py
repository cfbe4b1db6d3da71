"""The records of erasure and recall: ``ErasureRequested`` in, ``RecallOrder`` out, and transfers.

Pure data with validating constructors; the logic is in :mod:`streams.core.recall`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streams.core.model import AccessRequest, Decision
from streams.errors import InvalidEventError, UnknownEnumSymbolError


class ErasureScope(StrEnum):
    """How much an ``ErasureRequested`` erases."""

    PHOTO = "PHOTO"
    ACCOUNT = "ACCOUNT"


class RecallCause(StrEnum):
    """Why a ``RecallOrder`` was issued (the contract's ``cause``)."""

    ERASURE_REQUESTED = "ERASURE_REQUESTED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"
    UNCONSENTED_TRAINING = "UNCONSENTED_TRAINING"
    RETROACTIVE_VIOLATION = "RETROACTIVE_VIOLATION"


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A decoded ``ErasureRequested``; ``photo_id`` is set for ``PHOTO``, null for ``ACCOUNT``."""

    event_id: str
    occurred_at_ms: int
    request_id: str
    user_id: str
    scope: ErasureScope
    photo_id: str | None
    reason: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ErasureRequest:
        """Build from a decoded record; raise ``InvalidEventError`` if it is unusable.

        An unknown ``scope`` is refused (the gate must dead-letter it, not guess how much to erase);
        ``reason`` is informational and kept as its symbol, ``UNKNOWN`` included.
        """
        where = f"ErasureRequested {record.get('event_id')!r}"

        def text(name: str) -> str:
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidEventError(f"{where}: field {name!r} is missing or empty")
            return value

        occurred = record.get("occurred_at")
        if not isinstance(occurred, int) or isinstance(occurred, bool):
            raise InvalidEventError(f"{where}: field 'occurred_at' must be epoch milliseconds")
        scope_symbol = record.get("scope")
        if not isinstance(scope_symbol, str) or scope_symbol not in ErasureScope.__members__:
            raise UnknownEnumSymbolError(
                f"{where}: field 'scope' holds {scope_symbol!r}, which this version does not know",
                hint="upgrade Consentinel to a version that knows the symbol",
            )
        scope = ErasureScope(scope_symbol)
        photo = record.get("photo_id")
        if scope is ErasureScope.PHOTO and (not isinstance(photo, str) or not photo.strip()):
            raise InvalidEventError(f"{where}: a PHOTO erasure must name its photo_id")
        if scope is ErasureScope.ACCOUNT and photo is not None:
            raise InvalidEventError(
                f"{where}: an ACCOUNT erasure must have photo_id null",
                hint="send one PHOTO erasure per photo, or an ACCOUNT erasure without photo_id",
            )
        return cls(
            event_id=text("event_id"),
            occurred_at_ms=occurred,
            request_id=text("request_id"),
            user_id=text("user_id"),
            scope=scope,
            photo_id=photo if isinstance(photo, str) else None,
            reason=str(record.get("reason") or "UNKNOWN"),
        )


@dataclass(frozen=True, slots=True)
class Transfer:
    """One photo that reached a recipient: an allowed share, or a training read (any verdict)."""

    decision_id: str
    photo_id: str
    recipient_org: str
    purpose: str
    allowed: bool
    consent_event_id: str | None
    at_ms: int
    job_id: str | None = None
    model_id: str | None = None

    @classmethod
    def from_decision(cls, decision: Decision, decision_id: str) -> Transfer | None:
        """Return the transfer a decision made, or ``None`` (a share not allowed never left)."""
        request: AccessRequest = decision.request
        if request.model_id is None and not decision.allowed:
            return None
        return cls(
            decision_id=decision_id,
            photo_id=request.photo_id,
            recipient_org=request.recipient_org,
            purpose=request.purpose.value,
            allowed=decision.allowed,
            consent_event_id=decision.consent_event_id,
            at_ms=request.occurred_at_ms,
            job_id=request.job_id,
            model_id=request.model_id,
        )


@dataclass(frozen=True, slots=True)
class RecallOrder:
    """One ``RecallOrder``, field for field; :meth:`to_record` is the Avro record."""

    order_id: str
    issued_at: int
    recipient_org: str
    user_id: str
    photo_ids: tuple[str, ...]
    model_ids: tuple[str, ...]
    cause: RecallCause
    decision_ids: tuple[str, ...]
    due_at: int

    def to_record(self) -> dict[str, Any]:
        """Return the Avro ``RecallOrder`` record (exactly the schema's fields)."""
        return {
            "order_id": self.order_id,
            "issued_at": self.issued_at,
            "recipient_org": self.recipient_org,
            "user_id": self.user_id,
            "photo_ids": list(self.photo_ids),
            "model_ids": list(self.model_ids),
            "cause": self.cause.value,
            "decision_ids": list(self.decision_ids),
            "due_at": self.due_at,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RecallOrder:
        """Build from a decoded record; ``InvalidEventError`` if an id or time is missing."""
        try:
            order = cls(
                order_id=str(record["order_id"]),
                issued_at=int(record["issued_at"]),
                recipient_org=str(record["recipient_org"]),
                user_id=str(record["user_id"]),
                photo_ids=tuple(record.get("photo_ids") or ()),
                model_ids=tuple(record.get("model_ids") or ()),
                cause=RecallCause(record["cause"]),
                decision_ids=tuple(record.get("decision_ids") or ()),
                due_at=int(record["due_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEventError(
                f"RecallOrder {record.get('order_id')!r} is unusable: {exc}"
            ) from exc
        if not order.order_id or not order.recipient_org:
            raise InvalidEventError("RecallOrder without order_id or recipient_org")
        return order
