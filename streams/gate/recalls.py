"""What the gate writes when photos that already left must come back (CONTRACT §3, recall).

Pure: builds ``governance.recalls`` outputs from a user's :class:`~streams.core.recall.RecallLedger`
and applies erasures to the partition's state and, by messages, to the photo index. One order per
recipient that received affected photos (in parts when it would exceed ``max_order_bytes``),
none for a recipient that got nothing; for unconsented training one order per recipient, model
and user. Order ids are functions of the input, so a batch redone after an aborted transaction
writes the same orders.
"""

from __future__ import annotations

from collections.abc import Callable

from streams import topics
from streams.core.model import ConsentRecord
from streams.core.partitioning import partition_for
from streams.core.recall import (
    ErasureRequest,
    ErasureScope,
    RecallOrder,
    orders_for_erasure,
    orders_for_unconsented_read,
    orders_for_withdrawal,
)
from streams.core.recall_split import MAX_ORDER_BYTES
from streams.gate import photos
from streams.gate.state import PartitionState
from streams.runtime.records import Output

RecallDays = Callable[[str], float]


class RecallIssuer:
    """Turns withdrawals, erasures and unconsented reads into recall orders."""

    def __init__(
        self,
        recall_days: RecallDays,
        clock_ms: Callable[[], int],
        max_order_bytes: int = MAX_ORDER_BYTES,
    ) -> None:
        self.recall_days = recall_days
        self.clock_ms = clock_ms
        self.max_order_bytes = max_order_bytes
        """Orders larger than this are split into parts (never dead-lettered for their size)."""
        self.partitions = 1

    def on_withdrawal(self, withdrawal: ConsentRecord, state: PartitionState) -> list[Output]:
        """Return orders for what left under the consent that ``withdrawal`` withdraws."""
        if withdrawal.granted:
            return []
        ledger = state.ledger(withdrawal.user_id)
        if ledger is None or not ledger.transfers:
            return []
        user = state.user(withdrawal.user_id)
        consents = user.consents if user is not None else None

        def consent_time(event_id: str) -> tuple[int, bool, str] | None:
            from streams.core.consent import order_key

            record = consents.get(event_id) if consents is not None else None
            return None if record is None else order_key(record)

        orders = orders_for_withdrawal(
            ledger,
            withdrawal,
            issued_at_ms=self.clock_ms(),
            recall_days=self.recall_days,
            consent_time=consent_time,
            max_bytes=self.max_order_bytes,
        )
        return self._outputs(orders)

    def on_erasure(self, erasure: ErasureRequest, state: PartitionState) -> list[Output]:
        """Return orders for every recipient that got the erased photos, then forget them.

        The erased photos the user uploaded (one, or for ``ACCOUNT`` all of them) are forgotten
        here and in the photo index: the outputs include the ``erase`` messages of their index
        entries (:func:`~streams.gate.photos.erase_claims`), written in this transaction.
        """
        user = erasure.user_id
        ledger = state.ledger_for_update(user)
        orders = orders_for_erasure(
            ledger,
            erasure,
            issued_at_ms=self.clock_ms(),
            recall_days=self.recall_days,
            max_bytes=self.max_order_bytes,
        )
        ledger.forget(erasure)
        account = erasure.scope is ErasureScope.ACCOUNT
        if account:
            erased = state.user_photos(user)
        else:
            erased = [] if erasure.photo_id is None else [erasure.photo_id]
        unindexed = []
        for photo_id in erased:
            found = state.photo_status(photo_id)
            if found is None or found[0].owner != user:
                continue  # not this user's upload: nothing of theirs to forget
            unindexed += photos.erase_claims(photo_id, user, found[0].content, self.partitions)
            if not account:
                state.forget_photo(photo_id, user)
        if account:
            state.delete_user(user)
        return self._outputs(orders) + unindexed

    def on_unconsented_read(
        self, user_id: str, decision_id: str, state: PartitionState
    ) -> list[Output]:
        """Return the order for a training read that was not allowed (the model read it anyway).

        One order per recipient, model and user: see
        :func:`~streams.core.recall.orders_for_unconsented_read`.
        """
        ledger = state.ledger(user_id)
        if ledger is None:
            return []
        orders = orders_for_unconsented_read(
            ledger, decision_id, issued_at_ms=self.clock_ms(), recall_days=self.recall_days
        )
        return self._outputs(orders)

    def _outputs(self, orders: list[RecallOrder]) -> list[Output]:
        return [
            Output(
                topics.TOPIC_RECALLS,
                partition_for(order.recipient_org.encode(), self.partitions),
                order.recipient_org.encode(),
                order.to_record(),
            )
            for order in orders
        ]
