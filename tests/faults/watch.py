"""Watches of a faulted run: decisions as they become visible, and the gate's readiness."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Self

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams import topics
from tests.integration.harness import GateEnv


class _Watch:
    """A daemon thread that watches for the ``with`` block (its ``_run`` ends on ``_stop``)."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


class DecisionWatch(_Watch):
    """Counts committed decisions over time, to measure how long a fault stopped them."""

    def __init__(self, env: GateEnv) -> None:
        self.arrivals: list[float] = []
        """When each decision became visible here (monotonic seconds)."""
        self.written_ms: list[int] = []
        """Each decision's record timestamp (epoch ms, when the gate wrote it), as ``arrivals``."""
        self._env = env
        super().__init__("decision-watch")

    def _run(self) -> None:
        topic = self._env.topic(topics.TOPIC_DECISIONS)
        consumer = Consumer(
            {
                **self._env.settings.kafka_config(),
                "group.id": f"{self._env.prefix}watch",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
                "log_level": 0,
            }
        )
        try:
            partitions = consumer.list_topics(topic, timeout=60).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            while not self._stop.is_set():
                for message in consumer.consume(1000, timeout=0.2):
                    error = message.error()
                    if error is None:
                        self.arrivals.append(time.monotonic())
                        self.written_ms.append(message.timestamp()[1])
                    elif error.code() != KafkaError._PARTITION_EOF:
                        continue  # a broker of the cluster is down: the client retries
        finally:
            consumer.close()

    def first_after(self, moment: float) -> float | None:
        """Return seconds from ``moment`` to the first decision visible after it (None: none)."""
        later = [t for t in self.arrivals if t > moment]
        return min(later) - moment if later else None

    def longest_gap(self, start: float, end: float) -> float:
        """Return the longest time between visible decisions within ``[start, end]``."""
        inside = [start, *(t for t in self.arrivals if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(inside))


class ReadinessWatch(_Watch):
    """Polls a process's ``/ready`` every quarter second: when it said ready, and when not."""

    def __init__(self, port: int) -> None:
        self.samples: list[tuple[float, bool]] = []
        self._url = f"http://127.0.0.1:{port}/ready"
        super().__init__("ready-watch")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self._url, timeout=2) as reply:
                    ready = reply.status == 200
            except urllib.error.HTTPError as exc:
                ready = exc.code == 200
            except OSError:
                ready = False  # not serving yet
            self.samples.append((time.monotonic(), ready))
            self._stop.wait(0.25)

    def not_ready_within(self, start: float, end: float) -> bool:
        """Whether it said not ready at some moment within ``[start, end]``."""
        return any(not ready for t, ready in self.samples if start <= t <= end)

    def ready_within(self, start: float, end: float) -> bool:
        """Whether it said ready at some moment within ``[start, end]``."""
        return any(ready for t, ready in self.samples if start <= t <= end)

    def ready_again_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` to its first ready answer after it (None: never)."""
        later = [t for t, ready in self.samples if t > moment and ready]
        return min(later) - moment if later else None


def free_port() -> int:
    """Return a TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
