"""The detector topology against the real broker: one alert per episode, suspension, crash safety.

Decisions are produced straight onto a scratch ``governance.decisions`` (no gate needed), the
detector runs as a separate process (``python -m streams.detect.app``), and what it writes to
``governance.alerts`` and ``governance.controls`` is read back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.serde.testing import SAMPLE_RECORDS
from streams.settings import Settings
from tests.integration.detector_harness import LIMIT, REPO, T0, DetectorEnv, detector_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def detector(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path
) -> Iterator[DetectorEnv]:
    with detector_env(settings, admin, unique, tmp_path) as env:
        yield env


def test_one_alert_per_episode_with_suspension_and_a_crash_mid_episode(
    detector: DetectorEnv,
) -> None:
    detector.start()
    detector.produce_decisions(0, LIMIT + 5)
    alerts = detector.wait_for(topics.TOPIC_ALERTS, 1)
    assert [a["kind"] for a in alerts] == ["BULK_EXPORT"]
    alert = alerts[0]
    assert alert["subject"] == "acme-vision" and alert["observed"] == LIMIT + 1
    crossing = T0 + LIMIT * 1000  # the (LIMIT+1)-th allowed photo
    assert abs(alert["raised_at"] - crossing) <= 5_000
    assert alert["action"] == "RECIPIENT_SUSPENDED"
    controls = detector.wait_for(topics.TOPIC_CONTROLS, 1)
    assert [(c["kind"], c["recipient_org"]) for c in controls] == [
        ("SUSPEND_RECIPIENT", "acme-vision")
    ]

    # a crash mid-episode, then more of the same export: no second alert
    detector.kill()
    detector.start()
    detector.produce_decisions(LIMIT + 5, 10)
    detector.produce_decisions(LIMIT + 15, 1, verdict="DENY")
    detector.wait_caught_up()
    # counts, not sets of ids: a re-emitted duplicate of the first alert must fail this
    alerts = [a for a in detector.read(topics.TOPIC_ALERTS) if a["kind"] == "BULK_EXPORT"]
    assert [a["alert_id"] for a in alerts] == [alert["alert_id"]]
    controls = detector.read(topics.TOPIC_CONTROLS)
    assert [(c["kind"], c["recipient_org"]) for c in controls] == [
        ("SUSPEND_RECIPIENT", "acme-vision")
    ]
    unconsented = [a for a in detector.read(topics.TOPIC_ALERTS) if a["kind"] != "BULK_EXPORT"]
    assert [a["kind"] for a in unconsented] == ["UNCONSENTED_TRAINING"]


def _bulk_alerts(detector: DetectorEnv) -> list[dict[str, Any]]:
    """Return the committed BULK_EXPORT alerts (read_committed)."""
    return [a for a in detector.read(topics.TOPIC_ALERTS) if a["kind"] == "BULK_EXPORT"]


def test_the_crossing_decision_of_a_caught_up_detector_raises_one_alert(
    detector: DetectorEnv,
) -> None:
    """Order and counts only: how fast the alert comes is measured by the benchmark."""
    detector.start()
    now = int(time.time() * 1000)
    detector.produce_decisions(0, LIMIT, at=now)
    detector.wait_caught_up()  # the detector is idle and caught up when the crossing comes
    assert _bulk_alerts(detector) == []
    detector.produce_decisions(LIMIT, 1, at=now + 2000)
    detector.wait_caught_up()
    alerts = _bulk_alerts(detector)
    assert len(alerts) == 1 and alerts[0]["observed"] == LIMIT + 1
    assert alerts[0]["window_end"] == now + 2000  # raised by the crossing decision itself


def test_two_sigkills_around_the_crossing_still_raise_exactly_one_alert(
    detector: DetectorEnv,
) -> None:
    detector.start()
    now = int(time.time() * 1000)
    detector.produce_decisions(0, LIMIT - 5, at=now)
    time.sleep(1)
    detector.kill()  # before the crossing, with its state mid-window
    detector.start()
    detector.produce_decisions(LIMIT - 5, 10, at=now + 1000)  # crosses at LIMIT + 1
    time.sleep(0.3)
    detector.kill()  # after the crossing, perhaps before the alert's transaction committed
    detector.start()
    detector.wait_caught_up()  # every decision's effects are committed: nothing else follows
    alerts = _bulk_alerts(detector)
    assert len(alerts) == 1 and alerts[0]["observed"] == LIMIT + 1
    controls = detector.read(topics.TOPIC_CONTROLS)
    assert [(c["kind"], c["recipient_org"]) for c in controls] == [
        ("SUSPEND_RECIPIENT", "acme-vision")
    ]


def test_a_detector_started_after_a_skewed_backlog_alerts_on_every_true_crossing(
    detector: DetectorEnv,
) -> None:
    """Two days decided before the detector starts, written partition after partition.

    The detector merges its input partitions by ``decided_at`` (contract §5): every crossing
    of the true sliding hour gets its alert (within 5 minutes of event time, with the true
    count), and a recipient that stays under its limit gets none.
    """
    from streams.core.partitioning import partition_for
    from tests.unit import test_detector_replay as replay

    detector.policy.write_text(
        (REPO / "deploy" / "policy.example.yaml")
        .read_text()
        .replace("max_photos_per_hour: 5000", f"max_photos_per_hour: {replay.LIMIT}")
        .replace("max_photos_per_hour: 2000", f"max_photos_per_hour: {replay.LIMIT}")
    )
    events = replay.backlog(seed=7)
    name = detector.topic(topics.TOPIC_DECISIONS)
    consumer = Consumer({**detector.settings.kafka_config(), "group.id": "meta"})
    try:
        partitions = len(consumer.list_topics(name, timeout=10).topics[name].partitions)
    finally:
        consumer.close()
    by_partition: dict[int, list[tuple[int, replay.Event]]] = {}
    for n, event in enumerate(events):
        by_partition.setdefault(partition_for(event[2], partitions), []).append((n, event))
    producer = Producer(detector.settings.kafka_config())
    for partition in sorted(by_partition):  # each partition's whole backlog in turn
        for n, (at, recipient, owner) in by_partition[partition]:
            record = {
                **SAMPLE_RECORDS["Decision"],
                "decision_id": f"d-{n}",
                "subject_event_id": f"e-{n}",
                "subject_kind": "TRAINING_READ",
                "owner_id": owner,
                "photo_id": f"p-{n}",
                "actor": f"job-{recipient}",
                "recipient_org": recipient,
                "purpose": "ML_TRAINING",
                "verdict": "ALLOW",
                "reason": "CONSENTED",
                "occurred_at": at,
                "decided_at": at,
            }
            producer.produce(
                name, detector.codec.encode(name, record), owner.encode(), partition=partition
            )
            producer.poll(0)
        assert producer.flush(60) == 0
    detector.start()
    detector.wait_caught_up(timeout=300)
    alerts = _bulk_alerts(detector)
    expected = replay.true_crossings(events, replay.BURSTY)
    assert len(expected) == 4 and replay.true_crossings(events, replay.STEADY) == []
    raised = sorted(
        (a["window_end"], a["observed"]) for a in alerts if a["subject"] == replay.BURSTY
    )
    assert len(raised) == len(expected), (raised, expected)
    for (at, observed), (true_at, true_count) in zip(raised, expected, strict=True):
        assert abs(at - true_at) <= 5 * 60_000
        assert observed == true_count
    assert [a for a in alerts if a["subject"] == replay.STEADY] == []
