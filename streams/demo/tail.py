"""Reading what the services wrote: a read_committed tail of one topic, from its end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition

from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings


class Tail:
    """Reads the records written to a topic after it was opened (``read_committed``)."""

    def __init__(self, settings: Settings, contract_topic: str) -> None:
        self.topic = settings.topic_prefix + contract_topic
        self.codec = AvroCodec(
            RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings)
        )
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": f"demo-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        meta = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in meta.partitions])

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float
    ) -> list[dict[str, Any]]:
        """Read until ``done(records read so far)`` or the timeout; return the records."""
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while not done(records) and time.monotonic() < deadline:
            for message in self.consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is None:
                    records.append(self.codec.decode(self.topic, message.value()))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {self.topic}: {error}")
        return records

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()


def decisions_for(tail: Tail, ids: dict[str, str]) -> list[dict[str, Any]]:
    """Read decisions until every event in ``ids`` has one; return them in ``ids`` order."""

    def done(records: list[dict[str, Any]]) -> bool:
        return set(ids) <= {r["subject_event_id"] for r in records}

    found = {r["subject_event_id"]: r for r in tail.until(done, timeout_s=60)}
    return [found[i] for i in ids if i in found]


# ---------------------------------------------------------------------- erasure and recall
