"""The detector's agent steps without faust: routing, dead letters, dedup, outputs, metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams import topics
from streams.core.policy import load_policy, parse_policy
from streams.detect.state import BULK, JOB, RECIPIENT_BURST, REQUESTER_BURST, StateCodec
from streams.detect.steps import DetectorSteps, Output
from streams.serde.testing import SAMPLE_RECORDS, InMemorySchemaSource
from streams.serde.wire import AvroCodec
from tests.unit.detect_support import T0

REPO = Path(__file__).resolve().parents[2]
POLICY = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", "max_photos_per_hour: 3")
)
PREFIX = "rt."


@pytest.fixture
def runtime() -> DetectorSteps:
    return DetectorSteps(POLICY, AvroCodec(InMemorySchemaSource()), topic_prefix="")


def decision_bytes(codec: AvroCodec, n: int, **fields: Any) -> bytes:
    record = {
        **SAMPLE_RECORDS["Decision"],
        "decision_id": f"d-{n}",
        "subject_event_id": f"e-{n}",
        "owner_id": f"u-{n}",
        "photo_id": f"p-{n}",
        "occurred_at": T0 + n * 1000,
        "subject_kind": "TRAINING_READ",
        "actor": "job-1",
        "purpose": "ML_TRAINING",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        **fields,
    }
    return codec.encode(topics.TOPIC_DECISIONS, record)


def roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))  # what a JSON table stores


class Tables:
    """Tables of stored (JSON) values, driven the way the detector topology drives its state."""

    def __init__(self, runtime: DetectorSteps) -> None:
        self.rt = runtime
        self.codec = StateCodec(runtime.detectors)
        self.bulk: dict[str, Any] = {}
        self.rburst: dict[str, Any] = {}
        self.aburst: dict[str, Any] = {}
        self.jobs: dict[str, Any] = {}
        self.models: dict[str, Any] = {}
        self.outputs: list[Output] = []

    def feed(self, key: bytes | None, value: bytes, partition: int, offset: int) -> Output | None:
        forwards, dead = self.rt.route_decision(key, value, partition, offset)
        for side, subject, forwarded in forwards:
            self.deliver(side, subject, roundtrip(forwarded))
        return dead

    def load(self, prefix: str, stored: Any) -> Any:
        return self.codec.load(prefix, None if stored is None else roundtrip(stored))

    def deliver(self, side: str, subject: str, forwarded: dict[str, Any]) -> None:
        if side == "recipient":
            applied = self.rt.on_recipient(
                forwarded,
                self.load(BULK, self.bulk.get(subject)),
                self.load(RECIPIENT_BURST, self.rburst.get(subject)),
            )
            if not applied.duplicate:
                self._put(self.bulk, subject, applied.values["bulk"])
                self._put(self.rburst, subject, applied.values["burst"])
        else:
            applied = self.rt.on_actor(
                forwarded,
                self.load(REQUESTER_BURST, self.aburst.get(subject)),
                self.load(JOB, self.jobs.get(subject)),
                self.models.get(subject),
            )
            if not applied.duplicate:
                self._put(self.aburst, subject, applied.values["burst"])
                self._put(self.jobs, subject, applied.values["job"])
                self._put(self.models, subject, applied.values["job_model"])
        self.outputs.extend(applied.outputs)

    def _put(self, table: dict[str, Any], key: str, value: Any) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = roundtrip(self.codec.dump(value))


def test_bulk_export_raises_one_alert_and_a_suspension(runtime: DetectorSteps) -> None:
    tables = Tables(runtime)
    before = REGISTRY.get_sample_value(
        "consentinel_detector_suspensions_total", {"recipient": "acme-vision"}
    )
    for n in range(10):
        tables.feed(b"u", decision_bytes(runtime.codec, n), partition=n % 2, offset=n // 2)
    alerts = [o for o in tables.outputs if o.topic == topics.TOPIC_ALERTS]
    controls = [o for o in tables.outputs if o.topic == topics.TOPIC_CONTROLS]
    assert [a.record["kind"] for a in alerts] == ["BULK_EXPORT"]
    assert alerts[0].key == "acme-vision" and alerts[0].record["observed"] == 4
    assert [c.record["kind"] for c in controls] == ["SUSPEND_RECIPIENT"]
    assert controls[0].key == "acme-vision"
    after = REGISTRY.get_sample_value(
        "consentinel_detector_suspensions_total", {"recipient": "acme-vision"}
    )
    assert (after or 0) - (before or 0) == 1
    gauge = REGISTRY.get_sample_value(
        "consentinel_detector_recipient_photos_last_hour", {"recipient": "acme-vision"}
    )
    assert gauge == 10
    # every output encodes with the contract schemas, under the prefix
    topic, key, value = runtime.encode(alerts[0])
    assert topic == topics.TOPIC_ALERTS and key == b"acme-vision" and value[0] == 0


def test_replayed_decisions_are_not_counted_twice(runtime: DetectorSteps) -> None:
    tables = Tables(runtime)
    values = [decision_bytes(runtime.codec, n) for n in range(3)]
    for offset, value in enumerate(values):
        tables.feed(b"u", value, 0, offset)
    for offset, value in enumerate(values):  # a crash: the same offsets again
        tables.feed(b"u", value, 0, offset)
    assert tables.outputs == []
    state = tables.bulk["acme-vision"]["state"]
    assert sum(n for _, n in state["minutes"]) == 3
    tables.feed(b"u", decision_bytes(runtime.codec, 3), 0, 3)
    assert [o.record["kind"] for o in tables.outputs] == ["BULK_EXPORT", "SUSPEND_RECIPIENT"]


def test_undecodable_values_become_dead_letters(runtime: DetectorSteps) -> None:
    tables = Tables(runtime)
    dead = tables.feed(b"u-1", b"not avro", partition=3, offset=42)
    assert dead is not None and dead.topic == topics.TOPIC_DLQ
    assert dead.record["error_kind"] == "UNDECODABLE_BYTES"
    assert (dead.record["partition"], dead.record["offset"]) == (3, 42)
    assert dead.record["value"] == b"not avro" and dead.key == "u-1"
    again = tables.feed(b"u-1", b"not avro", partition=3, offset=42)
    assert again is not None and again.record["dead_letter_id"] == dead.record["dead_letter_id"]
    runtime.encode(dead)  # fits the DeadLetter schema


def test_probe_and_unconsented_training_on_the_actor_side(runtime: DetectorSteps) -> None:
    tables = Tables(runtime)
    read = runtime.codec.encode(
        topics.TOPIC_TRAINING_READS,
        {**SAMPLE_RECORDS["TrainingRead"], "job_id": "job-9", "model_id": "face-v9"},
    )
    forwards, _ = runtime.route_read(b"u", read, 0, 0)
    for side, subject, forwarded in forwards:
        tables.deliver(side, subject, roundtrip(forwarded))
    assert tables.models == {"job-9": "face-v9"}
    for n in range(3):
        value = decision_bytes(runtime.codec, n, actor="job-9", verdict="DENY", reason="NO_CONSENT")
        tables.feed(b"u", value, 1, n)
    kinds = [o.record["kind"] for o in tables.outputs]
    assert kinds == ["UNCONSENTED_TRAINING"]
    assert "face-v9" in tables.outputs[0].record["summary"]
    for n in range(60):
        value = decision_bytes(
            runtime.codec,
            100 + n,
            subject_kind="SHARE",
            actor="prober",
            recipient_org="lovebird-partners",
            purpose="PARTNER_SHARING",
            verdict="DENY",
            reason="NO_CONSENT",
            occurred_at=T0 + n * 100,
        )
        tables.feed(b"u", value, 2, n)
    bursts = sorted(o.key for o in tables.outputs if o.record["kind"] == "DENIED_BURST")
    assert bursts == ["lovebird-partners", "prober"]


def test_prefixed_topics(tmp_path: Path) -> None:
    from streams.serde.catalog import TOPIC_RECORDS, default_catalog

    catalog = default_catalog().with_topics({PREFIX + t: r for t, r in TOPIC_RECORDS.items()})
    runtime = DetectorSteps(
        load_policy(REPO / "deploy" / "policy.example.yaml"),
        AvroCodec(InMemorySchemaSource(), catalog),
        topic_prefix=PREFIX,
    )
    value = runtime.codec.encode(PREFIX + topics.TOPIC_DECISIONS, SAMPLE_RECORDS["Decision"])
    forwards, dead = runtime.route_decision(b"u", value, 0, 0)
    assert dead is None and {side for side, _, _ in forwards} == {"recipient", "actor"}
    out = Output(topics.TOPIC_ALERTS, "x", {**SAMPLE_RECORDS["Alert"]})
    assert runtime.encode(out)[0] == PREFIX + topics.TOPIC_ALERTS
