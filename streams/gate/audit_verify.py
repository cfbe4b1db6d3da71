"""``consentinel audit verify``: check every partition's hash chain in ``governance.decisions``.

Reads each partition from its first offset to its current end with a ``read_committed`` consumer
(outside any group), and checks every decision's ``hash`` and ``prev_hash`` link with
:func:`streams.core.audit.verify_chain`. Records are hashed as written: decoded with their own
writer schema, so fields added to the schema later do not alter old records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.core.audit import ChainBreak, verify_chain
from streams.errors import ConsentinelError, StackError
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings
from streams.topics import TOPIC_DECISIONS


@dataclass(frozen=True)
class PartitionReport:
    """The outcome of verifying one partition's chain."""

    partition: int
    decisions: int
    first_break: ChainBreak | None
    unreadable_offset: int | None = None

    @property
    def intact(self) -> bool:
        """Whether every link of this partition holds."""
        return self.first_break is None and self.unreadable_offset is None


def read_partition(
    consumer: Consumer, codec: AvroCodec, topic: str, partition: int
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Yield ``(offset, decision or None if undecodable)`` for one partition, to its end."""
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    if high <= low:
        return
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    while True:
        for message in consumer.consume(1000, timeout=2.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                raise StackError(f"reading {topic}[{partition}] failed: {error}")
            try:
                yield message.offset() or 0, codec.decode_as_written(topic, message.value())
            except ConsentinelError:
                yield message.offset() or 0, None


def verify_partitions(settings: Settings) -> list[PartitionReport]:
    """Verify every partition of the decisions topic; return one report per partition."""
    topic = settings.topic_prefix + TOPIC_DECISIONS
    codec = AvroCodec(
        RegistrySchemaSource(settings.schema_registry_url), prefixed_catalog(settings)
    )
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": "consentinel-audit-verify",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise StackError(f"topic {topic} does not exist", hint="run `consentinel topics apply`")
        reports = []
        for partition in sorted(metadata.partitions):
            records: list[dict[str, Any]] = []
            unreadable = None
            for offset, record in read_partition(consumer, codec, topic, partition):
                if record is None:
                    unreadable = offset
                    break
                records.append(record)
            first_break = verify_chain(records) if unreadable is None else None
            reports.append(PartitionReport(partition, len(records), first_break, unreadable))
        return reports
    finally:
        consumer.close()


def verify_decisions(settings: Settings, *, say: Callable[[str], None] = print) -> bool:
    """Verify and print a line per partition; return whether every chain is intact."""
    reports = verify_partitions(settings)
    for report in reports:
        if report.unreadable_offset is not None:
            say(
                f"partition {report.partition}: record at offset {report.unreadable_offset} "
                "cannot be decoded: the chain cannot be checked past it"
            )
        elif report.first_break is not None:
            say(
                f"partition {report.partition}: BROKEN after {report.decisions} decisions: "
                f"{report.first_break}"
            )
        else:
            say(f"partition {report.partition}: intact ({report.decisions} decisions)")
    intact = all(r.intact for r in reports)
    total = sum(r.decisions for r in reports)
    say(
        f"{'every chain is intact' if intact else 'TAMPERING OR LOSS DETECTED'}: "
        f"{total} decisions on {len(reports)} partitions"
    )
    return intact
