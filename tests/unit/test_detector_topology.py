"""The real detector topology (both stages) on the in-process driver, alone and after the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams import topics
from streams.core.policy import parse_policy
from streams.detect.topology import DetectorTopology
from streams.runtime.runner import RuntimeOptions
from streams.runtime.testing import InjectedFailure, TopologyDriver, sample_record
from streams.testing.topologies import detector_driver, gate_driver
from tests.unit.detect_support import T0
from tests.unit.gate_stories import Story, Writer, grant

REPO = Path(__file__).resolve().parents[2]
POLICY = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", "max_photos_per_hour: 3")
)
"""acme-vision may receive 3 photos an hour: the 4th within an hour is a bulk export."""


def feed_decisions(driver: TopologyDriver[DetectorTopology], first: int, count: int) -> None:
    """Write ``count`` ALLOWed training reads for acme-vision, a second apart, one per owner."""
    for n in range(first, first + count):
        record = sample_record(
            driver.codec,
            topics.TOPIC_DECISIONS,
            decision_id=f"d-{n}",
            subject_event_id=f"e-{n}",
            subject_kind="TRAINING_READ",
            owner_id=f"u-{n}",
            photo_id=f"p-{n}",
            actor="job-1",
            purpose="ML_TRAINING",
            verdict="ALLOW",
            reason="CONSENTED",
            occurred_at=T0 + n * 1000,
        )
        driver.feed(topics.TOPIC_DECISIONS, f"u-{n}", record)


def kinds(driver: TopologyDriver[Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the (kind, alert id) of every committed alert and the kind of every control."""
    alerts = [(a["kind"], a["alert_id"]) for a in driver.outputs(topics.TOPIC_ALERTS)]
    return alerts, [c["kind"] for c in driver.outputs(topics.TOPIC_CONTROLS)]


def bulk_count(driver: TopologyDriver[DetectorTopology]) -> int:
    """Return the decisions counted in acme-vision's bulk-export state (committed changelog)."""
    key = b"b:acme-vision"
    values = [
        value
        for partition in range(driver.partitions)
        for k, value in driver.changelog(partition)
        if k == key
    ]
    state = json.loads(values[-1] or b"{}")["state"]
    return sum(n for _, n in state["minutes"])


@pytest.mark.parametrize("loopback", [True, False])
def test_a_bulk_export_crossing_raises_one_alert_and_one_suspension(loopback: bool) -> None:
    driver = detector_driver(POLICY, options=RuntimeOptions(local_loopback=loopback))
    feed_decisions(driver, 0, 10)
    driver.run()
    alerts, controls = kinds(driver)
    assert {alert_id for kind, alert_id in alerts if kind == "BULK_EXPORT"} != set()
    assert len({alert_id for _, alert_id in alerts}) == 1
    assert alerts[0][0] == "BULK_EXPORT"
    assert driver.outputs(topics.TOPIC_ALERTS)[0]["observed"] == 4
    assert controls == ["SUSPEND_RECIPIENT"]
    assert driver.records(topics.TOPIC_CONTROLS)[0].key == b"acme-vision"
    by_recipient, by_actor = driver.topology.by_recipient, driver.topology.by_actor
    # re-keyed copies cross the broker only when their partition is not processed here
    forwarded = 0 if loopback else 10
    assert len(driver.records(by_recipient)) == len(driver.records(by_actor)) == forwarded
    assert bulk_count(driver) == 10


@pytest.mark.parametrize(("loopback", "turns"), [(False, 4), (True, 1)])
def test_stage_two_failure_is_redone_without_counting_twice(loopback: bool, turns: int) -> None:
    reference = detector_driver(POLICY, options=RuntimeOptions(local_loopback=loopback))
    feed_decisions(reference, 0, 10)
    reference.run()

    options = RuntimeOptions(batch_max_events=4, local_loopback=loopback)
    driver = detector_driver(POLICY, options=options)
    feed_decisions(driver, 0, 10)
    # over the broker, stage 1 has forwarded and stage 2 is under way; looped back, each input
    # goes through both stages in its own transaction, and the second transaction fails
    driver.run(max_turns=turns)
    driver.fail(after=2)
    with pytest.raises(InjectedFailure):
        driver.run()
    driver.run()
    assert driver.aborts == 1
    assert kinds(driver) == kinds(reference)
    assert bulk_count(driver) == 10


def test_replayed_forwarded_copies_are_skipped() -> None:
    driver = detector_driver(POLICY)
    feed_decisions(driver, 0, 10)
    driver.run()
    before = kinds(driver)
    changelog = [len(driver.changelog(p)) for p in range(driver.partitions)]
    for record in driver.records(driver.topology.by_recipient):  # the same copies again
        driver.feed(record.topic, record.key, record.value, partition=record.partition)
    driver.run()
    assert kinds(driver) == before
    assert bulk_count(driver) == 10
    assert [len(driver.changelog(p)) for p in range(driver.partitions)] == changelog


def test_a_restarted_detector_counts_on_from_its_changelog() -> None:
    first = detector_driver(POLICY)
    feed_decisions(first, 0, 3)
    first.run()
    assert kinds(first) == ([], [])
    first.close()
    second = detector_driver(POLICY, restore_from=first)
    feed_decisions(second, 3, 1)
    second.run()
    alerts, controls = kinds(second)
    assert [kind for kind, _ in alerts] == ["BULK_EXPORT"]
    assert controls == ["SUSPEND_RECIPIENT"]


def test_an_undecodable_decision_is_dead_lettered() -> None:
    driver = detector_driver(POLICY)
    driver.feed(topics.TOPIC_DECISIONS, "u-1", b"\x00\x00\x00\x00\x63junk")
    driver.run()
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert letter["source_topic"] == topics.TOPIC_DECISIONS
    assert driver.records(driver.topology.by_recipient) == []


def test_the_gate_holds_a_recipient_the_detector_suspends() -> None:
    gate = gate_driver(POLICY, partitions=2)
    detector = detector_driver(POLICY, partitions=2, codec=gate.codec, clock=gate.clock)
    writer = Writer(gate)
    now = gate.clock()
    training = Story("read", "ALLOW", "CONSENTED", training=True, consents=[grant()])
    for n in range(5):
        writer.story(training, now + n)
    gate.run()
    for record in gate.records(topics.TOPIC_DECISIONS):
        detector.feed(record.topic, record.key, record.value, partition=record.partition)
    detector.run()
    for record in detector.records(topics.TOPIC_CONTROLS):
        gate.control(topics.TOPIC_CONTROLS, record.key, record.value)
    writer.story(training, now + 10)
    gate.run()
    verdicts = [d["verdict"] for d in gate.outputs(topics.TOPIC_DECISIONS)]
    assert sorted(verdicts) == ["ALLOW"] * 5 + ["HOLD"]
    assert [kind for kind, _ in kinds(detector)[0]] == ["BULK_EXPORT"]
