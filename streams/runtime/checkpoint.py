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
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from streams.errors import ConsentinelError, TransientError

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5
"""How often a retriable commit failure is retried before the process gives up."""


class RuntimeFatalError(ConsentinelError):
    """The processor cannot go on: fenced by a newer instance, or a fatal producer error.

    Restarting the process (with the same instance id) recovers: it restores state from the
    changelog and resumes from the last committed offsets.
    """

    error_kind = "RUNTIME_FATAL"


class ConsumerFencedError(RuntimeFatalError):
    """The consumer's group membership ended for good (a static member fenced by its own id).

    librdkafka never fetches again on that consumer. The runner rejoins the group with a new
    consumer under the same instance id (its producer and kept state stay); only when that
    keeps happening (another live process holds the same ``group.instance.id``) does the
    process end.
    """


OFFSETS_DEADLINE_S = 20.0
"""How long adding the consumed offsets to a transaction may take before the producer counts
as wedged.

librdkafka (since 2.9) can block in ``send_offsets_to_transaction`` for ever, ignoring its
timeout, once the group coordinator it cached has been dropped from the cluster's metadata
(librdkafka issues #5456 and #5511: a broker restart or a whole-cluster outage does it). The
runner then replaces the producer (:class:`ProducerWedgedError`)."""


class ProducerWedgedError(TransientError):
    """The producer stopped answering inside a transaction; it is replaced, the batch retried.

    The new producer (same ``transactional.id``) fences the wedged one and the coordinator
    aborts the transaction it left open, so nothing of the batch becomes visible twice.
    """


FENCED_CODES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
"""Errors that mean another producer with the same ``transactional.id`` took over: a newer
instance of this processor is alive, so this one must end, never take the id back."""


def replaceable(error: KafkaError) -> bool:
    """Whether a fatal producer error is cured by a new producer (not a fence by a newer one).

    After a whole-cluster outage librdkafka can fail a producer fatally with
    ``INVALID_TXN_STATE`` (an abort the restarted coordinator no longer recognises): a new
    producer with the same ``transactional.id`` fences it and starts clean.
    """
    return error.fatal() and error.code() not in FENCED_CODES


class Checkpoint:
    """One open transaction of a processor's producer."""

    def __init__(self, producer: Producer, *, offsets_deadline_s: float = OFFSETS_DEADLINE_S):
        self.producer = producer
        self.producer.begin_transaction()
        self.open = True
        self.wedged = False
        """The producer is stuck in a call that never returned, or failed fatally without being
        fenced (:func:`replaceable`): it must not be used again; the runner replaces it."""
        self._offsets_deadline_s = offsets_deadline_s

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
        """Add the consumed positions (offset after the last processed record) to the commit.

        Raises :class:`ProducerWedgedError` when that does not finish within the deadline
        (the call goes on in the background and is abandoned with its producer), and
        :class:`~streams.errors.TransientError` when the broker refuses it retriably.
        """
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        failed: list[BaseException] = []
        done = threading.Event()
        deadline_s = self._offsets_deadline_s

        def send() -> None:
            try:
                # librdkafka's own timeout comes first when it works
                self.producer.send_offsets_to_transaction(
                    offsets, group_metadata, deadline_s * 0.75
                )
            except BaseException as exc:  # handed to the caller's thread
                failed.append(exc)
            finally:
                done.set()

        threading.Thread(target=send, name="send-offsets", daemon=True).start()
        if not done.wait(deadline_s):
            self.wedged = True
            raise ProducerWedgedError(
                f"adding the consumed offsets to the transaction took over {deadline_s:g}s",
                hint="librdkafka lost its group coordinator (issues #5456, #5511); the producer"
                " is replaced and the batch retried from the last commit",
            )
        if failed:
            exc = failed[0]
            if isinstance(exc, KafkaException):
                error = exc.args[0]
                if error.txn_requires_abort() or error.retriable():
                    raise TransientError(
                        f"the consumed offsets were not added to the transaction: {error}",
                        hint="the transaction is aborted and the batch retried",
                    ) from exc
            raise exc

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
        """Abort the transaction, if still open (idempotent, never raises for a fenced one).

        A wedged producer is not called again: its replacement fences it, which aborts the
        transaction on the coordinator.
        """
        if not self.open:
            return
        self.open = False
        if self.wedged:
            on_outcome("aborted")
            return
        try:
            self.producer.abort_transaction()
            on_outcome("aborted")
        except KafkaException as exc:
            if replaceable(exc.args[0]):
                self.wedged = True  # its replacement's fencing aborts the transaction
                log.error("abort failed, the producer is replaced: %s", exc)
            else:
                log.error("abort failed (the broker times the transaction out): %s", exc)
