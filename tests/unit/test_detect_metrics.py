"""The detector's metrics: bounded series exist at 0 from the start; alerts observe latency."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from streams import topics
from streams.core.policy import parse_policy
from streams.detect import metrics
from streams.detect.state import BULK, StateCodec
from streams.detect.steps import DetectorSteps
from streams.serde.testing import SAMPLE_RECORDS, InMemorySchemaSource
from streams.serde.wire import AvroCodec
from tests.unit.detect_support import T0

REPO = Path(__file__).resolve().parents[2]
POLICY = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", "max_photos_per_hour: 2")
)


def sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def test_bounded_series_exist_before_their_first_event() -> None:
    DetectorSteps(POLICY, AvroCodec(InMemorySchemaSource()))
    for kind, severity in metrics.RAISED:
        labels = {"kind": kind, "severity": severity}
        assert sample("consentinel_detector_alerts_total", labels) is not None
    for kind in metrics.DEAD_LETTER_KINDS:
        labels = {"kind": kind, "topic": topics.TOPIC_DECISIONS}
        assert sample("consentinel_detector_dead_letters_total", labels) is not None
    for kind, subject_kind in metrics.EPISODES:
        labels = {"kind": kind, "subject_kind": subject_kind}
        assert sample("consentinel_detector_episode_active", labels) is not None
    for org in ("acme-vision", "lovebird-partners"):  # the recipients with a bulk_export limit
        assert sample("consentinel_detector_suspensions_total", {"recipient": org}) is not None
    assert sample("consentinel_detector_suspensions_total", {"recipient": "photo-cdn"}) is None


def test_a_new_alert_observes_the_time_since_the_gate_decided() -> None:
    runtime = DetectorSteps(POLICY, AvroCodec(InMemorySchemaSource()))
    codec = StateCodec(runtime.detectors)
    before = sample("consentinel_detector_alert_latency_seconds_count") or 0.0
    slow_before = (sample("consentinel_detector_alert_latency_seconds_count") or 0.0) - (
        sample("consentinel_detector_alert_latency_seconds_bucket", {"le": "2.0"}) or 0.0
    )
    decided = int(time.time() * 1000) - 3_000  # the gate decided 3 s ago
    bulk: dict[str, Any] | None = None
    alerts: list[Any] = []
    for n in range(4):  # limit 2: the third allowed read crosses
        record: dict[str, Any] = {
            **SAMPLE_RECORDS["Decision"],
            "decision_id": f"lat-{n}",
            "subject_event_id": f"lat-e{n}",
            "subject_kind": "TRAINING_READ",
            "actor": "job-lat",
            "purpose": "ML_TRAINING",
            "verdict": "ALLOW",
            "reason": "CONSENTED",
            "occurred_at": T0 + n * 1000,
            "decided_at": decided,
        }
        value = runtime.codec.encode(topics.TOPIC_DECISIONS, record)
        forwards, dead = runtime.route_decision(b"u", value, 0, n)
        assert dead is None
        side, _, forwarded = forwards[0]
        assert side == "recipient" and forwarded["d"] == decided
        forwarded = json.loads(json.dumps(forwarded))  # what the internal topic carries
        applied = runtime.on_recipient(forwarded, codec.load(BULK, bulk), None)
        bulk = json.loads(json.dumps(codec.dump(applied.values["bulk"])))  # what the store holds
        alerts += [o for o in applied.outputs if o.topic == topics.TOPIC_ALERTS]
    assert [a.record["kind"] for a in alerts] == ["BULK_EXPORT"]
    after = sample("consentinel_detector_alert_latency_seconds_count") or 0.0
    assert after - before >= 1
    slow_after = after - (
        sample("consentinel_detector_alert_latency_seconds_bucket", {"le": "2.0"}) or 0.0
    )
    assert slow_after - slow_before >= 1  # observed about 3 s, not 0


def test_a_recipient_the_policy_does_not_name_gets_no_gauge_series() -> None:
    runtime = DetectorSteps(POLICY, AvroCodec(InMemorySchemaSource()))
    codec = StateCodec(runtime.detectors)
    states: dict[str, Any] = {}
    for n, org in enumerate(["rogue-vendor-1", "rogue-vendor-2", "acme-vision"]):
        record = {
            **SAMPLE_RECORDS["Decision"],
            "decision_id": f"unreg-{n}",
            "subject_event_id": f"unreg-e{n}",
            "recipient_org": org,
            "verdict": "ALLOW",
            "occurred_at": T0 + n * 1000,
        }
        value = runtime.codec.encode(topics.TOPIC_DECISIONS, record)
        forwards, dead = runtime.route_decision(b"u", value, 0, n)
        assert dead is None
        _, subject, forwarded = forwards[0]
        applied = runtime.on_recipient(forwarded, codec.load(BULK, states.get(subject)), None)
        states[subject] = codec.dump(applied.values["bulk"])
    gauge = "consentinel_detector_recipient_photos_last_hour"
    assert sample(gauge, {"recipient": "acme-vision"}) is not None  # a policy recipient has one
    for org in ("rogue-vendor-1", "rogue-vendor-2", metrics.UNREGISTERED_RECIPIENT):
        assert sample(gauge, {"recipient": org}) is None, org
    assert set(runtime._recipient_gauges) == {"acme-vision"}  # memory bounded by the policy
