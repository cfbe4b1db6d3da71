"""The headers that tie an approved share to the decision that let it out (contract section 2).

Every record the gate writes to ``photo.share.approved`` carries two headers:

- :data:`DECISION_ID_HEADER` (``consentinel-decision-id``): the ``decision_id``, UTF-8;
- :data:`DECISION_HASH_HEADER` (``consentinel-decision-hash``): that decision's chain ``hash``,
  ASCII hex.

The gate builds them with :func:`decision_headers`. Egress, before shipping a record, looks the
decision up in ``governance.decisions`` and calls :func:`egress_check`, which holds only if the
headers name exactly that decision, the decision is an ``ALLOW`` of a share, its ``hash`` is
really the hash of its content (so an edited decision does not pass), and, when the shared record
is given, it is the very request that decision was about.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streams.core.audit import chain_hash

DECISION_ID_HEADER = "consentinel-decision-id"
DECISION_HASH_HEADER = "consentinel-decision-hash"

Headers = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]
"""Kafka headers as clients give them: a list of ``(name, value)`` pairs, or a mapping."""

_MATCHED_FIELDS = (
    ("event_id", "subject_event_id"),
    ("photo_id", "photo_id"),
    ("owner_id", "owner_id"),
    ("recipient_org", "recipient_org"),
    ("purpose", "purpose"),
)
"""(field of the shared request, field of the decision) that must be equal."""


def decision_headers(decision: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """Return the headers the gate puts on the approved share that ``decision`` let out."""
    return [
        (DECISION_ID_HEADER, str(decision["decision_id"]).encode("utf-8")),
        (DECISION_HASH_HEADER, str(decision["hash"]).encode("ascii")),
    ]


def _header(headers: Headers, name: str) -> str | None:
    """Return the single value of header ``name`` as text; ``None`` if absent, repeated or bad."""
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


def egress_problem(
    headers: Headers, decision_record: Mapping[str, Any], share: Mapping[str, Any] | None = None
) -> str | None:
    """Return why egress must not ship the record, or ``None`` when it may (see the module doc)."""
    decision_id = _header(headers, DECISION_ID_HEADER)
    decision_hash = _header(headers, DECISION_HASH_HEADER)
    if decision_id is None or decision_hash is None:
        return (
            f"the record lacks exactly one {DECISION_ID_HEADER} and one {DECISION_HASH_HEADER}"
            " header: it was not written by the gate"
        )
    if decision_id != decision_record.get("decision_id"):
        return f"the headers name decision {decision_id!r}, not the one given"
    if decision_hash != decision_record.get("hash"):
        return "the decision-hash header does not match the decision's hash"
    if _text(decision_record.get("verdict")) != "ALLOW":
        return f"decision {decision_id!r} is {_text(decision_record.get('verdict'))}, not ALLOW"
    if _text(decision_record.get("subject_kind")) != "SHARE":
        return f"decision {decision_id!r} is not about a share"
    prev_hash = decision_record.get("prev_hash")
    try:
        recomputed = chain_hash(decision_record, prev_hash) if isinstance(prev_hash, str) else None
    except (TypeError, ValueError, UnicodeError):
        recomputed = None
    if recomputed != decision_hash:
        return f"decision {decision_id!r} does not match its own hash: it was altered"
    if share is not None:
        for share_field, decision_field in _MATCHED_FIELDS:
            if _text(share.get(share_field)) != _text(decision_record.get(decision_field)):
                return (
                    f"the record's {share_field} differs from the {decision_field} of decision"
                    f" {decision_id!r}: it is not the request that was allowed"
                )
    return None


def egress_check(
    headers: Headers, decision_record: Mapping[str, Any], share: Mapping[str, Any] | None = None
) -> bool:
    """Return whether a record with ``headers`` may leave under ``decision_record``.

    ``share`` (optional) is the decoded ``PhotoShareRequested`` being shipped; when given it must
    be the request the decision was about. See :func:`egress_problem` for the reason of a refusal.
    """
    return egress_problem(headers, decision_record, share) is None
