"""The detector's recall stage: open orders, acknowledgements, ``RECALL_OVERDUE`` (CONTRACT §5).

``governance.recalls`` (orders, from the gate) and ``governance.recall.acks`` (recipients'
acknowledgements) are both keyed by recipient, so a recipient's orders and acks meet in one
partition of the detector. Each partition keeps a :class:`~streams.detect.core.recall_overdue.
RecallTracker` whose entries are changelogged per order (``o:<order_id>``); a wall-clock
punctuation raises one ``RECALL_OVERDUE`` alert per order not fully acknowledged by its
``due_at``, even when no record arrives, and the alert's id is a function of the order, so a
replay after a crash writes the same alert.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from streams import topics
from streams.core.recall_model import RecallOrder
from streams.detect import metrics
from streams.detect.core.recall_overdue import Ack, RecallTracker, overdue_alert
from streams.runtime.records import Output
from streams.runtime.stores import KeyValueStore

log = logging.getLogger(__name__)

ORDER_PREFIX = b"o:"


class RecallState:
    """A partition's recall orders: a tracker over the store, with its changes for the commit."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self._tracker: RecallTracker | None = None
        self.changes: dict[bytes, bytes | None] = {}

    @property
    def tracker(self) -> RecallTracker:
        """The partition's tracker, loaded from the (restored) store on first use."""
        if self._tracker is None:
            tracker = RecallTracker()
            for key, value in self.store.items(ORDER_PREFIX):
                tracker.load_entry(key[len(ORDER_PREFIX) :].decode(), value)
            self._tracker = tracker
        return self._tracker

    def save(self, order_id: str) -> None:
        """Mark one order's entry to be written at the next commit."""
        self.changes[ORDER_PREFIX + order_id.encode()] = self.tracker.entry_bytes(order_id)

    def invalidate(self) -> None:
        """Forget the loaded tracker (the store was restored underneath it)."""
        self._tracker = None


class RecallStage:
    """Applies orders and acks, and raises overdue alerts, for one detector."""

    GAUGE_INTERVAL_MS = 5_000
    """How often the per-recipient order counts are recomputed (they walk every open order)."""

    def __init__(self, registered: Collection[str], clock_ms: Callable[[], int]) -> None:
        self.registered = registered
        self.clock_ms = clock_ms
        self._gauged_at: int | None = None

    def on_order(self, record: dict[str, Any], recalls: RecallState) -> None:
        """Track one ``RecallOrder`` (idempotent per order id)."""
        order = RecallOrder.from_record(record)
        recalls.tracker.add_order(order)
        recalls.save(order.order_id)

    def on_ack(self, record: dict[str, Any], recalls: RecallState) -> None:
        """Apply one ``RecallAcknowledged`` (raises InvalidEventError for another's order)."""
        ack = Ack.from_record(record)
        outcome = recalls.tracker.apply_ack(ack)
        recalls.save(ack.order_id)
        if outcome.order_known and not outcome.closed:
            log.info(
                "recall order %s partly acknowledged: %d photo(s), %d model(s) still missing",
                ack.order_id,
                len(outcome.missing_photos),
                len(outcome.missing_models),
            )

    def overdue(self, recalls: RecallState, now_ms: int) -> list[Output]:
        """Return one alert per order that became overdue; refresh the recall gauges."""
        outputs = []
        for tracked in recalls.tracker.overdue(now_ms):
            recalls.save(tracked.order.order_id)
            alert = overdue_alert(tracked, now_ms)
            metrics.ALERTS.labels(alert.kind.value, alert.severity.value).inc()
            outputs.append(
                Output(topics.TOPIC_ALERTS, None, alert.subject.encode(), alert.to_record())
            )
        return outputs

    def gauge(self, states: Collection[RecallState], now_ms: int) -> None:
        """Set the open and overdue order counts per recipient over every partition given.

        At most every :attr:`GAUGE_INTERVAL_MS` of ``now_ms``: the count walks every order.
        """
        if self._gauged_at is not None and now_ms - self._gauged_at < self.GAUGE_INTERVAL_MS:
            return
        self._gauged_at = now_ms
        counts: Counter[tuple[str, str]] = Counter()
        for recalls in states:
            for tracked in recalls.tracker.orders.values():
                if tracked.closed:
                    continue
                label = metrics.recipient_label(tracked.order.recipient_org, self.registered)
                counts[(label, "overdue" if tracked.is_overdue(now_ms) else "open")] += 1
        for recipient in {*self.registered, metrics.UNREGISTERED_RECIPIENT}:
            for state in ("open", "overdue"):
                metrics.RECALL_ORDERS.labels(recipient, state).set(counts[(recipient, state)])
