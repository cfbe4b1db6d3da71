"""The detector's recall stage: open orders, signed acknowledgements, ``RECALL_OVERDUE`` (§5).

``governance.recalls`` (orders, from the gate) and ``governance.recall.acks`` (recipients'
acknowledgements) are both keyed by recipient, so a recipient's orders and acks meet in one
partition of the detector. Each partition keeps a :class:`~streams.detect.core.recall_overdue.
RecallTracker` whose entries are changelogged per order (``o:<order_id>``) and the
:class:`~streams.detect.core.overdue_groups.OverdueGroups` of its overdue orders
(``g:<recipient, cause, deadline>``).

An acknowledgement counts only when (:meth:`RecallStage.on_ack`) its message key is its
``recipient_org``, the policy lists ``ack_keys`` for that recipient, its ``key_id`` is one of
them and its Ed25519 signature verifies (:mod:`streams.core.ack_signing`), and it names an order
issued to that recipient. Anything else is dead-lettered ``UNVERIFIED_ACK`` and closes nothing;
an ack never makes its order fail. A verified ack read before its order waits for it at most the
recipient's ``recall_within_days`` (counted from the earlier of the ack's record timestamp and
the detector's clock), then is dead-lettered ``UNVERIFIED_ACK`` and forgotten.

A wall-clock punctuation raises ``RECALL_OVERDUE`` per recipient, cause and deadline (not per
order) when orders go past ``due_at`` unacknowledged, even when no record arrives; the alert's id
is a function of the group, and each order is counted into it once, in the same transaction as
its mark: after any crash one alert per group, each order counted once.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from streams import topics
from streams.core.ack_signing import ack_problem
from streams.core.policy import Policy
from streams.core.recall_model import RecallOrder
from streams.detect import metrics
from streams.detect.core.overdue_groups import OverdueGroup, OverdueGroups
from streams.detect.core.recall_overdue import Ack, AckSource, RecallTracker, RefusedAck
from streams.errors import SerdeError, UnverifiedAckError
from streams.runtime.dead_letters import dead_letter
from streams.runtime.records import Output, RawInput
from streams.runtime.stores import KeyValueStore

log = logging.getLogger(__name__)

ORDER_PREFIX = b"o:"
GROUP_PREFIX = b"g:"


class RecallState:
    """A partition's recall orders: a tracker over the store, with its changes for the commit."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self._tracker: RecallTracker | None = None
        self._groups: OverdueGroups | None = None
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

    @property
    def groups(self) -> OverdueGroups:
        """The partition's overdue groups, loaded from the (restored) store on first use."""
        if self._groups is None:
            groups = OverdueGroups()
            for key, value in self.store.items(GROUP_PREFIX):
                name = key[len(GROUP_PREFIX) :].decode()
                try:
                    groups.groups[name] = OverdueGroup.from_json(json.loads(value))
                except (KeyError, TypeError, ValueError) as exc:
                    raise SerdeError(
                        f"stored overdue group {name!r} is unreadable: {exc}",
                        hint="restore the detector's changelog",
                    ) from exc
            self._groups = groups
        return self._groups

    def save(self, order_id: str) -> None:
        """Mark one order's entry to be written at the next commit."""
        self.changes[ORDER_PREFIX + order_id.encode()] = self.tracker.entry_bytes(order_id)

    def save_group(self, key: str) -> None:
        """Mark one overdue group to be written at the next commit."""
        group = self.groups.groups[key]
        value = json.dumps(group.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
        self.changes[GROUP_PREFIX + key.encode()] = value

    def invalidate(self) -> None:
        """Forget the loaded tracker (the store was restored underneath it)."""
        self._tracker = None
        self._groups = None


class RecallStage:
    """Applies orders and acks, and raises overdue alerts, for one detector."""

    GAUGE_INTERVAL_MS = 5_000
    """How often the per-recipient order counts are recomputed (they walk every open order)."""

    def __init__(
        self,
        registered: Collection[str],
        clock_ms: Callable[[], int],
        policy: Policy | None = None,
    ) -> None:
        self.registered = registered
        self.clock_ms = clock_ms
        self.policy = policy
        self._gauged_at: int | None = None

    def on_order(self, record: dict[str, Any], recalls: RecallState) -> list[Output]:
        """Track one ``RecallOrder``; return dead letters of held acks it refuses.

        The order itself is always tracked: no ack can make it fail.
        """
        order = RecallOrder.from_record(record)
        tracker = recalls.tracker
        tracker.add_order(order)
        recalls.save(order.order_id)
        return [self._refused(r) for r in tracker.take_refused()]

    def on_ack(self, raw: RawInput, record: dict[str, Any], recalls: RecallState) -> None:
        """Apply one ``RecallAcknowledged`` if it counts.

        Raises:
            UnverifiedAckError: keyed by another recipient, unsigned, not signed by one of the
                recipient's ``ack_keys``, or naming another recipient's order (dead-letter it).
        """
        ack = Ack.from_record(record)
        key = (raw.key or b"").decode("utf-8", "replace")
        if key != ack.recipient_org:
            raise UnverifiedAckError(
                f"RecallAcknowledged for order {ack.order_id} names recipient"
                f" {ack.recipient_org!r} but is keyed {key!r}: it closes nothing",
                hint="key each ack by its recipient_org",
            )
        recipient = None if self.policy is None else self.policy.recipient(ack.recipient_org)
        problem = ack_problem(record, {} if recipient is None else recipient.ack_keys)
        if recipient is None:
            problem = f"recipient {ack.recipient_org!r} is not registered in the policy"
        if problem is not None:
            raise UnverifiedAckError(
                f"RecallAcknowledged for order {ack.order_id} from {ack.recipient_org!r} does"
                f" not count: {problem}",
                hint="sign acks with a key listed under recipients.<org>.ack_keys (the SDK's"
                " acknowledge_recall does)",
            )
        assert self.policy is not None
        arrived = min(raw.timestamp_ms, self.clock_ms())
        expires_at = arrived + self.policy.recall_within_ms(ack.recipient_org)
        source = AckSource(
            raw.topic, raw.partition, raw.offset, raw.timestamp_ms, raw.key, raw.value
        )
        outcome = recalls.tracker.apply_ack(ack, expires_at=expires_at, source=source)
        recalls.save(ack.order_id)
        if outcome.order_known and not outcome.closed:
            log.info(
                "recall order %s partly acknowledged: %d photo(s), %d model(s) still missing",
                ack.order_id,
                len(outcome.missing_photos),
                len(outcome.missing_models),
            )

    def overdue(self, recalls: RecallState, now_ms: int) -> list[Output]:
        """Return the alerts of orders going overdue (one per group) and expired held acks.

        Expired held acks (their order did not come in time) are dead-lettered.
        """
        expired = recalls.tracker.expire(now_ms)
        outputs = [self._refused(r, now_ms) for r in expired]
        for order_id in sorted({r.held.order_id for r in expired}):
            recalls.save(order_id)
        newly = recalls.tracker.overdue(now_ms)
        for tracked in newly:
            recalls.save(tracked.order.order_id)
        groups = recalls.groups
        groups.add(newly)
        for key, alert in groups.publish(now_ms):
            recalls.save_group(key)
            if alert.revision == 0:
                metrics.ALERTS.labels(alert.kind.value, alert.severity.value).inc()
            else:
                metrics.ALERT_UPDATES.labels(alert.kind.value).inc()
            outputs.append(
                Output(topics.TOPIC_ALERTS, None, alert.subject.encode(), alert.to_record())
            )
        for key in {k for k, g in groups.groups.items() if g.dirty}:
            recalls.save_group(key)
        return outputs

    def _refused(self, refused: RefusedAck, now_ms: int | None = None) -> Output:
        """Return the ``UNVERIFIED_ACK`` dead letter of a held ack that closes nothing."""
        source = refused.held.source
        if source is None:
            source = AckSource(topics.TOPIC_RECALL_ACKS, 0, -1, 0, None, None)
        raw = RawInput(
            source.topic,
            source.partition,
            source.offset,
            source.timestamp_ms,
            source.key,
            source.value,
        )
        at = self.clock_ms() if now_ms is None else now_ms
        # counted here: the runtime counts only the dead letter an input itself turns into
        metrics.DEAD_LETTERS.labels(UnverifiedAckError.error_kind, source.topic).inc()
        return dead_letter(raw, UnverifiedAckError.error_kind, refused.reason, at_ms=at)

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
