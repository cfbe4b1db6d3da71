"""Erasure and recall (contract section 3): the orders that bring back what left, and from whom.

Pure: no Kafka, no clock. What left about a user is their :class:`RecallLedger`
(:mod:`streams.core.recall_ledger`, re-exported here). Order builders
(:func:`orders_for_withdrawal`, :func:`orders_for_erasure`, :func:`orders_for_violation`) return
one :class:`RecallOrder` per recipient (split into parts when it would not fit in one record,
:mod:`streams.core.recall_split`), none for a recipient that got nothing; the ``order_id`` is a
UUIDv5 of (cause, triggering event id, recipient), so a replay issues the same ids.
:func:`orders_for_unconsented_read` keeps one order per recipient, model and user across reads.
``due_at`` is ``issued_at`` plus the recipient's ``recall_within_days`` (a callable such as
``Policy.recall_within_days``; fractions allowed). The records themselves are in
:mod:`streams.core.recall_model` (re-exported here).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable
from functools import partial

from streams.core.consent import order_key
from streams.core.model import AccessRequest, ConsentRecord, Decision, Reason, Verdict
from streams.core.recall_ledger import LEDGER_FORMAT, RecallLedger, photo_digest
from streams.core.recall_model import (
    ErasureRequest,
    ErasureScope,
    RecallCause,
    RecallOrder,
    Transfer,
)
from streams.core.recall_split import MAX_ORDER_BYTES, split_order
from streams.errors import ConfigError

__all__ = [
    "DEFAULT_RECALL_WITHIN_DAYS",
    "LEDGER_FORMAT",
    "ErasureRequest",
    "ErasureScope",
    "RecallCause",
    "RecallDays",
    "RecallLedger",
    "RecallOrder",
    "Transfer",
    "build_orders",
    "covered_by_withdrawal",
    "due_at",
    "erased_decision",
    "order_id",
    "orders_for_erasure",
    "orders_for_unconsented_read",
    "orders_for_violation",
    "orders_for_withdrawal",
    "photo_digest",
    "unconsented_order_id",
]

DAY_MS = 86_400_000
DEFAULT_RECALL_WITHIN_DAYS = 30.0
_ORDER_NAMESPACE = uuid.UUID("2f0c7d3e-8a41-5b6e-9c1d-4e7a0b3f5d21")

RecallDays = Callable[[str], float]
"""Recipient org → its ``recall_within_days`` (e.g. ``Policy.recall_within_days``)."""


def order_id(cause: RecallCause, trigger_id: str, recipient_org: str) -> str:
    """Return the deterministic id of the order for ``recipient_org`` caused by ``trigger_id``."""
    return str(uuid.uuid5(_ORDER_NAMESPACE, f"{cause.value}\x1f{trigger_id}\x1f{recipient_org}"))


def _part_id(cause: RecallCause, trigger_id: str, recipient_org: str, part: int) -> str:
    """Return the id of part ``part`` > 0 of a split order."""
    return order_id(cause, f"{trigger_id}#{part}", recipient_org)


def due_at(issued_at_ms: int, days: float) -> int:
    """Return ``issued_at`` plus ``days`` (fractions allowed); ``ConfigError`` unless positive."""
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(
            f"recall_within_days must be a positive number of days, got {days!r}",
            hint="fix recall_within_days in the policy file (default 30)",
        )
    return issued_at_ms + round(days * DAY_MS)


def build_orders(
    ledger: RecallLedger,
    concerned: Iterable[Transfer],
    *,
    cause: RecallCause | Callable[[str, list[Transfer]], RecallCause],
    trigger_id: str,
    issued_at_ms: int,
    recall_days: RecallDays,
    max_bytes: int = MAX_ORDER_BYTES,
) -> list[RecallOrder]:
    """Return one order per recipient of ``concerned``, sorted by recipient.

    Each names the recipient's concerned photos, every model of that recipient the ledger shows
    reading one of those photos, and the decisions of the concerned transfers (the evidence).
    ``cause`` may be a function of (recipient, its concerned transfers). An order larger than
    ``max_bytes`` is split into parts that each fit (:func:`~streams.core.recall_split.
    split_order`): no order is lost to the record size limit.
    """
    by_org: dict[str, list[Transfer]] = {}
    for transfer in concerned:
        by_org.setdefault(transfer.recipient_org, []).append(transfer)
    orders = []
    for org in sorted(by_org):
        group = by_org[org]
        photos = {t.photo_id for t in group}
        models_of: dict[str, set[str]] = {}
        for t in ledger.transfers:
            if t.recipient_org == org and t.model_id is not None and t.photo_id in photos:
                models_of.setdefault(t.photo_id, set()).add(t.model_id)
        decisions_of: dict[str, set[str]] = {}
        for t in group:
            decisions_of.setdefault(t.photo_id, set()).add(t.decision_id)
        why = cause(org, group) if callable(cause) else cause
        order = RecallOrder(
            order_id=order_id(why, trigger_id, org),
            issued_at=issued_at_ms,
            recipient_org=org,
            user_id=ledger.user_id,
            photo_ids=tuple(sorted(photos)),
            model_ids=tuple(sorted({m for ms in models_of.values() for m in ms})),
            cause=why,
            decision_ids=tuple(sorted({t.decision_id for t in group})),
            due_at=due_at(issued_at_ms, recall_days(org)),
        )
        orders += split_order(
            order,
            decisions_of,
            models_of,
            partial(_part_id, why, trigger_id, org),
            max_bytes,
        )
    return orders


def covered_by_withdrawal(
    transfer: Transfer,
    withdrawal: ConsentRecord,
    consent_time: Callable[[str], tuple[int, bool, str] | None] | None = None,
) -> bool:
    """Whether ``transfer`` was allowed under a consent that ``withdrawal`` withdraws.

    The transfer was allowed on a consent record (``consent_event_id``), has the withdrawal's
    purpose and a recipient it covers (``recipient_org`` null or equal). With ``consent_time``
    (event id → the consent's :func:`~streams.core.consent.order_key`, ``None`` if unknown), a
    transfer relying on a grant *later* than the withdrawal (a re-grant) is not covered; an unknown
    consent counts as covered (recall rather than miss).
    """
    if withdrawal.granted or not transfer.allowed or transfer.consent_event_id is None:
        return False
    if transfer.purpose != withdrawal.purpose.value:
        return False
    if withdrawal.recipient_org is not None and withdrawal.recipient_org != transfer.recipient_org:
        return False
    if consent_time is not None:
        relied = consent_time(transfer.consent_event_id)
        if relied is not None and relied > order_key(withdrawal):
            return False
    return True


def orders_for_withdrawal(
    ledger: RecallLedger,
    withdrawal: ConsentRecord,
    *,
    issued_at_ms: int,
    recall_days: RecallDays,
    consent_time: Callable[[str], tuple[int, bool, str] | None] | None = None,
    max_bytes: int = MAX_ORDER_BYTES,
) -> list[RecallOrder]:
    """Return orders for the transfers allowed under the consent that ``withdrawal`` withdraws.

    None for a grant.

    A recipient that got any such photo at or after the withdrawal's ``occurred_at`` (it should
    never have left: a late-arriving withdrawal) gets cause ``RETROACTIVE_VIOLATION``, the others
    ``CONSENT_WITHDRAWN``; either way one order per recipient.
    """
    concerned = [t for t in ledger.transfers if covered_by_withdrawal(t, withdrawal, consent_time)]

    def cause(_org: str, group: list[Transfer]) -> RecallCause:
        late = any(t.at_ms >= withdrawal.occurred_at_ms for t in group)
        return RecallCause.RETROACTIVE_VIOLATION if late else RecallCause.CONSENT_WITHDRAWN

    return build_orders(
        ledger,
        concerned,
        cause=cause,
        trigger_id=withdrawal.event_id,
        issued_at_ms=issued_at_ms,
        recall_days=recall_days,
        max_bytes=max_bytes,
    )


def orders_for_erasure(
    ledger: RecallLedger,
    erasure: ErasureRequest,
    *,
    issued_at_ms: int,
    recall_days: RecallDays,
    max_bytes: int = MAX_ORDER_BYTES,
) -> list[RecallOrder]:
    """Return orders for every recipient that got the erased photo (or, ``ACCOUNT``, any photo).

    Call before :meth:`RecallLedger.forget`, which drops what these orders name.
    """
    if erasure.scope is ErasureScope.ACCOUNT:
        concerned = list(ledger.transfers)
    else:
        concerned = [t for t in ledger.transfers if t.photo_id == erasure.photo_id]
    return build_orders(
        ledger,
        concerned,
        cause=RecallCause.ERASURE_REQUESTED,
        trigger_id=erasure.event_id,
        issued_at_ms=issued_at_ms,
        recall_days=recall_days,
        max_bytes=max_bytes,
    )


def orders_for_violation(
    ledger: RecallLedger,
    cause: RecallCause,
    decision_ids: Iterable[str],
    *,
    trigger_id: str,
    issued_at_ms: int,
    recall_days: RecallDays,
    max_bytes: int = MAX_ORDER_BYTES,
) -> list[RecallOrder]:
    """Return orders for the transfers of ``decision_ids``.

    For an ``UNCONSENTED_TRAINING`` read (its decision) or the accesses a ``RETROACTIVE_VIOLATION``
    names; ``trigger_id`` is the id of the decision or alert that triggers the recall.
    """
    wanted = set(decision_ids)
    concerned = [t for t in ledger.transfers if t.decision_id in wanted]
    return build_orders(
        ledger,
        concerned,
        cause=cause,
        trigger_id=trigger_id,
        issued_at_ms=issued_at_ms,
        recall_days=recall_days,
        max_bytes=max_bytes,
    )


def orders_for_unconsented_read(
    ledger: RecallLedger, decision_id: str, *, issued_at_ms: int, recall_days: RecallDays
) -> list[RecallOrder]:
    """Return the order for a training read that was not allowed: one per recipient, model, user.

    The order's id is a function of (recipient, model, user) only (:func:`unconsented_order_id`),
    so every unconsented read of one user's photos by one model of one recipient belongs to one
    order: the first read opens it, each later read of another photo issues a record with the
    same ``order_id`` naming that photo and its decision, which adds them to the order (readers
    merge records by ``order_id``). A photo the model already read without consent issues
    nothing (a training job reads its data set once per epoch). Empty when the ledger does not
    hold ``decision_id``.
    """
    read = next((t for t in reversed(ledger.transfers) if t.decision_id == decision_id), None)
    if read is None or read.allowed:
        return []
    model = read.model_id or ""
    for earlier in ledger.transfers:
        if earlier is read:
            break
        if (
            not earlier.allowed
            and earlier.job_id is not None
            and (earlier.recipient_org, earlier.model_id or "", earlier.photo_id)
            == (read.recipient_org, model, read.photo_id)
        ):
            return []  # that photo is in the order already
    cause = RecallCause.UNCONSENTED_TRAINING
    return [
        RecallOrder(
            order_id=unconsented_order_id(read.recipient_org, model, ledger.user_id),
            issued_at=issued_at_ms,
            recipient_org=read.recipient_org,
            user_id=ledger.user_id,
            photo_ids=(read.photo_id,),
            model_ids=(model,) if model else (),
            cause=cause,
            decision_ids=(decision_id,),
            due_at=due_at(issued_at_ms, recall_days(read.recipient_org)),
        )
    ]


def unconsented_order_id(recipient_org: str, model_id: str, user_id: str) -> str:
    """Return the id of the ``UNCONSENTED_TRAINING`` order of one recipient, model and user."""
    trigger = f"model\x1f{model_id}\x1fuser\x1f{user_id}"
    return order_id(RecallCause.UNCONSENTED_TRAINING, trigger, recipient_org)


def erased_decision(
    request: AccessRequest, policy_version: str, *, account: bool, copy: bool = False
) -> Decision:
    """Return the ``DENY``/``ERASED`` decision for a request naming an erased photo or account.

    The gate checks :meth:`RecallLedger.is_erased` before :func:`~streams.core.evaluate.evaluate`.
    ``copy``: the owner's ledger does not say so, but the photo index does: the photo has the id
    or the content of an erased photo (whoever asks, whoever uploaded the copy). That is
    ``ERASED`` rather than ``OWNER_MISMATCH``: the contract decides every later request for an
    erased photo ``DENY``/``ERASED``, and the index no longer knows an owner to mismatch (it
    forgot the erased user's id). Either way the photo does not leave.
    """
    if copy:
        what = "it has the id or content of a photo that was"
    elif account:
        what = f"user {request.owner_id}'s account was"
    else:
        what = f"photo {request.photo_id} was"
    return Decision(
        Verdict.DENY,
        Reason.ERASED,
        f"{request.recipient_org} may not receive photo {request.photo_id} for"
        f" {request.purpose}: {what} erased at the owner's or a regulator's request.",
        None,
        policy_version,
        request,
    )
