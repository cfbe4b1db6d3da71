"""An operator's RESUME_RECIPIENT ends a BULK_EXPORT episode (contract §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams import topics
from streams.core.policy import parse_policy
from streams.detect.topology import DetectorTopology
from streams.runtime.testing import TopologyDriver, sample_record
from streams.testing.topologies import detector_driver
from tests.unit.detect_support import MINUTE, T0

REPO = Path(__file__).resolve().parents[2]
POLICY = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", "max_photos_per_hour: 4")
)
"""acme-vision may receive 4 photos an hour."""

_n = iter(range(1_000_000))


def decide(driver: TopologyDriver[DetectorTopology], at: int, verdict: str = "ALLOW") -> None:
    n = next(_n)
    record = sample_record(
        driver.codec,
        topics.TOPIC_DECISIONS,
        decision_id=f"d-{n}",
        subject_event_id=f"e-{n}",
        subject_kind="TRAINING_READ",
        owner_id="u-1",
        photo_id=f"p-{n}",
        actor="job-1",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        verdict=verdict,
        reason="CONSENTED" if verdict == "ALLOW" else "RECIPIENT_SUSPENDED",
        occurred_at=at,
        decided_at=at,
    )
    driver.feed(topics.TOPIC_DECISIONS, "u-1", record)


def resume(driver: TopologyDriver[DetectorTopology], at: int, control_id: str) -> None:
    record = sample_record(
        driver.codec,
        topics.TOPIC_CONTROLS,
        control_id=control_id,
        at=at,
        kind="RESUME_RECIPIENT",
        recipient_org="acme-vision",
    )
    driver.control(topics.TOPIC_CONTROLS, "acme-vision", record)


def bulk(driver: TopologyDriver[Any]) -> list[tuple[str, int]]:
    """Return (alert id, observed) of each distinct BULK_EXPORT alert, in order."""
    seen: dict[str, int] = {}
    for alert in driver.outputs(topics.TOPIC_ALERTS):
        if alert["kind"] == "BULK_EXPORT":
            seen.setdefault(alert["alert_id"], alert["observed"])
    return list(seen.items())


def suspensions(driver: TopologyDriver[Any]) -> list[str]:
    controls = driver.outputs(topics.TOPIC_CONTROLS)
    return [c["control_id"] for c in controls if c["kind"] == "SUSPEND_RECIPIENT"]


def test_a_resume_above_the_limit_raises_a_new_alert_and_suspension() -> None:
    driver = detector_driver(POLICY)
    for n in range(6):
        decide(driver, T0 + n * 1000)
    driver.run()
    assert [observed for _, observed in bulk(driver)] == [5]
    resume(driver, T0 + 10_000, "resume-1")
    driver.advance(1000)  # the next punctuation
    assert [observed for _, observed in bulk(driver)] == [5, 6]
    assert len(set(suspensions(driver))) == 2
    driver.advance(5000)  # the same resume, read again, applies once
    assert len(bulk(driver)) == 2


def test_a_resume_while_above_half_the_limit_lets_the_next_crossing_alert() -> None:
    """The issue's case: resumed at 3 of 4 (above the re-arm level of 2), then exports again."""
    driver = detector_driver(POLICY)
    for n in range(2):
        decide(driver, T0 + n * 1000)
    for n in range(3):
        decide(driver, T0 + 30 * MINUTE + n * 1000)
    driver.run()
    assert [observed for _, observed in bulk(driver)] == [5]
    decide(driver, T0 + 61 * MINUTE, verdict="HOLD")  # the first two left the hour: 3 remain
    driver.run()
    resume(driver, T0 + 62 * MINUTE, "resume-1")
    driver.advance(1000)
    assert len(bulk(driver)) == 1  # 3 is not above 4: no alert at the resume
    for n in range(2):
        decide(driver, T0 + 63 * MINUTE + n * 1000)
    driver.run()
    assert [observed for _, observed in bulk(driver)] == [5, 5]
    assert len(set(suspensions(driver))) == 2


def test_a_resume_older_than_the_episode_ends_nothing() -> None:
    driver = detector_driver(POLICY)
    resume(driver, T0 - MINUTE, "resume-old")
    for n in range(6):
        decide(driver, T0 + n * 1000)
    driver.run()
    driver.advance(1000)
    assert len(bulk(driver)) == 1
