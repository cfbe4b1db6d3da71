"""Detector state stays bounded when requests name recipients the policy does not know."""

from __future__ import annotations

from pathlib import Path

from streams import topics
from streams.core.policy import parse_policy
from streams.detect.topology import DetectorTopology
from streams.runtime.testing import TopologyDriver, sample_record
from streams.testing.topologies import detector_driver
from tests.unit.detect_support import T0

REPO = Path(__file__).resolve().parents[2]
POLICY = parse_policy((REPO / "deploy" / "policy.example.yaml").read_text())


def deny_unknown(driver: TopologyDriver[DetectorTopology], first: int, count: int) -> None:
    """Write ``count`` RECIPIENT_UNKNOWN denials, each to a recipient invented for it."""
    for n in range(first, first + count):
        record = sample_record(
            driver.codec,
            topics.TOPIC_DECISIONS,
            decision_id=f"d-{n}",
            subject_event_id=f"e-{n}",
            subject_kind="SHARE",
            owner_id=f"u-{n}",
            photo_id=f"p-{n}",
            actor="prober",
            recipient_org=f"invented-{n}",
            purpose="PARTNER_SHARING",
            verdict="DENY",
            reason="RECIPIENT_UNKNOWN",
            occurred_at=T0 + n * 100,
            decided_at=T0 + n * 100,
        )
        driver.feed(topics.TOPIC_DECISIONS, f"u-{n}", record)


def stored_keys(driver: TopologyDriver[DetectorTopology]) -> set[bytes]:
    """Return the keys the detector's committed changelog holds a value for (all partitions)."""
    latest: dict[bytes, bytes | None] = {}
    for partition in range(driver.partitions):
        for key, value in driver.changelog(partition):
            latest[key] = value
    return {key for key, value in latest.items() if value is not None}


def test_denials_to_invented_recipients_keep_the_state_bounded() -> None:
    driver = detector_driver(POLICY)
    deny_unknown(driver, 0, 300)
    driver.run()
    after_300 = stored_keys(driver)
    deny_unknown(driver, 300, 300)
    driver.run()
    after_600 = stored_keys(driver)
    # the requester's burst state and one bucket for every unregistered recipient
    assert len(after_300) <= 3, sorted(after_300)
    assert after_600 == after_300
    assert not any(key.startswith(b"b:invented") for key in after_600)
    # the probing is still seen: by requester, and on the unregistered recipients as one subject
    subjects = {a["subject"] for a in driver.outputs(topics.TOPIC_ALERTS)}
    assert {"prober", "*unregistered*"} <= subjects


def test_an_allowed_export_to_a_recipient_the_policy_lacks_is_still_counted() -> None:
    """A detector whose policy lags the gate's still counts what left (it keeps that state)."""
    driver = detector_driver(POLICY)
    record = sample_record(
        driver.codec,
        topics.TOPIC_DECISIONS,
        decision_id="d-new",
        subject_event_id="e-new",
        subject_kind="TRAINING_READ",
        recipient_org="newly-added",
        verdict="ALLOW",
        reason="CONSENTED",
        occurred_at=T0,
        decided_at=T0,
    )
    driver.feed(topics.TOPIC_DECISIONS, "u-1", record)
    driver.run()
    assert b"b:newly-added" in stored_keys(driver)
