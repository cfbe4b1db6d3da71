"""Closing the recall loop: open orders and acknowledgements (contract §3, §5). Pure.

The detector feeds it the ``RecallOrder`` records of ``governance.recalls`` and the
``RecallAcknowledged`` records of ``governance.recall.acks`` that passed the signature check
(:mod:`streams.core.ack_signing`), in any relative order, and asks :meth:`RecallTracker.overdue`
with its clock. Guarantees:

- an order is *closed* once every photo and model it names has been acknowledged by its own
  recipient, possibly over several partial acknowledgements; ids an ack names that the order does
  not are reported, not kept;
- an acknowledgement never causes its order to be dropped or refused: an ack naming another
  recipient's order is refused (:class:`~streams.errors.UnverifiedAckError` when the order is
  known; a :class:`RefusedAck` from :meth:`RecallTracker.add_order` when it was held) and
  closes nothing;
- an ack read before its order is held until the order arrives, but only until its
  ``expires_at``: :meth:`RecallTracker.expire` hands back the expired ones (bounded state);
- the same ``order_id`` arriving again with more photos or models (the gate's cumulative
  ``UNCONSENTED_TRAINING`` order, see :func:`streams.core.recall.orders_for_unconsented_read`)
  extends the order: the new ids are missing until acknowledged, ``due_at`` is the latest;
  an identical one changes nothing (a closed order is never reopened by a replay);
- :meth:`RecallTracker.overdue` returns each order that is past ``due_at`` and not closed exactly
  once (it is then marked alerted; the mark survives :meth:`RecallTracker.entry_bytes`). The
  alerts themselves are built per recipient, cause and deadline by
  :mod:`streams.detect.core.overdue_groups`.

State is per order: :meth:`RecallTracker.entry_bytes` / :meth:`RecallTracker.load_entry` give the
caller ``order_id → bytes`` records to changelog. Closed orders are kept (a duplicate order must
not reopen one); a caller may evict closed orders past ``governance.recalls``' horizon.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.core.recall_model import RecallOrder
from streams.errors import InvalidEventError, SerdeError, UnverifiedAckError


@dataclass(frozen=True, slots=True)
class Ack:
    """One ``RecallAcknowledged`` (``key_id`` and ``signature`` empty when unsigned)."""

    order_id: str
    recipient_org: str
    acknowledged_at: int
    deleted_photo_ids: tuple[str, ...]
    purged_model_ids: tuple[str, ...]
    evidence: str
    key_id: str = ""
    signature: bytes = b""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Ack:
        """Build from a decoded record; raise ``InvalidEventError`` if an id or time is missing."""
        try:
            signature = record.get("signature") or b""
            ack = cls(
                order_id=str(record["order_id"]),
                recipient_org=str(record["recipient_org"]),
                acknowledged_at=int(record["acknowledged_at"]),
                deleted_photo_ids=tuple(str(p) for p in record.get("deleted_photo_ids") or ()),
                purged_model_ids=tuple(str(m) for m in record.get("purged_model_ids") or ()),
                evidence=str(record.get("evidence") or ""),
                key_id=str(record.get("key_id") or ""),
                signature=bytes(signature),
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
            "key_id": self.key_id,
            "signature": self.signature,
        }


@dataclass(frozen=True, slots=True)
class AckSource:
    """Where an ack was read, kept with a held ack so that it can be dead-lettered later."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    def to_json(self) -> list[Any]:
        """Return the stored form."""
        return [
            self.topic,
            self.partition,
            self.offset,
            self.timestamp_ms,
            _b64(self.key),
            _b64(self.value),
        ]

    @classmethod
    def from_json(cls, data: list[Any]) -> AckSource:
        """Rebuild from :meth:`to_json`."""
        topic, partition, offset, timestamp, key, value = data
        return cls(
            str(topic), int(partition), int(offset), int(timestamp), _unb64(key), _unb64(value)
        )


@dataclass(slots=True)
class HeldAck:
    """An ack waiting for its order, until ``expires_at`` (None: forever, for reports)."""

    ack: Ack
    expires_at: int | None = None
    source: AckSource | None = None

    @property
    def order_id(self) -> str:
        """The order the ack names."""
        return self.ack.order_id

    @property
    def recipient_org(self) -> str:
        """The recipient the ack names."""
        return self.ack.recipient_org


@dataclass(frozen=True, slots=True)
class RefusedAck:
    """A held ack that closes nothing: another recipient's order, or no order in time."""

    held: HeldAck
    reason: str


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

    def extend(self, order: RecallOrder) -> bool:
        """Add what a re-issue of the same order names beyond this one; True if anything new.

        A re-issue for another recipient, user or cause is not the same order: ignored.
        """
        known = self.order
        if (order.recipient_org, order.user_id, order.cause) != (
            known.recipient_org,
            known.user_id,
            known.cause,
        ):
            return False
        photos = set(order.photo_ids) - set(known.photo_ids)
        models = set(order.model_ids) - set(known.model_ids)
        decisions = set(order.decision_ids) - set(known.decision_ids)
        if not photos and not models and not decisions and order.due_at <= known.due_at:
            return False
        self.order = replace(
            known,
            photo_ids=tuple(sorted({*known.photo_ids, *photos})),
            model_ids=tuple(sorted({*known.model_ids, *models})),
            decision_ids=tuple(sorted({*known.decision_ids, *decisions})),
            issued_at=min(known.issued_at, order.issued_at),
            due_at=max(known.due_at, order.due_at),
        )
        self.missing_photos |= photos
        self.missing_models |= models
        return True


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

    __slots__ = ("orders", "pending", "refused")

    def __init__(self) -> None:
        self.orders: dict[str, OpenOrder] = {}
        self.pending: dict[str, list[HeldAck]] = {}
        self.refused: list[RefusedAck] = []
        """Held acks refused when their order arrived; see :meth:`take_refused`."""

    def add_order(self, order: RecallOrder) -> OpenOrder:
        """Track ``order`` and apply the acks held for it.

        A known order id is extended by what the new record adds (see the module doc). A held
        ack naming another recipient than the order's is refused (:meth:`take_refused`); the
        order is tracked all the same.
        """
        known = self.orders.get(order.order_id)
        if known is not None:
            known.extend(order)
            return known
        tracked = self.orders[order.order_id] = OpenOrder.of(order)
        for held in self.pending.pop(order.order_id, []):
            try:
                self.apply_ack(held.ack)
            except UnverifiedAckError as exc:
                self.refused.append(RefusedAck(held, str(exc)))
        return tracked

    def take_refused(self) -> list[RefusedAck]:
        """Return and forget the held acks refused since the last call."""
        refused, self.refused = self.refused, []
        return refused

    def apply_ack(
        self, ack: Ack, *, expires_at: int | None = None, source: AckSource | None = None
    ) -> AckOutcome:
        """Apply one (already verified) acknowledgement; see :class:`AckOutcome`.

        An ack for an order not seen yet is held until ``expires_at`` (with ``source``, to
        dead-letter it if it is refused later).

        Raises:
            UnverifiedAckError: the ack's ``recipient_org`` is not the order's recipient (a
                recipient cannot close another's order); dead-letter it. The order is unchanged.
        """
        tracked = self.orders.get(ack.order_id)
        if tracked is None:
            held = self.pending.setdefault(ack.order_id, [])
            if all(h.ack != ack for h in held):
                held.append(HeldAck(ack, expires_at, source))
            return AckOutcome(ack.order_id, order_known=False, closed=False)
        if ack.recipient_org != tracked.order.recipient_org:
            raise UnverifiedAckError(
                f"RecallAcknowledged for order {ack.order_id} comes from {ack.recipient_org!r},"
                f" but the order was issued to {tracked.order.recipient_org!r}: it closes nothing",
                hint="a recipient can only acknowledge the orders issued to it",
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

    def expire(self, now_ms: int) -> list[RefusedAck]:
        """Drop and return the held acks whose order did not arrive by their ``expires_at``."""
        expired: list[RefusedAck] = []
        for order_id in list(self.pending):
            keep = []
            for held in self.pending[order_id]:
                if held.expires_at is not None and now_ms > held.expires_at:
                    reason = (
                        f"RecallAcknowledged names order {order_id}, but no such order was issued"
                        f" to {held.ack.recipient_org!r} within its recall deadline: it closes"
                        " nothing"
                    )
                    expired.append(RefusedAck(held, reason))
                else:
                    keep.append(held)
            if keep:
                self.pending[order_id] = keep
            else:
                del self.pending[order_id]
        return expired

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
        data: dict[str, Any] = {
            "v": 2,
            "p": [
                {
                    "a": {**h.ack.to_record(), "signature": _b64(h.ack.signature)},
                    "x": h.expires_at,
                    "s": None if h.source is None else h.source.to_json(),
                }
                for h in held
            ],
        }
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
            version = data.get("v")
            if version not in (1, 2):
                raise ValueError(f"unsupported format {version!r}")
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
            # an older version held unsigned acks: they never count now, so they are not kept
            held = [_held(item) for item in data["p"]] if version == 2 else []
            if held:
                self.pending[order_id] = held
        except (KeyError, TypeError, ValueError, InvalidEventError) as exc:
            raise SerdeError(
                f"stored recall order {order_id!r} is unreadable: {exc}",
                hint="restore the detector's changelog, or rebuild it from governance.recalls",
            ) from exc


def _held(item: Mapping[str, Any]) -> HeldAck:
    record = {**item["a"], "signature": _unb64(item["a"].get("signature")) or b""}
    source = item.get("s")
    return HeldAck(
        Ack.from_record(record),
        item.get("x"),
        None if source is None else AckSource.from_json(source),
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
