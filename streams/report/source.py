"""Read ``governance.decisions`` in full: every partition, ``read_committed``, to its current end.

Reads outside any consumer group (partitions are assigned, nothing is committed). The end is each
partition's high watermark when reading starts, so a gate writing meanwhile does not keep the read
going forever. Values are decoded with the local ``Decision`` schema as reader schema, so fields
added later read as their defaults; a record that cannot be decoded is counted, not returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.errors import ConsentinelError, MissingTopicError, StackError
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings
from streams.topics import TOPIC_DECISIONS

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 60.0
"""Give up when no partition advances for this long."""


@dataclass
class DecisionLog:
    """What was read from the decisions topic.

    Attributes:
        topic: The topic read (the contract name under ``CONSENTINEL_TOPIC_PREFIX``).
        partitions: How many partitions it has.
        records: The decoded decisions kept (all of them, or those the filter kept).
        read: How many decisions were decoded in all.
        unreadable: ``(partition, offset)`` of every record that could not be decoded.
    """

    topic: str
    partitions: int
    records: list[dict[str, Any]] = field(default_factory=list)
    read: int = 0
    unreadable: list[tuple[int, int]] = field(default_factory=list)


def scan_decisions(
    settings: Settings, *, codec: AvroCodec | None = None, as_written: bool = False
) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """Yield ``(partition, offset, decision or None if undecodable)`` up to each partition's end.

    Offsets come in order within each partition (partitions interleave). With ``as_written`` each
    record is decoded with its writer's schema alone (for hash verification); otherwise with the
    local schema, so fields added later read as their defaults.

    Raises:
        StackError: the topic does not exist, or reading fails or stalls.
    """
    return scan_topic(settings, TOPIC_DECISIONS, codec=codec, as_written=as_written)


def scan_topic(
    settings: Settings,
    contract_topic: str,
    *,
    codec: AvroCodec | None = None,
    as_written: bool = False,
) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """Like :func:`scan_decisions`, for any topic of the contract (named without the prefix).

    Raises:
        MissingTopicError: the topic does not exist.
        StackError: reading fails or stalls.
    """
    topic = settings.topic_prefix + contract_topic
    if codec is None:
        codec = AvroCodec(RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings))
    decode = codec.decode_as_written if as_written else codec.decode
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": "consentinel-decisions-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise MissingTopicError(
                f"topic {topic} does not exist", hint="run `consentinel topics apply`"
            )
        ends: dict[int, int] = {}
        for partition in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            if high > low:
                ends[partition] = high
        for partition, offset, value in _consume(consumer, topic, ends):
            try:
                yield partition, offset, decode(topic, value)
            except ConsentinelError as exc:
                log.warning("%s[%d]@%d cannot be decoded: %s", topic, partition, offset, exc)
                yield partition, offset, None
    finally:
        consumer.close()


def partition_count(settings: Settings, contract_topic: str = TOPIC_DECISIONS) -> int:
    """Return how many partitions the decisions topic (or another) has (0 if it does not exist)."""
    topic = settings.topic_prefix + contract_topic
    consumer = Consumer({**settings.kafka_config(), "group.id": "consentinel-decisions-reader"})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        return 0 if metadata is None or metadata.error is not None else len(metadata.partitions)
    finally:
        consumer.close()


def read_decisions(
    settings: Settings,
    *,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    codec: AvroCodec | None = None,
) -> DecisionLog:
    """Read every committed decision up to the current end of each partition.

    Args:
        settings: Where Kafka and the registry are; ``topic_prefix`` is honoured.
        keep: Keep only the decisions for which this returns true (default: all).
        codec: The codec to decode with (default: one over the settings' registry).

    Raises:
        StackError: the topic does not exist, or reading fails or stalls.
    """
    result = DecisionLog(
        topic=settings.topic_prefix + TOPIC_DECISIONS, partitions=partition_count(settings)
    )
    for partition, offset, record in scan_decisions(settings, codec=codec):
        if record is None:
            result.unreadable.append((partition, offset))
            continue
        result.read += 1
        if keep is None or keep(record):
            result.records.append(record)
    return result


def _consume(
    consumer: Consumer, topic: str, ends: dict[int, int]
) -> Iterator[tuple[int, int, bytes]]:
    """Read the partitions of ``ends`` from the beginning until each reaches its end offset."""
    if not ends:
        return
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(ends)])
    pending = set(ends)
    last_progress = time.monotonic()
    while pending:
        messages = consumer.consume(1000, timeout=1.0)
        if messages:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_TIMEOUT_S:
            raise StackError(
                f"reading {topic} stalled: partitions {sorted(pending)} did not reach their end "
                f"in {STALL_TIMEOUT_S:.0f}s"
            )
        done: list[int] = []
        for message in messages:
            partition = message.partition() or 0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done.append(partition)
                    continue
                raise StackError(f"reading {topic}[{partition}] failed: {error}")
            offset = message.offset() or 0
            if partition not in pending or offset >= ends[partition]:
                done.append(partition)  # written after we started: not part of this read
                continue
            yield partition, offset, message.value() or b""
            if offset >= ends[partition] - 1:
                done.append(partition)
        finished = pending.intersection(done)
        if finished:
            consumer.pause([TopicPartition(topic, p) for p in finished])
            pending -= finished
