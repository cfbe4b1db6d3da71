"""The detector topology against the real broker: one alert per episode, suspension, crash safety.

Decisions are produced straight onto a scratch ``governance.decisions`` (no gate needed), the
detector runs as a separate process (``python -m streams.detect.app``), and what it writes to
``governance.alerts`` and ``governance.controls`` is read back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.admin.topics import apply_topics, load_topic_specs
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource, register_all
from streams.serde.testing import SAMPLE_RECORDS
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings
from tests.support import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_795_000_000_000
LIMIT = 20


@dataclass
class DetectorEnv:
    settings: Settings
    codec: AvroCodec
    policy: Path
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    def start(self) -> None:
        log = open(self.policy.parent / "detector.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.detect.app", "--policy", str(self.policy)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the detector exited; see detector.log"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the detector did not become ready within 90 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def produce_decisions(
        self, start: int, count: int, verdict: str = "ALLOW", *, at: int | None = None
    ) -> None:
        """Write decisions ``start..start+count``, decided at ``at`` (default: T0 + i s)."""
        producer = Producer(self.settings.kafka_config())
        name = self.topic(topics.TOPIC_DECISIONS)
        for i in range(start, start + count):
            owner = f"u-{i}"
            record = {
                **SAMPLE_RECORDS["Decision"],
                "decision_id": f"d-{i}",
                "subject_event_id": f"e-{i}",
                "subject_kind": "TRAINING_READ",
                "owner_id": owner,
                "photo_id": f"p-{i}",
                "actor": "job-7",
                "recipient_org": "acme-vision",
                "purpose": "ML_TRAINING",
                "verdict": verdict,
                "reason": "CONSENTED" if verdict == "ALLOW" else "NO_CONSENT",
                "occurred_at": T0 + i * 1000 if at is None else at,
                "decided_at": T0 + i * 1000 if at is None else at,  # the detectors' clock
            }
            producer.produce(name, self.codec.encode(name, record), owner.encode())
        assert producer.flush(30) == 0

    def read(self, contract_topic: str, *, settle_s: float = 0.0) -> list[dict[str, Any]]:
        """Read a topic to its current end, read_committed (the runtime's read-to-end)."""
        time.sleep(settle_s)
        name = self.topic(contract_topic)
        consumer = Consumer(
            {
                **self.settings.kafka_config(),
                **READER_CONFIG,
                "group.id": f"reader-{time.monotonic_ns()}",
            }
        )
        try:
            metadata = consumer.list_topics(name, timeout=10).topics[name]
            parts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in metadata.partitions]
            out: list[dict[str, Any]] = []
            read_to_end(
                consumer,
                parts,
                lambda messages: out.extend(self.codec.decode(name, m.value()) for m in messages),
                timeout_s=20,
                what=name,
            )
            return out
        finally:
            consumer.close()

    def wait_caught_up(self, timeout: float = 120) -> None:
        """Wait until the detector's committed offsets reach the end of ``governance.decisions``.

        The decisions here are written without transactions, so the end is the high watermark;
        a committed offset there means every decision's effects (alerts, controls) are committed
        too (one transaction holds both).
        """
        name = self.topic(topics.TOPIC_DECISIONS)
        group = self.settings.topic_prefix + topics.DETECTOR_APP
        consumer = Consumer({**self.settings.kafka_config(), "group.id": group})
        try:
            metadata = consumer.list_topics(name, timeout=10).topics[name]
            parts = [TopicPartition(name, p) for p in metadata.partitions]
            deadline = time.monotonic() + timeout
            while True:
                ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
                committed = [tp.offset for tp in consumer.committed(parts, timeout=10)]
                behind = [
                    (tp.partition, c, e)
                    for tp, c, e in zip(parts, committed, ends, strict=True)
                    if e > 0 and c < e
                ]
                if not behind:
                    return
                assert time.monotonic() < deadline, f"detector not caught up: {behind}"
                time.sleep(0.5)
        finally:
            consumer.close()

    def wait_for(
        self, contract_topic: str, count: int, timeout: float = 60
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records = self.read(contract_topic)
            if len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(1)


@pytest.fixture
def detector(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path
) -> Iterator[DetectorEnv]:
    prefix = f"det-{unique}."
    scoped = load_settings(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        SCHEMA_REGISTRY_URL=settings.schema_registry_url,
        CONSENTINEL_TOPIC_PREFIX=prefix,
    )
    wanted = {
        topics.TOPIC_DECISIONS,
        topics.TOPIC_TRAINING_READS,
        topics.TOPIC_RECALLS,
        topics.TOPIC_RECALL_ACKS,
        topics.TOPIC_ALERTS,
        topics.TOPIC_CONTROLS,
        topics.TOPIC_DLQ,
    }
    specs = [s for s in load_topic_specs(prefix=prefix) if s.name[len(prefix) :] in wanted]
    apply_topics(admin, specs)
    catalog = prefixed_catalog(scoped)
    register_all(scoped.schema_registry_url, catalog, topics=[prefix + t for t in sorted(wanted)])
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (REPO / "deploy" / "policy.example.yaml")
        .read_text()
        .replace("max_photos_per_hour: 5000", f"max_photos_per_hour: {LIMIT}")
    )
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": scoped.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": scoped.schema_registry_url,
        "CONSENTINEL_TOPIC_PREFIX": prefix,
        "CONSENTINEL_STATE_DIR": str(tmp_path / "state"),
        "CONSENTINEL_INSTANCE_ID": unique,
        "METRICS_PORT": str(port),
    }
    codec = AvroCodec(RegistrySchemaSource(scoped.schema_registry_url), catalog)
    env_ = DetectorEnv(scoped, codec, policy, env, port)
    try:
        yield env_
    finally:
        env_.stop()
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if names:
            for future in admin.delete_topics(names).values():
                future.result()
        base = scoped.schema_registry_url
        for subject in httpx.get(base + "/subjects").json():
            if subject.startswith(prefix):
                httpx.delete(f"{base}/subjects/{subject}")
                httpx.delete(f"{base}/subjects/{subject}", params={"permanent": "true"})


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
