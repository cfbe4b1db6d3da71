"""Reads all of ``governance.controls`` into a :class:`~streams.core.controls.SuspensionRegistry`.

Every gate process reads every partition of the controls topic from the beginning, outside any
consumer group, so that a suspension applies to all partitions at once. ``catch_up`` blocks until
the topic's current end is reached (the gate decides nothing before that: fail closed); ``poll``
then applies new controls without blocking, once per batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.core.controls import SuspensionRegistry
from streams.errors import ConsentinelError, StackError
from streams.serde.wire import AvroCodec

log = logging.getLogger(__name__)


class ControlsReader:
    """Keeps a suspension registry in step with the controls topic."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        codec: AvroCodec,
        registry: SuspensionRegistry,
        topic: str,
    ) -> None:
        self.codec = codec
        self.registry = registry
        self.topic = topic
        self.caught_up = False
        self._at_end: set[int] = set()
        self._partitions: list[int] = []
        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": "consentinel-controls-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )

    def catch_up(self, timeout_s: float = 120.0) -> None:
        """Read the controls topic to its current end (blocking)."""
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise StackError(
                f"the controls topic {self.topic} does not exist",
                hint="run `consentinel topics apply` first",
            )
        self._partitions = sorted(metadata.partitions)
        self._consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in self._partitions]
        )
        deadline = time.monotonic() + timeout_s
        while len(self._at_end) < len(self._partitions):
            if time.monotonic() > deadline:
                raise StackError(f"could not read {self.topic} to its end in {timeout_s:.0f}s")
            self.poll(timeout_s=0.5)
        self.caught_up = True
        log.info("controls read: %d recipient(s) suspended", len(self.registry))

    def poll(self, timeout_s: float = 0.0) -> bool:
        """Apply any new controls; return whether any was applied."""
        changed = False
        for message in self._consumer.consume(500, timeout=timeout_s):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end.add(message.partition() or 0)
                else:
                    log.warning("controls consumer error: %s", error)
                continue
            self._at_end.discard(message.partition() or 0)
            try:
                control = self.codec.decode(self.topic, message.value())
            except ConsentinelError as exc:
                log.error("unreadable control at offset %s skipped: %s", message.offset(), exc)
                continue
            if self.registry.apply(control):
                changed = True
                log.info(
                    "control %s: %s %s",
                    control["control_id"],
                    control["kind"],
                    control["recipient_org"],
                )
            else:
                log.error("control %s has an unknown kind: ignored", control.get("control_id"))
        return changed

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
