"""Closing the recall loop: open orders, acknowledgements, ``RECALL_OVERDUE`` (contract §5).

Pure: the detector feeds it the ``RecallOrder`` records of ``governance.recalls`` and the
``RecallAcknowledged`` records of ``governance.recall.acks`` (in any relative order: an ack read
before its order is held until the order arrives), and asks :meth:`RecallTracker.overdue` with its
clock (the decisions' ``decided_at``). Guarantees:

- an order is *closed* once every photo and model it names has been acknowledged, possibly over
  several partial acknowledgements; ids an ack names that the order does not are reported, not kept;
- :meth:`RecallTracker.overdue` returns each order that is past ``due_at`` and not closed exactly
  once (it is then marked alerted; the mark survives :meth:`RecallTracker.entry_bytes`);
- :func:`overdue_alert` builds the contract's ``Alert`` with a deterministic ``alert_id`` (a
  function of the order id), so a replay after a crash writes the same alert.

State is per order: :meth:`RecallTracker.entry_bytes` / :meth:`RecallTracker.load_entry` give the
caller ``order_id → bytes`` records to changelog. Closed orders are kept (a duplicate order must
not reopen one); a caller may evict closed orders past ``governance.recalls``' horizon.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.core.recall_model import RecallOrder
from streams.core.times import iso_moment
from streams.detect.core.records import Alert, AlertAction, AlertKind, Severity, stable_id
from streams.errors import InvalidEventError, SerdeError


@dataclass(frozen=True, slots=True)
class Ack:
    """One ``RecallAcknowledged``."""

    order_id: str
    recipient_org: str
    acknowledged_at: int
    deleted_photo_ids: tuple[str, ...]
    purged_model_ids: tuple[str, ...]
    evidence: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Ack:
        """Build from a decoded record; raise ``InvalidEventError`` if an id or time is missing."""
        try:
            ack = cls(
                order_id=str(record["order_id"]),
                recipient_org=str(record["recipient_org"]),
                acknowledged_at=int(record["acknowledged_at"]),
                deleted_photo_ids=tuple(str(p) for p in record.get("deleted_photo_ids") or ()),
                purged_model_ids=tuple(str(m) for m in record.get("purged_model_ids") or ()),
                evidence=str(record.get("evidence") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidEventError(
                f"RecallAcknowledged for order {record.get('order_id')!r} is unusable: {exc}"
            ) from exc
        if not ack.order_id or not ack.recipient_org:
            raise InvalidEventError("RecallAcknowledged without order_id or recipient_org")
        return ack

    def to_record(self) -> dict[str, Any]:
        """Return the Avro ``RecallAcknowledged`` record."""
        return {
            "order_id": self.order_id,
            "recipient_org": self.recipient_org,
            "acknowledged_at": self.acknowledged_at,
            "deleted_photo_ids": list(self.deleted_photo_ids),
            "purged_model_ids": list(self.purged_model_ids),
            "evidence": self.evidence,
        }


@dataclass(slots=True)
class OpenOrder:
    """An order and what its recipient has not acknowledged yet."""

    order: RecallOrder
    missing_photos: set[str]
    missing_models: set[str]
    evidence: list[str] = field(default_factory=list)
    last_ack_at: int | None = None
    alerted: bool = False

    @classmethod
    def of(cls, order: RecallOrder) -> OpenOrder:
        """Return a fresh open order: everything it names is missing."""
        return cls(order, set(order.photo_ids), set(order.model_ids))

    @property
    def closed(self) -> bool:
        """Whether every photo and model of the order has been acknowledged."""
        return not self.missing_photos and not self.missing_models

    def is_overdue(self, now_ms: int) -> bool:
        """Whether the order is past ``due_at`` at ``now_ms`` and not closed."""
        return not self.closed and now_ms > self.order.due_at


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What an acknowledgement did.

    ``order_known`` is ``False`` when the ack arrived before its order (it is held and applied
    when the order arrives). ``missing_*`` is what the order still lacks after this ack;
    ``unexpected_*`` are ids the ack names that the order does not.
    """

    order_id: str
    order_known: bool
    closed: bool
    missing_photos: tuple[str, ...] = ()
    missing_models: tuple[str, ...] = ()
    unexpected_photos: tuple[str, ...] = ()
    unexpected_models: tuple[str, ...] = ()


class RecallTracker:
    """Open and closed recall orders of one detector task, with acks held for unknown orders."""

    __slots__ = ("orders", "pending")

    def __init__(self) -> None:
        self.orders: dict[str, OpenOrder] = {}
        self.pending: dict[str, list[Ack]] = {}

    def add_order(self, order: RecallOrder) -> OpenOrder:
        """Track ``order`` (idempotent: a known order id is left as it is) and apply held acks."""
        known = self.orders.get(order.order_id)
        if known is not None:
            return known
        tracked = self.orders[order.order_id] = OpenOrder.of(order)
        for ack in self.pending.pop(order.order_id, []):
            self.apply_ack(ack)
        return tracked

    def apply_ack(self, ack: Ack) -> AckOutcome:
        """Apply one acknowledgement; see :class:`AckOutcome`.

        Raises:
            InvalidEventError: the ack's ``recipient_org`` is not the order's recipient (a
                recipient cannot close another's order); dead-letter it.
        """
        tracked = self.orders.get(ack.order_id)
        if tracked is None:
            held = self.pending.setdefault(ack.order_id, [])
            if ack not in held:
                held.append(ack)
            return AckOutcome(ack.order_id, order_known=False, closed=False)
        if ack.recipient_org != tracked.order.recipient_org:
            raise InvalidEventError(
                f"RecallAcknowledged for order {ack.order_id} comes from {ack.recipient_org!r},"
                f" but the order was issued to {tracked.order.recipient_org!r}",
                hint="the acks service must key and stamp acks with the order's recipient_org",
            )
        photos, models = set(ack.deleted_photo_ids), set(ack.purged_model_ids)
        tracked.missing_photos -= photos
        tracked.missing_models -= models
        if ack.evidence and ack.evidence not in tracked.evidence:
            tracked.evidence.append(ack.evidence)
        tracked.last_ack_at = max(tracked.last_ack_at or ack.acknowledged_at, ack.acknowledged_at)
        return AckOutcome(
            ack.order_id,
            order_known=True,
            closed=tracked.closed,
            missing_photos=tuple(sorted(tracked.missing_photos)),
            missing_models=tuple(sorted(tracked.missing_models)),
            unexpected_photos=tuple(sorted(photos - set(tracked.order.photo_ids))),
            unexpected_models=tuple(sorted(models - set(tracked.order.model_ids))),
        )

    def overdue(self, now_ms: int) -> list[OpenOrder]:
        """Return orders past due and not closed that were not returned before; mark them alerted.

        Sorted by ``due_at`` then order id, so the result does not depend on arrival order.
        """
        found = [o for o in self.orders.values() if not o.alerted and o.is_overdue(now_ms)]
        found.sort(key=lambda o: (o.order.due_at, o.order.order_id))
        for tracked in found:
            tracked.alerted = True
        return found

    def entry_bytes(self, order_id: str) -> bytes | None:
        """Return the changelog value of ``order_id`` (order and/or held acks); ``None`` if none."""
        tracked = self.orders.get(order_id)
        held = self.pending.get(order_id, [])
        if tracked is None and not held:
            return None
        data: dict[str, Any] = {"v": 1, "p": [a.to_record() for a in held]}
        if tracked is not None:
            data |= {
                "o": tracked.order.to_record(),
                "mp": sorted(tracked.missing_photos),
                "mm": sorted(tracked.missing_models),
                "ev": tracked.evidence,
                "la": tracked.last_ack_at,
                "al": tracked.alerted,
            }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    def load_entry(self, order_id: str, value: bytes) -> None:
        """Restore one :meth:`entry_bytes` value; raise ``SerdeError`` if it is not one."""
        try:
            data = json.loads(value)
            if data.get("v") != 1:
                raise ValueError(f"unsupported format {data.get('v')!r}")
            if data.get("o") is not None:
                order = RecallOrder.from_record(data["o"])
                self.orders[order_id] = OpenOrder(
                    order,
                    set(data["mp"]),
                    set(data["mm"]),
                    list(data["ev"]),
                    data["la"],
                    bool(data["al"]),
                )
            held = [Ack.from_record(a) for a in data["p"]]
            if held:
                self.pending[order_id] = held
        except (KeyError, TypeError, ValueError, InvalidEventError) as exc:
            raise SerdeError(
                f"stored recall order {order_id!r} is unreadable: {exc}",
                hint="restore the detector's changelog, or rebuild it from governance.recalls",
            ) from exc


def overdue_alert(tracked: OpenOrder, raised_at_ms: int) -> Alert:
    """Return the ``RECALL_OVERDUE`` alert for an overdue order (subject: the recipient).

    ``window_start``/``window_end`` are the order's ``issued_at``/``due_at``; ``observed`` is how
    many photos and models are still unacknowledged, ``threshold`` 0 (anything left is overdue);
    ``sample_event_ids`` holds the order id then the decisions under which the photos left.
    """
    order = tracked.order
    missing = len(tracked.missing_photos) + len(tracked.missing_models)
    parts = []
    if tracked.missing_photos:
        parts.append(f"{len(tracked.missing_photos)} photo(s)")
    if tracked.missing_models:
        parts.append(f"{len(tracked.missing_models)} model(s)")
    done = "partly acknowledged" if tracked.last_ack_at is not None else "not acknowledged"
    return Alert(
        alert_id=stable_id(AlertKind.RECALL_OVERDUE.value, order.order_id),
        raised_at=raised_at_ms,
        kind=AlertKind.RECALL_OVERDUE,
        severity=Severity.CRITICAL,
        subject=order.recipient_org,
        window_start=order.issued_at,
        window_end=order.due_at,
        observed=missing,
        threshold=0.0,
        baseline=None,
        summary=(
            f"{order.recipient_org} has {done} recall order {order.order_id} ({order.cause}) for"
            f" user {order.user_id}, due {iso_moment(order.due_at)}: {' and '.join(parts)} still to"
            " delete; chase the recipient or escalate to its DPA contact."
        ),
        sample_event_ids=(order.order_id, *order.decision_ids[:4]),
        action=AlertAction.NONE,
    )
