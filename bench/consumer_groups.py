"""Waits on consumer groups: until a group has consumed its input, or committed it.

Each polls the broker's view of the group (its members' assignment, its committed offsets).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.settings import Settings


def wait_consumed(
    settings: Settings, admin: AdminClient, group: str, prefix: str, timeout_s: float
) -> float:
    """Wait until ``group`` has committed offsets at the end of every input topic partition."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    from streams.topics import INPUT_TOPICS

    probe = Consumer({**settings.kafka_config(), "group.id": group + "-probe"})
    started = time.monotonic()
    try:
        ends = {}
        for logical in INPUT_TOPICS:
            topic = prefix + logical
            for partition in probe.list_topics(topic, timeout=30).topics[topic].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                if high > 0:
                    ends[(topic, partition)] = high
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(Exception):
                request = [ConsumerGroupTopicPartitions(group)]
                listed = admin.list_consumer_group_offsets(request)[group].result()
                committed = {(tp.topic, tp.partition): tp.offset for tp in listed.topic_partitions}
                if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                    return time.monotonic() - started
            time.sleep(1.0)
    finally:
        probe.close()
    raise RuntimeError(f"{group} did not consume its input within {timeout_s}s")


def committed_progress(
    settings: Settings,
    admin: AdminClient,
    group: str,
    totals: dict[str, int],
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    interval_s: float = 0.25,
) -> dict[str, float]:
    """Poll ``group``'s committed offsets on ``totals``' topics until they sum to the totals.

    Return when the first commit was seen (and how many it covered) and when the last was.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions

    first_at: float | None = None
    first_committed = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{group}: the process exited before consuming its input")
        with contextlib.suppress(Exception):
            listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[
                group
            ].result()
            now = time.time()
            done = {t: 0 for t in totals}
            for tp in listed.topic_partitions:
                if tp.topic in done and tp.offset > 0:
                    done[tp.topic] += tp.offset
            count = sum(done.values())
            if count > 0 and first_at is None:
                first_at, first_committed = now, count
            if all(done[t] >= n for t, n in totals.items()):
                return {
                    "first_commit_at": first_at or now,
                    "first_committed": first_committed,
                    "done_at": now,
                }
        time.sleep(interval_s)
    raise RuntimeError(f"{group} did not commit its input within {timeout_s}s")
