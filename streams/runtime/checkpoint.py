"""The runtime's one exactly-once checkpoint: outputs, changelogs and offsets in one transaction.

Order inside a transaction, as in Kafka Streams and quix-streams' checkpointing: the outputs
(sinks), then the state changelog records, then the consumed offsets
(``send_offsets_to_transaction``), then the commit. Either every effect of the batch becomes
visible to ``read_committed`` readers, or none does and the batch is processed again from the
same state. A commit that fails retriably is retried a bounded number of times; one that
requires an abort is aborted here and reported, so the caller rewinds; any other failure aborts
explicitly before it propagates, so readers never wait ``transaction.timeout.ms`` for a
transaction a dead process left open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException, Producer, TopicPartition

from streams.errors import ConsentinelError

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
"""How often a retriable commit failure is retried before the process gives up."""


class RuntimeFatalError(ConsentinelError):
    """The processor cannot go on: fenced by a newer instance, or a fatal producer error.

    Restarting the process (with the same instance id) recovers: it restores state from the
    changelog and resumes from the last committed offsets.
    """

    error_kind = "RUNTIME_FATAL"


class Checkpoint:
    """One open transaction of a processor's producer."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.producer.begin_transaction()
        self.open = True

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> None:
        """Queue one record in the transaction (waiting while the local queue is full).

        ``on_offset`` is called with the record's offset once the broker has it (at the latest
        during :meth:`commit`).
        """
        kwargs: dict[str, Any] = {"key": key, "value": value}
        if on_offset is not None:

            def delivered(error: Any, message: Any) -> None:
                if error is None:
                    on_offset(message.offset())

            kwargs["on_delivery"] = delivered
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain

    def changelog(self, topic: str, partition: int, records: Iterable[tuple[bytes, Any]]) -> None:
        """Queue a partition's state changes (``None`` values are tombstones)."""
        for key, value in records:
            self.produce(topic, key, value, partition)

    def offsets(self, positions: dict[tuple[str, int], int], group_metadata: Any) -> None:
        """Add the consumed positions (offset after the last processed record) to the commit."""
        if positions:
            self.producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in positions.items()], group_metadata
            )

    def commit(self, on_outcome: Callable[[str], None]) -> bool:
        """Commit; return False when the transaction had to be aborted (the caller rewinds)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                self.producer.commit_transaction()
                self.open = False
                on_outcome("committed")
                return True
            except KafkaException as exc:
                error = exc.args[0]
                if error.txn_requires_abort():
                    log.warning("transaction must abort (%s): rewinding to the last commit", error)
                    self.abort(on_outcome)
                    return False
                if error.retriable() and attempt < COMMIT_ATTEMPTS:
                    log.warning("commit failed retriably (attempt %d): %s", attempt, error)
                    time.sleep(0.1 * attempt)
                    continue
                raise RuntimeFatalError(
                    f"cannot commit the transaction: {error}",
                    hint="the process restarts from its last commit; check the broker",
                ) from exc
        return False  # not reached: the last attempt returns or raises

    def abort(self, on_outcome: Callable[[str], None]) -> None:
        """Abort the transaction, if still open (idempotent, never raises for a fenced one)."""
        if not self.open:
            return
        self.open = False
        try:
            self.producer.abort_transaction()
            on_outcome("aborted")
        except KafkaException as exc:
            log.error("abort failed (the broker times the transaction out): %s", exc)
