"""What :mod:`bench.burst` runs beside the system under test: a sender, an observer, a poller.

* :func:`send_burst` produces share requests at a fixed rate through the SDK and keeps when each
  was handed to the producer (the "sent" time of the timeline);
* :class:`Observer` reads the topics of the path ``read_committed`` from given offsets and keeps
  every record with the time its consumer returned it (what a downstream reader can see);
* :class:`CommitPoller` polls a consumer group's committed offsets (when the detector's
  transaction that consumed a decision committed).

Each runs in its own thread; they only read, never commit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.sdk.producer import ConsentinelProducer


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Raw:
    """One record as the observer's consumer returned it (decoded later, off the clock)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    seen_ms: int
    value: bytes | None


class Observer(threading.Thread):
    """Reads topics ``read_committed`` from their current end and keeps what it sees, timed."""

    def __init__(self, kafka_config: dict[str, Any], group: str, names: Sequence[str]) -> None:
        super().__init__(daemon=True, name="burst-observer")
        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                # the observer's own wait must not show as the system's: an empty fetch returns
                # after 10 ms (a fetch with data returns as soon as the data is committed)
                "fetch.wait.max.ms": 10,
                "fetch.queue.backoff.ms": 10,
            }
        )
        starts = []
        for name in names:
            meta = self._consumer.list_topics(name, timeout=30).topics.get(name)
            if meta is None or meta.error is not None:
                continue  # not created yet (an internal topic nobody wrote to)
            for p in meta.partitions:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(name, p), timeout=30, cached=False
                )
                starts.append(TopicPartition(name, p, high))
        self._consumer.assign(starts)
        self.records: list[Raw] = []
        self._lock = threading.Lock()
        self._running = True

    def run(self) -> None:
        try:
            while self._running:
                messages = self._consumer.consume(1000, timeout=0.05)
                seen = now_ms()
                got = []
                for m in messages:
                    error = m.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            print(f"[burst observer] {error}", flush=True)
                        continue
                    got.append(
                        Raw(
                            m.topic() or "",
                            m.partition() or 0,
                            m.offset() or 0,
                            m.timestamp()[1],
                            seen,
                            m.value(),
                        )
                    )
                if got:
                    with self._lock:
                        self.records.extend(got)
        finally:
            self._consumer.close()

    def of(self, topic: str) -> list[Raw]:
        """Return the records of ``topic`` seen so far."""
        with self._lock:
            return [r for r in self.records if r.topic == topic]

    def stop(self) -> None:
        self._running = False
        self.join(10)


class CommitPoller(threading.Thread):
    """Polls ``group``'s committed offsets; keeps each change as (poll time, offsets)."""

    def __init__(self, admin: AdminClient, group: str, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True, name="burst-commits")
        self._admin = admin
        self._group = group
        self._interval_s = interval_s
        self._running = True
        self.changes: list[tuple[int, dict[tuple[str, int], int]]] = []

    def run(self) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions

        last: dict[tuple[str, int], int] = {}
        while self._running:
            asked = now_ms()
            with contextlib.suppress(Exception):
                request = [ConsumerGroupTopicPartitions(self._group)]
                listed = self._admin.list_consumer_group_offsets(request)[self._group].result(5)
                offsets = {(tp.topic, tp.partition): tp.offset for tp in listed.topic_partitions}
                if offsets != last:
                    # the commit happened before the answer; `asked` is when we last did not
                    # know it yet, so the poll's round trip counts against the system
                    self.changes.append((now_ms(), offsets))
                    last = offsets
            time.sleep(max(0.0, self._interval_s - (now_ms() - asked) / 1000))

    def stop(self) -> None:
        self._running = False
        self.join(10)


@dataclass
class Burst:
    """What :func:`send_burst` sent: event id -> when it was handed to the producer."""

    sent_ms: dict[str, int] = field(default_factory=dict)
    behind_max_s: float = 0.0


def send_burst(
    producer: ConsentinelProducer,
    owners: Sequence[tuple[str, str]],
    *,
    recipient: str,
    requester: str,
    count: int,
    per_second: float,
) -> Burst:
    """Send ``count`` share requests to ``recipient`` at ``per_second``, round the owners.

    ``owners`` are (owner, photo) pairs whose owners consented; each request is sent the moment
    it is due (``occurred_at`` = then) and the loop sleeps between ticks of 5 ms.
    """
    burst = Burst()
    started = time.time()
    sent = 0
    while sent < count:
        tick = time.time()
        due = min(count, int((tick - started) * per_second) + 1) - sent
        for _ in range(max(due, 0)):
            owner, photo = owners[sent % len(owners)]
            at = now_ms()
            event_id = producer.share_requested(
                photo_id=photo,
                owner_id=owner,
                requester=requester,
                recipient_org=recipient,
                purpose="ML_TRAINING",
                categories=["IMAGE"],
                occurred_at=at,
            )
            burst.sent_ms[event_id] = at
            sent += 1
        burst.behind_max_s = max(burst.behind_max_s, time.time() - tick)
        time.sleep(max(0.0, 0.005 - (time.time() - tick)))
    producer.flush(60)
    return burst


def topic_names(prefix: str, names: Iterable[str]) -> list[str]:
    return [prefix + n for n in names]


@dataclass
class ProcessProbe:
    """A process under test: its pid and metrics port, read before and after a run."""

    name: str
    pid: int
    port: int
    metrics_prefix: str

    def read(self) -> dict[str, float]:
        """CPU seconds so far, and the commit histogram's count and sum (seconds)."""
        import urllib.request

        from bench.processes import proc_cpu_seconds

        out = {"cpu_s": proc_cpu_seconds(self.pid) or 0.0, "commits": 0.0, "commit_s": 0.0}
        name = f"{self.metrics_prefix}_transaction_commit_duration_seconds"
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{self.port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                for line in response.read().decode().splitlines():
                    if line.startswith(name + "_count "):
                        out["commits"] = float(line.rsplit(" ", 1)[1])
                    elif line.startswith(name + "_sum "):
                        out["commit_s"] = float(line.rsplit(" ", 1)[1])
        return out


def usage(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, float]:
    """CPU share, commits and their mean duration between two :meth:`ProcessProbe.read`."""
    commits = after["commits"] - before["commits"]
    return {
        "cpu_cores": round((after["cpu_s"] - before["cpu_s"]) / wall_s, 2) if wall_s else 0.0,
        "commits": int(commits),
        "commit_mean_ms": round((after["commit_s"] - before["commit_s"]) / commits * 1000, 1)
        if commits
        else 0.0,
    }
