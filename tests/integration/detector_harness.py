"""The detector as a separate process on a scratch prefix, and what it writes.

Shared by the detector's integration tests (single broker) and its fault tests (the three-node
cluster): decisions are produced straight onto a scratch ``governance.decisions`` (no gate
needed), the detector runs as ``python -m streams.detect.app``, and what it writes to
``governance.alerts`` and ``governance.controls`` is read back.
"""

from __future__ import annotations

import contextlib
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

REPO = Path(__file__).resolve().parents[2]
T0 = 1_795_000_000_000
LIMIT = 20
"""acme-vision's ``max_photos_per_hour`` in the scratch policy."""


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
        producer = Producer({**self.settings.kafka_config(), "enable.idempotence": True})
        name = self.topic(topics.TOPIC_DECISIONS)
        for i in range(start, start + count):
            record = self._decision(i, verdict, T0 + i * 1000 if at is None else at)
            producer.produce(name, self.codec.encode(name, record), record["owner_id"].encode())
        assert producer.flush(30) == 0

    @staticmethod
    def _decision(i: int, verdict: str, decided_at: int) -> dict[str, Any]:
        """Decision ``i``: a training read of user ``u-i``'s photo by acme-vision."""
        return {
            **SAMPLE_RECORDS["Decision"],
            "decision_id": f"d-{i}",
            "subject_event_id": f"e-{i}",
            "subject_kind": "TRAINING_READ",
            "owner_id": f"u-{i}",
            "photo_id": f"p-{i}",
            "actor": "job-7",
            "recipient_org": "acme-vision",
            "purpose": "ML_TRAINING",
            "verdict": verdict,
            "reason": "CONSENTED" if verdict == "ALLOW" else "NO_CONSENT",
            "occurred_at": decided_at,
            "decided_at": decided_at,  # the detectors' clock
        }

    def export(self, count: int, *, at: int, every_s: float) -> None:
        """Write ``count`` ALLOWed training reads, one every ``every_s`` (a bulk export in flight).

        Decision ``i`` is decided at ``at + i * every_s`` (event time follows the pace). The
        producer is idempotent, so a broker that dies mid-export neither loses nor repeats one.
        """
        producer = Producer({**self.settings.kafka_config(), "enable.idempotence": True})
        name = self.topic(topics.TOPIC_DECISIONS)
        for i in range(count):
            record = self._decision(i, "ALLOW", at + int(i * every_s * 1000))
            producer.produce(name, self.codec.encode(name, record), record["owner_id"].encode())
            producer.poll(0)
            time.sleep(every_s)
        assert producer.flush(240) == 0, "decisions still unsent 240 s after the export"

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


@contextlib.contextmanager
def detector_env(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path
) -> Iterator[DetectorEnv]:
    """A detector environment on its own topic prefix; its topics and subjects dropped after."""
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
