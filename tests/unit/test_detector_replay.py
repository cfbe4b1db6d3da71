"""A detector catching up on a backlog counts every window as live traffic would have.

The gate decided two days of traffic before the detector started; the decision partitions
reach the detector skewed (each partition's whole backlog in turn, as a consumer that fetches
one partition far ahead of the others delivers them). The detector merges its input partitions
by ``decided_at`` (contract §5), so it alerts on every crossing of the true sliding hour, with
the true count, and nowhere else.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from streams import topics
from streams.core.partitioning import partition_for
from streams.core.policy import parse_policy
from streams.detect.topology import DetectorTopology
from streams.runtime.testing import TopologyDriver, sample_record
from streams.testing.topologies import detector_driver
from tests.unit.detect_support import DAY, HOUR, MINUTE, T0

REPO = Path(__file__).resolve().parents[2]
LIMIT = 100
POLICY = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", f"max_photos_per_hour: {LIMIT}")
    .replace("max_photos_per_hour: 2000", f"max_photos_per_hour: {LIMIT}")
)
"""acme-vision and lovebird-partners may each receive 100 photos an hour."""

BURSTY, STEADY = "acme-vision", "lovebird-partners"
PARTITIONS = 4

Event = tuple[int, str, str]
"""(decided_at, recipient, owner) of one ALLOW decision."""


def backlog(seed: int, days: int = 2) -> list[Event]:
    """Two days of exports: BURSTY at 30/hour with a 90-photo burst every 12 hours, STEADY at
    90/hour (just under its limit all along). Every decision has its own millisecond."""
    rng = random.Random(seed)
    events: list[Event] = []
    used: set[int] = set()

    def add(at: int, recipient: str) -> None:
        while at in used:
            at += 1
        used.add(at)
        events.append((at, recipient, f"u-{rng.randrange(10_000)}"))

    for minute in range(days * 24 * 60):
        start = T0 + minute * MINUTE
        if minute % 2 == 0:
            add(start + rng.randrange(MINUTE), BURSTY)
        for second in (0, 20, 40):
            if (minute * 3 + second // 20) % 2:  # every 40 s: 90 an hour
                add(start + second * 1000 + rng.randrange(1000), STEADY)
    for burst in range(days * 2):
        begin = T0 + 5 * HOUR + burst * 12 * HOUR + rng.randrange(HOUR)
        for n in range(90):
            add(begin + n * (10 * MINUTE // 90), BURSTY)
    return sorted(events)


def true_crossings(events: list[Event], recipient: str) -> list[tuple[int, int]]:
    """Return (event time, count) of each crossing of the sliding hour, by a naive recount.

    The sliding hour is the detector's: the last 60 one-minute buckets up to the latest
    decision; an episode re-arms once the count falls below half the limit.
    """
    minutes: list[int] = []
    crossings = []
    active = False
    for at, org, _ in events:
        if org != recipient:
            continue
        head = at // MINUTE
        minutes.append(head)
        count = sum(1 for m in minutes if head - 60 < m <= head)
        if active and count < LIMIT / 2:
            active = False
        elif not active and count > LIMIT:
            active = True
            crossings.append((at, count))
    return crossings


def feed_skewed(driver: TopologyDriver[DetectorTopology], events: list[Event]) -> None:
    """Write the decisions partition after partition: each partition's whole backlog in turn."""
    by_partition: dict[int, list[tuple[int, Event]]] = defaultdict(list)
    for n, event in enumerate(events):
        by_partition[partition_for(event[2], PARTITIONS)].append((n, event))
    assert len(by_partition) == PARTITIONS
    for partition in sorted(by_partition):
        for n, (at, recipient, owner) in by_partition[partition]:
            record = sample_record(
                driver.codec,
                topics.TOPIC_DECISIONS,
                decision_id=f"d-{n}",
                subject_event_id=f"e-{n}",
                subject_kind="TRAINING_READ",
                owner_id=owner,
                photo_id=f"p-{n}",
                actor=f"job-{recipient}",
                recipient_org=recipient,
                purpose="ML_TRAINING",
                verdict="ALLOW",
                reason="CONSENTED",
                occurred_at=at,
                decided_at=at,
            )
            driver.feed(topics.TOPIC_DECISIONS, owner, record, partition=partition)


def bulk_alerts(driver: TopologyDriver[Any], recipient: str) -> list[tuple[int, int]]:
    """Return (window end, observed) of each BULK_EXPORT alert raised for ``recipient``."""
    first: dict[str, tuple[int, int]] = {}
    for alert in driver.outputs(topics.TOPIC_ALERTS):
        if alert["kind"] == "BULK_EXPORT" and alert["subject"] == recipient:
            first.setdefault(alert["alert_id"], (alert["window_end"], alert["observed"]))
    return sorted(first.values())


def assert_alerts_match(driver: TopologyDriver[Any], events: list[Event]) -> None:
    expected = true_crossings(events, BURSTY)
    assert len(expected) == 4  # the scenario: one crossing per burst
    assert true_crossings(events, STEADY) == []  # the scenario: always under the limit
    raised = bulk_alerts(driver, BURSTY)
    assert len(raised) == len(expected), (raised, expected)
    for (at, observed), (true_at, true_count) in zip(raised, expected, strict=True):
        assert abs(at - true_at) <= 5 * MINUTE
        assert observed == true_count
    assert bulk_alerts(driver, STEADY) == []


def test_a_skewed_backlog_alerts_on_every_crossing_with_the_true_count() -> None:
    events = backlog(seed=7)
    driver = detector_driver(POLICY, partitions=PARTITIONS)
    feed_skewed(driver, events)
    driver.run()
    assert_alerts_match(driver, events)


def test_a_partition_whose_backlog_is_not_fetched_yet_holds_the_others() -> None:
    """The merge waits for a partition that lags (the broker has records the consumer lacks)."""
    events = backlog(seed=11)
    driver = detector_driver(POLICY, partitions=PARTITIONS)
    feed_skewed(driver, events)
    driver.hold(topics.TOPIC_DECISIONS, 2)
    driver.run()
    assert driver.records(driver.topology.by_recipient) == []
    assert driver.outputs(topics.TOPIC_ALERTS) == []
    driver.advance(10 * DAY)  # however long it lags: it is known to have records to come
    assert driver.outputs(topics.TOPIC_ALERTS) == []
    driver.release(topics.TOPIC_DECISIONS, 2)
    driver.run()
    assert_alerts_match(driver, events)
