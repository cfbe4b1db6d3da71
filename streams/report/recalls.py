"""``consentinel report recalls``: the state of every recall order, per order and per recipient.

Pure: decoded ``RecallOrder`` and ``RecallAcknowledged`` records go through the detectors' own
:class:`~streams.detect.core.recall_overdue.RecallTracker` (partial acknowledgements, acks read
before their order), so the report and the ``RECALL_OVERDUE`` alert agree on what is missing.
Each order gets one :data:`STATES` symbol at the report's instant ``as_of``:

- ``ACKNOWLEDGED``: every photo and model it names was acknowledged;
- ``OVERDUE``: past ``due_at`` and not fully acknowledged (``partly_acknowledged`` tells whether
  some of it was);
- ``PARTIAL``: some acknowledged, not all, not yet due;
- ``OPEN``: nothing acknowledged yet, not yet due.

Orders issued and acks made after ``as_of`` are left out, so a report "as of" a past instant
shows what was known then. An ack counts only as the detectors count it (contract section 5):
signed by one of the ``ack_keys`` the policy lists for its recipient and naming an order issued to
that recipient; any other is *rejected* and listed. Without the policy's keys no ack can be
verified, so none counts and the report says how many it left out. An ack for an order never
seen is an *orphan* (listed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import polars as pl

from streams.core.ack_signing import ack_problem
from streams.core.policy_model import Policy
from streams.core.recall_model import RecallOrder
from streams.detect.core.recall_overdue import Ack, OpenOrder, RecallTracker
from streams.errors import InvalidEventError
from streams.report.frame import TIME

AckKeys = Callable[[str], Mapping[str, bytes]]
"""A recipient's ack keys (key id -> raw Ed25519 public key), as the policy lists them."""


def policy_ack_keys(policy: Policy) -> AckKeys:
    """Return the ack keys ``policy`` lists for each recipient (none for an unknown one)."""

    def keys(org: str) -> Mapping[str, bytes]:
        recipient = policy.recipient(org)
        return {} if recipient is None else recipient.ack_keys

    return keys


STATES: Final = ("OPEN", "PARTIAL", "OVERDUE", "ACKNOWLEDGED")
"""The states of an order, in the order the report shows them."""

ORDER_SCHEMA: Final = pl.Schema(
    {
        "order_id": pl.String(),
        "recipient_org": pl.String(),
        "user_id": pl.String(),
        "state": pl.String(),
        "partly_acknowledged": pl.Boolean(),
        "cause": pl.String(),
        "issued_at": TIME,
        "due_at": TIME,
        "last_ack_at": TIME,
        "photos": pl.Int64(),
        "models": pl.Int64(),
        "missing_photos": pl.List(pl.String()),
        "missing_models": pl.List(pl.String()),
        "evidence": pl.List(pl.String()),
        "decision_ids": pl.List(pl.String()),
    }
)
"""One row per order, ordered by ``due_at`` then ``order_id``."""

BY_RECIPIENT_SCHEMA: Final = pl.Schema(
    {
        "recipient_org": pl.String(),
        **{state.lower(): pl.Int64() for state in STATES},
        "total": pl.Int64(),
        "photos_missing": pl.Int64(),
        "models_missing": pl.Int64(),
    }
)
"""One row per recipient: orders in each state, and what is still to delete."""


@dataclass
class RecallsReport:
    """The result of :func:`recall_states`.

    Attributes:
        as_of: The instant (epoch ms) states were judged at.
        orders: One row per order (:data:`ORDER_SCHEMA`).
        by_recipient: Counts per recipient (:data:`BY_RECIPIENT_SCHEMA`).
        orphan_acks: ``(order_id, recipient_org)`` of acks for orders not found.
        rejected_acks: One line per ack refused (unsigned, a key the policy does not list for
            its recipient, or another recipient's order).
        unusable_orders: One line per order record that could not be used.
        unverified_acks: Acks left out because no policy keys were given to verify them.
    """

    as_of: int
    orders: pl.DataFrame
    by_recipient: pl.DataFrame
    orphan_acks: list[tuple[str, str]] = field(default_factory=list)
    rejected_acks: list[str] = field(default_factory=list)
    unusable_orders: list[str] = field(default_factory=list)
    unverified_acks: int = 0

    def state_counts(self) -> dict[str, int]:
        """Orders per state, every state present (0 if none)."""
        counts = dict.fromkeys(STATES, 0)
        for state, n in self.orders.group_by("state").len().iter_rows():
            counts[state] = n
        return counts


def state_of(tracked: OpenOrder, as_of_ms: int) -> str:
    """Return the order's state at ``as_of_ms`` (see the module docs)."""
    if tracked.closed:
        return "ACKNOWLEDGED"
    if tracked.is_overdue(as_of_ms):
        return "OVERDUE"
    return "PARTIAL" if tracked.last_ack_at is not None else "OPEN"


class RecallBook:
    """Feeds records to a :class:`RecallTracker`, keeping what the report lists besides."""

    def __init__(
        self,
        as_of_ms: int,
        *,
        ack_keys: AckKeys | None,
        recipients: Collection[str] | None = None,
        user_id: str | None = None,
    ) -> None:
        self.as_of = as_of_ms
        self.ack_keys = ack_keys
        self.unverified = 0
        self.recipients = frozenset(recipients) if recipients else None
        self.user_id = user_id
        self.tracker = RecallTracker()
        self.rejected: list[str] = []
        self.unusable: list[str] = []

    def wants(self, order: Mapping[str, Any]) -> bool:
        """Whether an order record is in scope (recipient, user, issued by ``as_of``)."""
        if self.recipients is not None and order.get("recipient_org") not in self.recipients:
            return False
        if self.user_id is not None and order.get("user_id") != self.user_id:
            return False
        issued = order.get("issued_at")
        return not isinstance(issued, int) or issued <= self.as_of

    def add_order(self, record: Mapping[str, Any]) -> None:
        """Track an order record (out of scope ones are skipped; unusable ones listed)."""
        if not self.wants(record):
            return
        try:
            self.tracker.add_order(RecallOrder.from_record(record))
        except InvalidEventError as exc:
            self.unusable.append(str(exc))

    def add_ack(self, record: Mapping[str, Any]) -> None:
        """Apply an ack record made by ``as_of`` if it verifies (rejected ones listed).

        With a recipient or user filter, feed the orders first: acks of orders not tracked are
        then out of scope and skipped (without a filter they are held, and listed as orphans).
        """
        filtered = self.recipients is not None or self.user_id is not None
        if filtered and not self.knows(str(record.get("order_id"))):
            return
        try:
            ack = Ack.from_record(record)
            if ack.acknowledged_at > self.as_of:
                return
            if self.ack_keys is None:
                self.unverified += 1
                return
            problem = ack_problem(record, self.ack_keys(ack.recipient_org))
            if problem is not None:
                self.rejected.append(
                    f"ack of order {ack.order_id} from {ack.recipient_org!r} does not count:"
                    f" {problem}"
                )
                return
            self.tracker.apply_ack(ack)
        except InvalidEventError as exc:
            self.rejected.append(str(exc))

    def knows(self, order_id: str) -> bool:
        """Whether the order is tracked (to skip acks of other users' orders)."""
        return order_id in self.tracker.orders

    def report(self) -> RecallsReport:
        """Return the report of what was fed."""
        rows = [_row(t, self.as_of) for t in self.tracker.orders.values()]
        orders = pl.DataFrame(rows, schema=ORDER_SCHEMA, orient="row") if rows else None
        if orders is None:
            orders = pl.DataFrame(schema=ORDER_SCHEMA)
        orders = orders.sort("due_at", "order_id")
        orphan = sorted(
            {(a.order_id, a.recipient_org) for held in self.tracker.pending.values() for a in held}
        )
        return RecallsReport(
            as_of=self.as_of,
            orders=orders,
            by_recipient=by_recipient(orders),
            orphan_acks=orphan,
            rejected_acks=list(self.rejected),
            unusable_orders=list(self.unusable),
            unverified_acks=self.unverified,
        )


def _row(tracked: OpenOrder, as_of_ms: int) -> tuple[Any, ...]:
    order = tracked.order
    return (
        order.order_id,
        order.recipient_org,
        order.user_id,
        state_of(tracked, as_of_ms),
        tracked.last_ack_at is not None and not tracked.closed,
        order.cause.value,
        _instant(order.issued_at),
        _instant(order.due_at),
        None if tracked.last_ack_at is None else _instant(tracked.last_ack_at),
        len(order.photo_ids),
        len(order.model_ids),
        sorted(tracked.missing_photos),
        sorted(tracked.missing_models),
        list(tracked.evidence),
        list(order.decision_ids),
    )


def _instant(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def by_recipient(orders: pl.DataFrame) -> pl.DataFrame:
    """Count orders per recipient and state; sum what is still missing."""
    state = pl.col("state")
    return (
        orders.group_by("recipient_org")
        .agg(
            *((state == s).sum().cast(pl.Int64).alias(s.lower()) for s in STATES),
            pl.len().cast(pl.Int64).alias("total"),
            pl.col("missing_photos").list.len().sum().cast(pl.Int64).alias("photos_missing"),
            pl.col("missing_models").list.len().sum().cast(pl.Int64).alias("models_missing"),
        )
        .sort("overdue", "total", "recipient_org", descending=[True, True, False])
        .cast(dict(BY_RECIPIENT_SCHEMA))  # type: ignore[arg-type]
    )


def recall_states(
    orders: Iterable[Mapping[str, Any]],
    acks: Iterable[Mapping[str, Any]],
    as_of_ms: int,
    *,
    ack_keys: AckKeys | None,
    recipients: Collection[str] | None = None,
    user_id: str | None = None,
) -> RecallsReport:
    """Return the state of every order at ``as_of_ms`` from records in memory (any order).

    ``ack_keys``: each recipient's keys (:func:`policy_ack_keys`); ``None`` counts no ack.
    """
    book = RecallBook(as_of_ms, ack_keys=ack_keys, recipients=recipients, user_id=user_id)
    for order in orders:
        book.add_order(order)
    for ack in acks:
        book.add_ack(ack)
    return book.report()
