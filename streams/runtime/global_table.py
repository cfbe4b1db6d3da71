"""Topics that every instance reads in full, to their end, before it processes any input.

A global table (the controls, in the gate) is read from the beginning of every partition,
outside any consumer group, so that each instance applies all of it whatever partitions it owns.
:meth:`GlobalTableReader.catch_up` blocks until the end that the topic had when it was called;
:meth:`GlobalTableReader.poll` then applies new records without blocking, once per batch.

A record that cannot be read *yet* (:class:`~streams.errors.TransientError`: the registry is
down) is retried, never skipped. A record that can never be read becomes a dead letter that the
runner writes in its next transaction, and the handler is told, so that it can fail closed; the
table is not :attr:`~GlobalTableReader.healthy` until the handler says it is whole again. A
consumer error makes it unhealthy too, until records flow again.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from streams.errors import AuthorizationError, ConsentinelError, MissingTopicError, TransientError
from streams.runtime.dead_letters import dead_letter
from streams.runtime.read_to_end import READER_CONFIG, REFUSALS, read_to_end
from streams.runtime.records import Output, RawInput
from streams.runtime.topology import GlobalTable

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits between attempts to read a record that failed transiently."""


def reader_group(physical_topic: str) -> str:
    """Return the consumer group id of a global table's reader.

    The reader never joins nor commits, but its principal still needs READ on the group
    (``deploy/acls.yaml``).
    """
    return f"{physical_topic}-global-reader"


def void(_: object) -> None:
    """Discard a value (adapts a function to a callback that returns nothing)."""


class GlobalTableReader:
    """Keeps one global table's handler in step with its topic."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        table: GlobalTable,
        *,
        physical_topic: str,
        clock_ms: Any,
    ) -> None:
        self.table = table
        self.physical_topic = physical_topic
        self.caught_up = False
        self.consumer_error: str | None = None
        self.dead_letters: list[Output] = []
        """Dead letters of unreadable records, until the runner has committed them."""
        self._clock_ms = clock_ms
        self._consumer = Consumer(
            {**kafka_config, **READER_CONFIG, "group.id": reader_group(physical_topic)}
        )

    @property
    def healthy(self) -> bool:
        """Whether the table is read to its end, whole, and its consumer is working."""
        return self.caught_up and self.consumer_error is None and self.table.handler.whole

    def catch_up(self, timeout_s: float = 120.0) -> None:
        """Read the topic from its beginning to its current end (blocking).

        Raises :class:`~streams.errors.TransientError` when the cluster does not answer; called
        again, it reads from the beginning once more (applying a record twice, in order, leaves
        the table as once), and writes each unreadable record's dead letter once.
        """
        letters = len(self.dead_letters)
        try:
            self._catch_up(timeout_s)
        except TransientError:
            del self.dead_letters[letters:]
            raise

    def _catch_up(self, timeout_s: float) -> None:
        try:
            metadata = self._consumer.list_topics(self.physical_topic, timeout=30)
        except KafkaException as exc:
            raise TransientError(
                f"the cluster did not tell the partitions of {self.physical_topic}: {exc}",
                hint="check that the brokers are up; retrying",
            ) from exc
        topic = metadata.topics.get(self.physical_topic)
        if topic is not None and topic.error is not None and topic.error.code() in REFUSALS:
            raise AuthorizationError(
                f"the broker refuses to let this principal describe {self.physical_topic}:"
                f" {topic.error.str()}",
                hint="grant it READ on the topic and on the group"
                f" {reader_group(self.physical_topic)}: deploy/acls.yaml, then"
                " `consentinel acls apply`",
            )
        if topic is None or topic.error is not None:
            raise MissingTopicError(
                f"the topic {self.physical_topic} does not exist",
                hint="run `consentinel topics apply` first",
            )
        name = self.physical_topic
        starts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(topic.partitions)]
        read_to_end(
            self._consumer,
            starts,
            lambda messages: void(self._apply_all(messages)),
            timeout_s=timeout_s,
            what=self.physical_topic,
        )
        self.caught_up = True

    def poll(self) -> bool:
        """Apply what has arrived since the last call; return whether anything changed."""
        messages = self._consumer.consume(500, timeout=0)
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                self.consumer_error = str(error)
                log.warning("%s consumer error: %s", self.physical_topic, error)
        if records:
            self.consumer_error = None
        return self._apply_all(records)

    def _apply_all(self, messages: list[Message]) -> bool:
        changed = False
        for message in messages:
            raw = RawInput(
                topic=self.table.topic,
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                timestamp_ms=message.timestamp()[1],
                key=message.key(),
                value=message.value(),
            )
            changed = self._apply(raw) or changed
        return changed

    def _apply(self, raw: RawInput) -> bool:
        handler = self.table.handler
        for attempt, backoff in enumerate((*RETRY_BACKOFF_S, None)):
            try:
                return handler.apply(raw)
            except TransientError as exc:
                if backoff is None:
                    raise
                log.warning(
                    "%s offset %d unreadable for now (attempt %d, retrying in %.1fs): %s",
                    self.table.topic,
                    raw.offset,
                    attempt + 1,
                    backoff,
                    exc,
                )
                time.sleep(backoff)
            except ConsentinelError as exc:
                log.error("%s offset %d unreadable: %s", self.table.topic, raw.offset, exc)
                handler.broken(raw, str(exc))
                self.dead_letters.append(
                    dead_letter(raw, exc.error_kind, str(exc), at_ms=self._clock_ms(), partition=0)
                )
                return True
        return False

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
