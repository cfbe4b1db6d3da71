"""The ceiling: a transactional confluent-kafka consume -> produce passthrough, no decoding.

Same consumer and producer settings, batch size and transaction cadence as the gate
(:class:`streams.gate.runner.RunnerOptions` defaults): ``consume(2000, timeout=0.05)``, one
transaction per batch with ``send_offsets_to_transaction``, ``linger.ms=5``, ``lz4``. Each input
record is forwarded unchanged (key, value, Kafka timestamp) to the same partition of one output
topic. That is the most a single Python process can move through Kafka with exactly-once.

Run: ``python -m bench.ceiling OUTPUT_TOPIC`` with ``CONSENTINEL_TOPIC_PREFIX`` set.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from confluent_kafka import Consumer, TopicPartition

from streams.gate.topology import STREAM_ORDER
from streams.runtime.runner import RuntimeOptions as RunnerOptions
from streams.runtime.transaction import transactional_producer
from streams.settings import load_settings


def main(output: str) -> int:
    settings = load_settings()
    prefix = settings.topic_prefix
    options = RunnerOptions()
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": prefix + "bench-ceiling",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "max.poll.interval.ms": 600_000,
        }
    )
    # the runtime's own transactional producer, so the ceiling pays what the gate pays
    producer = transactional_producer(settings.kafka_config(), f"{prefix}bench-ceiling", options)
    running = True

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    producer.init_transactions()
    consumer.subscribe([prefix + t for t in STREAM_ORDER])
    try:
        while running:
            messages = consumer.consume(options.batch_max_events, timeout=options.poll_timeout_s)
            if not messages:
                continue
            producer.begin_transaction()
            offsets: dict[tuple[str, int], int] = {}
            for message in messages:
                if message.error() is not None:
                    continue
                partition = message.partition()
                while True:
                    try:
                        producer.produce(
                            output,
                            message.value(),
                            message.key(),
                            partition=partition,
                            timestamp=message.timestamp()[1],
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                offsets[(message.topic(), partition)] = message.offset() + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                consumer.consumer_group_metadata(),
            )
            producer.commit_transaction()
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
