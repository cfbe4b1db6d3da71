"""The benchmarks' output monitor: a read_committed consumer noting when records become visible.

:class:`OutputMonitor` counts them (:class:`Arrivals`) and, given each record's event time, times
them; :func:`percentiles` summarises those latencies.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from streams.settings import Settings


@dataclass
class Arrivals:
    """When records became visible to a read_committed consumer."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    first_batch: int = 0  # records visible at the first instant (not timed: produced before it)
    latencies_ms: list[float] = field(default_factory=list)
    until_produced_ms: list[float] = field(default_factory=list)
    """Of each timed latency: from ``occurred_at`` to the output record's timestamp (when the
    system under test produced it, or the broker appended it)."""
    produced_to_visible_ms: list[float] = field(default_factory=list)
    """The rest: from that timestamp to visible (the commit, and the reader's fetch)."""
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, cumulative count)


class OutputMonitor(threading.Thread):
    """A read_committed consumer counting the records of some topics as they become visible.

    ``occurred_ms(message)`` (optional) gives a record's event time, for latency (visible time minus
    ``occurred_at``). Records whose ``occurred_at`` is before ``latency_from_ms`` are not timed.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        group: str,
        from_end: bool = False,
        occurred_ms: Callable[[Message], int] | None = None,
        latency_from_ms: int = 0,
    ) -> None:
        super().__init__(daemon=True, name="output-monitor")
        self.arrivals = Arrivals()
        self.occurred_ms = occurred_ms
        self.latency_from_ms = latency_from_ms
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": int(os.environ.get("BENCH_MONITOR_FETCH_WAIT_MS", "10")),
            }
        )
        assignment = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            deadline = time.monotonic() + 30
            while (meta.error is not None or not meta.partitions) and time.monotonic() < deadline:
                time.sleep(0.2)  # a topic created a moment ago: its metadata is not there yet
                meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            for partition in meta.partitions:
                offset = OFFSET_BEGINNING
                if from_end:
                    _, offset = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=30
                    )
                assignment.append(TopicPartition(topic, partition, offset))
        self.consumer.assign(assignment)

    def run(self) -> None:
        arrivals = self.arrivals
        try:
            while not self._halt.is_set():
                # poll() returns as soon as one record is there (consume(n, t) would wait for n
                # records or the whole timeout); then take whatever else is already fetched.
                head = self.consumer.poll(0.1)
                if head is None:
                    continue
                now = time.time()
                messages = [head, *self.consumer.consume(5000, timeout=0)]
                got = 0
                for message in messages:
                    if message.error() is not None:
                        if message.error().code() != KafkaError._PARTITION_EOF:
                            print(f"monitor: {message.error()}", file=sys.stderr)
                        continue
                    got += 1
                    if self.occurred_ms is not None:
                        occurred = self.occurred_ms(message)
                        if occurred >= self.latency_from_ms:
                            arrivals.latencies_ms.append(now * 1000 - occurred)
                            _, stamped = message.timestamp()
                            if stamped > 0:
                                arrivals.until_produced_ms.append(stamped - occurred)
                                arrivals.produced_to_visible_ms.append(now * 1000 - stamped)
                if not got:
                    continue
                with self._cond:
                    if arrivals.first is None:
                        arrivals.first = now
                    if now - arrivals.first < 0.005:
                        arrivals.first_batch += got
                    arrivals.last = now
                    arrivals.count += got
                    arrivals.timeline.append((now, arrivals.count))
                    self._cond.notify_all()
        finally:
            self.consumer.close()

    def wait_for(
        self, count: int, timeout_s: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.arrivals.count < count:
                if time.monotonic() > deadline or not alive():
                    return False
                self._cond.wait(0.5)
        return True

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None, "n": 0}
    data = sorted(values)

    def pick(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))], 1)

    return {
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "p999_ms": pick(0.999),
        "max_ms": round(data[-1], 1),
        "n": len(data),
    }
