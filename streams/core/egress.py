"""The egress check: may this approved record leave? (contract sections 2 and 6, "Egress check").

Every record the gate writes to ``photo.share.approved`` carries two headers:

- :data:`DECISION_ID_HEADER` (``consentinel-decision-id``): the ``decision_id``, UTF-8;
- :data:`DECISION_HASH_HEADER` (``consentinel-decision-hash``): that decision's chain ``hash``,
  ASCII hex.

The gate builds them with :func:`decision_headers`. Egress, before shipping a record, looks the
decision up in ``governance.decisions`` (read as written, so that its hash can be recomputed) and
calls :func:`check_approved`, which lets the record leave only when every one of these holds:

1. the record has a share payload (a ``PhotoShareRequested``), and exactly one of each header;
2. the headers name the decision given (its ``decision_id`` and ``hash``), whose ``hash`` really
   is the hash of its content (an edited decision does not pass);
3. the decision is an ``ALLOW`` of a ``SHARE``;
4. the share is the very request that decision allowed: its ``share_id``, ``event_id``,
   ``photo_id``, ``owner_id``, ``recipient_org`` (compared as the gate compares recipient ids:
   NFKC, case folded, trimmed), ``purpose``, ``categories`` (as a set; ``IMAGE`` is implied on
   both sides, as the gate judges it) and ``requester`` (the decision's ``actor``) all match;
5. no record was delivered under that decision id before: the :class:`DeliveryLedger` claims the
   id for this record atomically, so a replayed copy (another record, same headers) is refused.

Every refusal says why, in a sentence a person can act on. This module is pure: the ledger is an
object the caller gives (:class:`MemoryLedger` here; a SQLite file for the command line in
:mod:`streams.egress.ledger`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.core.audit import chain_hash

DECISION_ID_HEADER = "consentinel-decision-id"
DECISION_HASH_HEADER = "consentinel-decision-hash"

Headers = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]
"""Kafka headers as clients give them: a list of ``(name, value)`` pairs, or a mapping."""

_MATCHED_FIELDS = (
    ("share_id", "share_id"),
    ("event_id", "subject_event_id"),
    ("photo_id", "photo_id"),
    ("owner_id", "owner_id"),
    ("purpose", "purpose"),
    ("requester", "actor"),
)
"""(field of the shared request, field of the decision) that must be equal as they are."""

_IMAGE = "IMAGE"


class DeliveryLedger(Protocol):
    """Which decision ids egress has delivered a record under, and from which record.

    ``record_at`` names one approved record, e.g. ``photo.share.approved[3]@1042`` (topic,
    partition, offset): the same record read again is not a replay, another record is.
    """

    def claim(self, decision_id: str, record_at: str) -> str | None:
        """Record ``decision_id`` as delivered from ``record_at`` unless it was delivered before.

        Returns ``None`` when this claim is the first (it is now recorded), else the
        ``record_at`` of the earlier delivery (and records nothing). Atomic: of two concurrent
        claims of one id, exactly one gets ``None``.
        """
        ...


class MemoryLedger:
    """A :class:`DeliveryLedger` held in memory (tests, and one process that checks and ships)."""

    def __init__(self) -> None:
        self._delivered: dict[str, str] = {}

    def claim(self, decision_id: str, record_at: str) -> str | None:
        """See :meth:`DeliveryLedger.claim`."""
        earlier = self._delivered.get(decision_id)
        if earlier is None:
            self._delivered[decision_id] = record_at
        return earlier


@dataclass(frozen=True)
class EgressVerdict:
    """What egress must do with one approved record."""

    ship: bool
    """True: the record may leave (and its decision id is now claimed in the ledger)."""
    problem: str | None = None
    """Why it may not leave (``None`` when it ships)."""
    already_delivered: bool = False
    """This very record (same ``record_at``) was delivered before: skip it, it is no refusal."""


def decision_headers(decision: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """Return the headers the gate puts on the approved share that ``decision`` let out."""
    return [
        (DECISION_ID_HEADER, str(decision["decision_id"]).encode("utf-8")),
        (DECISION_HASH_HEADER, str(decision["hash"]).encode("ascii")),
    ]


def header_value(headers: Headers | None, name: str) -> str | None:
    """Return the single value of header ``name`` as text; ``None`` if absent, repeated or bad."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values = [value for key, value in pairs if key == name]
    if len(values) != 1 or values[0] is None:
        return None
    value = values[0]
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text(value: Any) -> Any:
    """Return an enum's value, anything else unchanged (decisions may hold either)."""
    return getattr(value, "value", value)


def _recipient(value: Any) -> Any:
    """Return a recipient id as the gate compares it (NFKC, case folded, trimmed)."""
    if not isinstance(value, str):
        return value
    return unicodedata.normalize("NFKC", value).casefold().strip()


def _categories(value: Any) -> frozenset[Any] | None:
    """Return the categories as a set with ``IMAGE`` added; ``None`` if not a list."""
    if not isinstance(value, (list, tuple)):
        return None
    return frozenset(_text(v) for v in value) | {_IMAGE}


def _decision_problem(
    headers: Headers | None, decision: Mapping[str, Any] | None
) -> tuple[str | None, str | None]:
    """Return ``(decision_id, problem)`` for rules 1-3 of the module doc (the share aside)."""
    decision_id = header_value(headers, DECISION_ID_HEADER)
    decision_hash = header_value(headers, DECISION_HASH_HEADER)
    if decision_id is None or decision_hash is None:
        return None, (
            f"the record lacks exactly one {DECISION_ID_HEADER} and one {DECISION_HASH_HEADER}"
            " header: it was not written by the gate"
        )
    if decision is None:
        return decision_id, (
            f"no decision {decision_id!r} with hash {decision_hash[:12]}... is in"
            " governance.decisions: the record names a decision the gate never wrote"
        )
    if decision_id != decision.get("decision_id"):
        return decision_id, f"the headers name decision {decision_id!r}, not the one given"
    if decision_hash != decision.get("hash"):
        return decision_id, "the decision-hash header does not match the decision's hash"
    verdict = _text(decision.get("verdict"))
    if verdict != "ALLOW":
        return decision_id, f"decision {decision_id!r} is {verdict}, not ALLOW"
    if _text(decision.get("subject_kind")) != "SHARE":
        return decision_id, f"decision {decision_id!r} is not about a share"
    prev_hash = decision.get("prev_hash")
    try:
        recomputed = chain_hash(decision, prev_hash) if isinstance(prev_hash, str) else None
    except (TypeError, ValueError, UnicodeError):
        recomputed = None
    if recomputed != decision_hash:
        return decision_id, f"decision {decision_id!r} does not match its own hash: it was altered"
    return decision_id, None


def _share_problem(
    decision_id: str, decision: Mapping[str, Any], share: Mapping[str, Any]
) -> str | None:
    """Return why ``share`` is not the request ``decision`` allowed (rule 4), or ``None``."""
    mismatch = (
        "the record's {0} ({1!r}) differs from the {2} of decision {3!r} ({4!r}):"
        " it is not the request that was allowed"
    )
    for share_field, decision_field in _MATCHED_FIELDS:
        mine, theirs = _text(share.get(share_field)), _text(decision.get(decision_field))
        if mine is None or mine != theirs:
            return mismatch.format(share_field, mine, decision_field, decision_id, theirs)
    mine, theirs = share.get("recipient_org"), decision.get("recipient_org")
    if mine is None or _recipient(mine) != _recipient(theirs):
        return mismatch.format("recipient_org", mine, "recipient_org", decision_id, theirs)
    mine_set, theirs_set = (
        _categories(share.get("categories")),
        _categories(decision.get("categories")),
    )
    if mine_set is None or mine_set != theirs_set:
        return mismatch.format(
            "categories", share.get("categories"), "categories", decision_id,
            decision.get("categories"),
        )  # fmt: skip
    return None


def check_approved(
    headers: Headers | None,
    decision: Mapping[str, Any] | None,
    share: Mapping[str, Any] | None,
    *,
    ledger: DeliveryLedger,
    record_at: str | None = None,
) -> EgressVerdict:
    """Decide whether the approved record (``headers``, ``share``) may leave (see module doc).

    ``decision`` is the ``Decision`` the headers name, as read from ``governance.decisions``
    (``None`` when no such decision was found); ``share`` the record's decoded
    ``PhotoShareRequested`` (``None`` when it has no value or could not be decoded: refused).
    ``record_at`` names the record (topic, partition, offset) so that reading it again is told
    apart from a replay; without it, any earlier delivery under the same decision id is one.
    Only a record that passes every other rule is claimed in ``ledger``.
    """
    decision_id, problem = _decision_problem(headers, decision)
    if problem is None and share is None:
        problem = (
            "the record has no share payload (empty or unreadable value): there is nothing to"
            " check against its decision, so nothing leaves"
        )
    if problem is None and decision_id is not None and decision is not None and share is not None:
        problem = _share_problem(decision_id, decision, share)
    if problem is not None or decision_id is None:
        return EgressVerdict(ship=False, problem=problem)
    here = record_at if record_at is not None else "an approved record"
    earlier = ledger.claim(decision_id, here)
    if earlier is None:
        return EgressVerdict(ship=True)
    if record_at is not None and earlier == record_at:
        return EgressVerdict(
            ship=False,
            problem=f"decision {decision_id!r} was already delivered from this record: not again",
            already_delivered=True,
        )
    return EgressVerdict(
        ship=False,
        problem=f"decision {decision_id!r} was already delivered (from {earlier}): this record"
        " is a replay, and one decision lets one record out",
    )


def egress_problem(
    headers: Headers | None,
    decision: Mapping[str, Any] | None,
    share: Mapping[str, Any] | None,
    *,
    ledger: DeliveryLedger,
    record_at: str | None = None,
) -> str | None:
    """Return why the record must not leave, or ``None`` when it may (it is then claimed)."""
    return check_approved(headers, decision, share, ledger=ledger, record_at=record_at).problem


def egress_check(
    headers: Headers | None,
    decision: Mapping[str, Any] | None,
    share: Mapping[str, Any] | None,
    *,
    ledger: DeliveryLedger,
    record_at: str | None = None,
) -> bool:
    """Return whether the record may leave now (see :func:`check_approved`; it is then claimed)."""
    return check_approved(headers, decision, share, ledger=ledger, record_at=record_at).ship
