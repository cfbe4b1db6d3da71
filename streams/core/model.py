"""Enums and immutable records the gate reasons about, built from decoded events.

Input records are plain dicts as fastavro decodes the contract's Avro records: enums as symbol
strings, timestamps as ``int`` epoch milliseconds (a :class:`~datetime.datetime` is accepted too),
nullable fields ``None``. The ``from_*`` constructors validate what the gate relies on and raise
:class:`~streams.errors.InvalidEventError` (missing or empty id, wrong type) or
:class:`~streams.errors.UnknownEnumSymbolError` (an enum read as ``UNKNOWN``, naming the field), so
that an event the gate cannot understand never reaches a decision rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from streams.core.audit import plain_chain_hash
from streams.core.times import to_millis
from streams.errors import InvalidEventError, UnknownEnumSymbolError

UNKNOWN_SYMBOL = "UNKNOWN"


class Purpose(StrEnum):
    """Why data is used (contract section 1)."""

    SERVICE_OPERATION = "SERVICE_OPERATION"
    ANALYTICS = "ANALYTICS"
    ADVERTISING = "ADVERTISING"
    RESEARCH = "RESEARCH"
    ML_TRAINING = "ML_TRAINING"
    PARTNER_SHARING = "PARTNER_SHARING"
    UNKNOWN = "UNKNOWN"


class DataCategory(StrEnum):
    """What kind of personal data is used (contract section 1)."""

    IMAGE = "IMAGE"
    FACE_BIOMETRIC = "FACE_BIOMETRIC"
    DEMOGRAPHIC = "DEMOGRAPHIC"
    LOCATION = "LOCATION"
    PROFILE_TEXT = "PROFILE_TEXT"
    UNKNOWN = "UNKNOWN"


class Verdict(StrEnum):
    """The outcome of a decision; only ``ALLOW`` lets a photo leave."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    HOLD = "HOLD"


class Reason(StrEnum):
    """Why a decision came out as it did (contract section 2, ``reason``)."""

    CONSENTED = "CONSENTED"
    NOT_CONSENT_BASED = "NOT_CONSENT_BASED"
    NO_CONSENT = "NO_CONSENT"
    CONSENT_REVOKED = "CONSENT_REVOKED"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CATEGORY_NOT_CONSENTED = "CATEGORY_NOT_CONSENTED"
    UNKNOWN_PHOTO = "UNKNOWN_PHOTO"
    OWNER_MISMATCH = "OWNER_MISMATCH"
    RECIPIENT_UNKNOWN = "RECIPIENT_UNKNOWN"
    NO_AGREEMENT = "NO_AGREEMENT"
    PURPOSE_NOT_PERMITTED = "PURPOSE_NOT_PERMITTED"
    RECIPIENT_SUSPENDED = "RECIPIENT_SUSPENDED"
    ERASED = "ERASED"
    UNKNOWN = "UNKNOWN"


class SubjectKind(StrEnum):
    """Which input event a decision is about."""

    SHARE = "SHARE"
    TRAINING_READ = "TRAINING_READ"


_E = TypeVar("_E", Purpose, DataCategory)

_PURPOSES: dict[str, Purpose] = {p.value: p for p in Purpose if p is not Purpose.UNKNOWN}
_CATEGORIES: dict[str, DataCategory] = {
    c.value: c for c in DataCategory if c is not DataCategory.UNKNOWN
}


# --------------------------------------------------------------------------- recipient ids

RECIPIENT_ID_CHARS = re.compile(r"[a-z0-9._-]+")
"""What a recipient id in the policy may consist of (CONTRACT §3, "Recipient ids")."""


def canonical_recipient(value: str) -> str:
    """Return a recipient id as the gate compares it: NFKC-normalized, case-folded, trimmed.

    ``Acme-Vision`` and ``acme-vision `` are ``acme-vision``; NFKC maps compatibility forms
    (full-width letters, ligatures) to plain ones, but not look-alikes such as U+2010 HYPHEN,
    which therefore stay a different recipient. Case folding can undo NFKC, so it runs again.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return folded.strip()


def recipient_id_problem(value: str) -> str | None:
    """Return why ``value`` may not be a policy's recipient id, or ``None`` if it may.

    A policy's ids must already be canonical (:func:`canonical_recipient`) and use only
    ``[a-z0-9._-]``, so that what the operator reads is exactly what the gate compares.
    """
    canonical = canonical_recipient(value)
    if not canonical:
        return "is blank"
    if canonical != value:
        return (
            f"is not in canonical form: recipient ids are compared after NFKC normalization,"
            f" case folding and trimming, which make it {canonical!r}"
        )
    if not RECIPIENT_ID_CHARS.fullmatch(value):
        bad = sorted({c for c in value if not RECIPIENT_ID_CHARS.fullmatch(c)})
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad)
        return f"uses characters outside [a-z0-9._-]: {shown}"
    return None


# --------------------------------------------------------------------------- field readers


def _where(record: Mapping[str, Any], what: str) -> str:
    event_id = record.get("event_id")
    return f"{what} {event_id!r}" if isinstance(event_id, str) and event_id else what


def _id(record: Mapping[str, Any], field: str, what: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidEventError(
            f"{_where(record, what)}: field {field!r} is missing or empty (got {value!r})",
            hint="the producer must set every id field of the contract",
        )
    return value


def _recipient(record: Mapping[str, Any], field: str, what: str) -> str:
    """Return a recipient id field in canonical form (see :func:`canonical_recipient`)."""
    value = canonical_recipient(_id(record, field, what))
    if not value:
        raise InvalidEventError(f"{_where(record, what)}: field {field!r} is blank")
    return value


def _opt_str(record: Mapping[str, Any], field: str, what: str) -> str | None:
    value = record.get(field)
    if value is None or isinstance(value, str):
        return value
    raise InvalidEventError(f"{_where(record, what)}: field {field!r} must be a string or null")


def _opt_millis(record: Mapping[str, Any], field: str, what: str) -> int | None:
    if record.get(field) is None:
        return None
    return _millis(record, field, what)


def _millis(record: Mapping[str, Any], field: str, what: str) -> int:
    value = record.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return to_millis(value)
    raise InvalidEventError(
        f"{_where(record, what)}: field {field!r} must be a timestamp in epoch milliseconds"
        f" (got {value!r})"
    )


def _symbol(record: Mapping[str, Any], field: str, what: str, table: dict[str, _E]) -> _E:
    value = record.get(field)
    if not isinstance(value, str):
        raise InvalidEventError(f"{_where(record, what)}: field {field!r} must be an enum symbol")
    member = table.get(value)
    if member is None:
        raise UnknownEnumSymbolError(
            f"{_where(record, what)}: field {field!r} holds a symbol this version does not know"
            f" ({value!r})",
            hint="upgrade Consentinel to a version that knows the symbol",
        )
    return member


def _categories(record: Mapping[str, Any], what: str, *, strict: bool) -> frozenset[DataCategory]:
    raw = record.get("categories")
    if raw is None:
        return frozenset()
    if not isinstance(raw, (list, tuple)):
        raise InvalidEventError(f"{_where(record, what)}: field 'categories' must be a list")
    out: set[DataCategory] = set()
    for value in raw:
        member = _CATEGORIES.get(value) if isinstance(value, str) else None
        if member is None:
            if strict:
                raise UnknownEnumSymbolError(
                    f"{_where(record, what)}: field 'categories' holds a symbol this version does"
                    f" not know ({value!r})",
                    hint="upgrade Consentinel to a version that knows the symbol",
                )
            member = DataCategory.UNKNOWN
        out.add(member)
    return frozenset(out)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """A request for a photo to leave: a ``PhotoShareRequested`` or a ``TrainingRead``.

    ``actor`` is the share's ``requester`` or the training read's ``job_id``; ``recipient_org`` is
    the share's ``recipient_org`` or the training read's ``org``, in canonical form
    (:func:`canonical_recipient`). ``categories`` are the listed ones (the gate judges them plus
    ``IMAGE``, see :func:`streams.core.evaluate.evaluate`) and never contain
    :attr:`DataCategory.UNKNOWN` when built by the ``from_*`` constructors.
    """

    event_id: str
    kind: SubjectKind
    occurred_at_ms: int
    photo_id: str
    owner_id: str
    actor: str
    recipient_org: str
    purpose: Purpose
    categories: frozenset[DataCategory]
    job_id: str | None = None
    model_id: str | None = None
    share_id: str | None = None

    @classmethod
    def from_share(cls, record: Mapping[str, Any]) -> AccessRequest:
        """Build from a decoded ``PhotoShareRequested``; raise ``InvalidEventError`` if unusable."""
        what = "PhotoShareRequested"
        return cls(
            event_id=_id(record, "event_id", what),
            kind=SubjectKind.SHARE,
            occurred_at_ms=_millis(record, "occurred_at", what),
            photo_id=_id(record, "photo_id", what),
            owner_id=_id(record, "owner_id", what),
            actor=_id(record, "requester", what),
            recipient_org=_recipient(record, "recipient_org", what),
            purpose=_symbol(record, "purpose", what, _PURPOSES),
            categories=_categories(record, what, strict=True),
            share_id=_id(record, "share_id", what),
        )

    @classmethod
    def from_training_read(cls, record: Mapping[str, Any]) -> AccessRequest:
        """Build from a decoded ``TrainingRead``; raise ``InvalidEventError`` if unusable."""
        what = "TrainingRead"
        job_id = _id(record, "job_id", what)
        return cls(
            event_id=_id(record, "event_id", what),
            kind=SubjectKind.TRAINING_READ,
            occurred_at_ms=_millis(record, "occurred_at", what),
            photo_id=_id(record, "photo_id", what),
            owner_id=_id(record, "owner_id", what),
            actor=job_id,
            recipient_org=_recipient(record, "org", what),
            purpose=_symbol(record, "purpose", what, _PURPOSES),
            categories=_categories(record, what, strict=True),
            job_id=job_id,
            model_id=_id(record, "model_id", what),
        )


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One ``ConsentChanged`` event: a grant (``granted``) or a withdrawal for one purpose.

    ``recipient_org`` ``None`` means any recipient (else canonical, :func:`canonical_recipient`;
    whether the policy knows it is the gate's check). ``categories`` empty means every non-sensitive
    category. A category symbol this version does not know is kept as ``DataCategory.UNKNOWN``: it
    makes the set non-empty yet covers nothing, so an unknown symbol can only narrow a grant, and a
    withdrawal is never lost for carrying one. ``expires_at_ms`` ``None`` means never.
    """

    event_id: str
    user_id: str
    occurred_at_ms: int
    purpose: Purpose
    recipient_org: str | None
    categories: frozenset[DataCategory]
    granted: bool
    notice_version: str | None = None
    expires_at_ms: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ConsentRecord:
        """Build from a decoded ``ConsentChanged``.

        Raises ``UnknownEnumSymbolError`` for an unknown ``purpose`` (such a record cannot affect
        any purpose this version knows) and ``InvalidEventError`` for a missing id, a missing
        ``granted`` flag or an empty-string ``recipient_org`` (ambiguous between "any" and "none").
        """
        what = "ConsentChanged"
        recipient = _opt_str(record, "recipient_org", what)
        if recipient is not None:
            recipient = canonical_recipient(recipient)
            if not recipient:
                raise InvalidEventError(
                    f"{_where(record, what)}: field 'recipient_org' is empty",
                    hint="use null for 'any recipient'",
                )
        granted = record.get("granted")
        if not isinstance(granted, bool):
            raise InvalidEventError(f"{_where(record, what)}: field 'granted' must be a boolean")
        return cls(
            event_id=_id(record, "event_id", what),
            user_id=_id(record, "user_id", what),
            occurred_at_ms=_millis(record, "occurred_at", what),
            purpose=_symbol(record, "purpose", what, _PURPOSES),
            recipient_org=recipient,
            categories=_categories(record, what, strict=False),
            granted=granted,
            notice_version=_opt_str(record, "notice_version", what),
            expires_at_ms=_opt_millis(record, "expires_at", what),
        )


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    """One ``PhotoUploaded`` event: the gate needs ``photo_id`` -> ``owner_id``."""

    event_id: str
    photo_id: str
    owner_id: str
    occurred_at_ms: int
    content_sha256: str | None = None
    media_type: str | None = None
    size_bytes: int | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PhotoRecord:
        """Build from a decoded ``PhotoUploaded``; raise ``InvalidEventError`` if unusable."""
        what = "PhotoUploaded"
        size = record.get("size_bytes")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise InvalidEventError(f"{_where(record, what)}: field 'size_bytes' must be a long")
        return cls(
            event_id=_id(record, "event_id", what),
            photo_id=_id(record, "photo_id", what),
            owner_id=_id(record, "owner_id", what),
            occurred_at_ms=_millis(record, "occurred_at", what),
            content_sha256=_opt_str(record, "content_sha256", what),
            media_type=_opt_str(record, "media_type", what),
            size_bytes=size,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The pure outcome of evaluating one :class:`AccessRequest`.

    ``consent_event_id`` names the consent record relied on (``CONSENTED``) or the one that revoked,
    expired or lacked categories; it is ``None`` otherwise. ``explanation`` is one plain-language
    sentence a person can act on. The Avro ``Decision`` record is built by :func:`decision_record`.
    """

    verdict: Verdict
    reason: Reason
    explanation: str
    consent_event_id: str | None
    policy_version: str
    request: AccessRequest

    @property
    def allowed(self) -> bool:
        """Whether the photo may leave (the verdict is ``ALLOW``)."""
        return self.verdict is Verdict.ALLOW


def decision_record(
    decision: Decision, *, decision_id: str, decided_at_ms: int, prev_hash: str, partition: int
) -> dict[str, Any]:
    """Return the contract's ``Decision`` record as a dict, ``hash`` chained onto ``prev_hash``.

    The dict holds exactly the fields below and nothing else, because the hash covers every field:
    the Avro schema must carry the same set, or a decision read back will not verify.
    ``categories`` is a sorted list of symbols; timestamps are epoch milliseconds.
    """
    request = decision.request
    record: dict[str, Any] = {
        "decision_id": decision_id,
        "decided_at": decided_at_ms,
        "subject_event_id": request.event_id,
        "subject_kind": request.kind.value,
        "photo_id": request.photo_id,
        "owner_id": request.owner_id,
        "actor": request.actor,
        "recipient_org": request.recipient_org,
        "purpose": request.purpose.value,
        "verdict": decision.verdict.value,
        "reason": decision.reason.value,
        "explanation": decision.explanation,
        "policy_version": decision.policy_version,
        "consent_event_id": decision.consent_event_id,
        "prev_hash": prev_hash,
        "categories": sorted([c.value for c in request.categories]),
        "occurred_at": request.occurred_at_ms,
        "partition": partition,
        "model_id": request.model_id,
        "share_id": request.share_id,
    }
    record["hash"] = plain_chain_hash(record, prev_hash)  # every value above is plain JSON
    return record
