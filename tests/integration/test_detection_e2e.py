"""Detection end to end on the real broker: simulator -> gate -> detector -> controls -> gate.

Everything runs under one ``gate_env`` prefix: the simulator (``run_simulation``, throttled by
``speedup``) produces through the SDK, a real gate decides, the detector runs as a separate process
(``python -m streams.cli detect``) and what it writes is read back.

- an injected ``bulk-2014`` yields exactly one ``BULK_EXPORT`` alert at the ground truth's crossing
  (event time, within 5 s), a ``SUSPEND_RECIPIENT`` control, ``HOLD`` for the vendor's next
  requests, and ``ALLOW`` again after ``recipients resume``;
- a day of background traffic at normal volume yields no alert at all.

A detector restart mid-episode (no second alert, no second control) is covered by
``test_detector_app.py``.
"""

from __future__ import annotations

import contextlib
import json
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

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams import topics
from streams.admin.controls import resume_recipient
from streams.gate.topology import GateTopology
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from streams.runtime.runner import StreamRunner
from streams.simulate.run import run_simulation
from tests.integration.harness import POLICY, REPO, GateEnv, content_hash
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 86_400_000
HOUR = 3_600_000
VENDOR = "acme-vision"
LIMIT = 50
"""acme-vision's ``max_photos_per_hour`` in the bulk-export test (the example policy says 5000)."""
RATE = 0.5
"""Background events per simulated second in the day-long test."""
SPEEDUP = 2400.0
"""Simulated seconds per wall second in the day-long test (a day in 36 s)."""


@dataclass
class DetectorProcess:
    """``consentinel detect`` in its own process, on the environment's prefixed topics."""

    env: GateEnv
    policy: Path
    instance: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def log_path(self) -> Path:
        return self.env.work_dir / f"detector-{self.instance}.log"

    def start(self) -> None:
        self.port = free_port()
        environ = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.env.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.env.settings.schema_registry_url,
            "CONSENTINEL_TOPIC_PREFIX": self.env.prefix,
            "CONSENTINEL_INSTANCE_ID": self.instance,
            "CONSENTINEL_STATE_DIR": str(self.env.work_dir / "state"),
            "METRICS_PORT": str(self.port),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "detect", "--policy", str(self.policy)],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def wait_ready(self, timeout_s: float = 90) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the detector exited; see {self.log_path}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"the detector was not ready within {timeout_s} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def e2e(gate_env: GateEnv) -> Iterator[GateEnv]:
    """The gate environment; afterwards also drops the detector's internal topics."""
    try:
        yield gate_env
    finally:
        names = [
            t
            for t in gate_env.admin.list_topics(timeout=10).topics
            if t.startswith(gate_env.prefix)
        ]
        if names:
            for future in gate_env.admin.delete_topics(names, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()


def _policy(tmp: Path, limit: int | None) -> Path:
    text = POLICY.read_text()
    if limit is not None:
        text = text.replace("max_photos_per_hour: 5000", f"max_photos_per_hour: {limit}")
        assert f"max_photos_per_hour: {limit}" in text
    path = tmp / f"policy-{limit}.yaml"
    path.write_text(text)
    return path


def _bulk_episodes(port: int) -> float:
    """Return the detector's active BULK_EXPORT episodes, from its metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("consentinel_detector_episode_active{") and (
            'kind="BULK_EXPORT"' in line and 'subject_kind="recipient"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _yesterday_noon() -> int:
    return int(time.time() * 1000) // DAY * DAY - DAY + 12 * HOUR


def _alerts(env: GateEnv, kind: str, settle_s: float = 3) -> list[dict[str, Any]]:
    return [
        a
        for a in env.read(topics.TOPIC_ALERTS, until=lambda _: False, timeout_s=settle_s)
        if a["kind"] == kind
    ]


def _decisions_of(env: GateEnv, event_ids: list[str]) -> list[dict[str, Any]]:
    wanted = set(event_ids)

    def complete(records: list[Any]) -> bool:
        return wanted <= {r["subject_event_id"] for r in records}

    records = env.read(topics.TOPIC_DECISIONS, until=complete, timeout_s=60)
    assert complete(records), "the gate did not decide the follow-up requests"
    by_id = {r["subject_event_id"]: r for r in records if r["subject_event_id"] in wanted}
    return [by_id[e] for e in event_ids]


def _vendor_reads(env: GateEnv, tag: str, at_ms: int, count: int) -> list[str]:
    """A consenting user's upload and consent, then ``count`` training reads for the vendor."""
    p = env.producer
    owner = f"after-{tag}"
    photos = [f"after-{tag}-photo-{i}" for i in range(count)]
    for photo in photos:
        p.photo_uploaded(
            photo_id=photo,
            owner_id=owner,
            content_sha256=content_hash(photo),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=at_ms,
        )
    p.consent_changed(
        user_id=owner,
        purpose="ML_TRAINING",
        granted=True,
        recipient_org=VENDOR,
        categories=["IMAGE"],
        notice_version="2026-11",
        occurred_at=at_ms,
    )
    p.flush()  # the gate is live: uploads and consent first (the README's live race, fail closed)
    ids = [
        p.training_read(
            job_id=f"follow-up-{tag}",
            model_id="scene-v3",
            org=VENDOR,
            photo_id=photo,
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=at_ms + 1000 + i,
        )
        for i, photo in enumerate(photos)
    ]
    p.flush()
    return ids


def _detector_done(env: GateEnv, group: str, decisions: int) -> bool:
    """Whether the detector read ``decisions`` decisions and committed past each of them.

    For the decisions topic and the detector's two repartition topics (which hold only what went
    to partitions another process owns: local ones are handed over in the same transaction), every
    committed record, read read_committed to the end, lies before the detector's committed
    offset. Comparing with the high watermark instead would wait forever behind a trailing abort
    marker.
    """
    by_recipient, by_actor, _ = topics.detector_topics(topics.DETECTOR_APP)
    names = [env.topic(topics.TOPIC_DECISIONS), env.topic(by_recipient), env.topic(by_actor)]
    reader = Consumer(
        {**env.settings.kafka_config(), **READER_CONFIG, "group.id": f"{group}-probe"}
    )
    last: dict[tuple[str, int], int] = {}
    read_decisions = 0

    def seen(messages: list[Any]) -> None:
        nonlocal read_decisions
        for message in messages:
            key = (message.topic(), message.partition())
            last[key] = max(last.get(key, -1), message.offset())
            read_decisions += message.topic() == names[0]

    try:
        starts = []
        for name in names:
            meta = reader.list_topics(name, timeout=10).topics[name]
            starts += [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
        read_to_end(reader, starts, seen, timeout_s=60, what="the detector's inputs")
    finally:
        reader.close()
    if read_decisions < decisions:
        return False
    consumer = Consumer({**env.settings.kafka_config(), "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in last], timeout=10)
    finally:
        consumer.close()
    return all(tp.offset > last[(tp.topic, tp.partition)] for tp in committed)


def test_bulk_export_alert_suspends_then_resume_lets_requests_through(
    e2e: GateEnv, tmp_path: Path
) -> None:
    env = e2e
    policy = _policy(tmp_path, LIMIT)
    detector = DetectorProcess(env, policy, "det-a")
    detector.start()
    truth_path = tmp_path / "truth.jsonl"
    start = _yesterday_noon()
    duration_s = 420.0
    runner: StreamRunner[GateTopology]
    with env.gate_thread("ga") as runner:
        try:
            detector.wait_ready()
            report = run_simulation(
                env.settings,
                rate=2.0,
                duration_s=duration_s,
                scenarios=["bulk-2014@30s"],
                seed=3,
                users=400,
                start_ms=start,
                speedup=60,
                policy_path=policy,
                ground_truth_path=truth_path,
                progress=False,
            )
            truth = [json.loads(line) for line in truth_path.read_text().splitlines()]
            [bulk] = [t for t in truth if t["expected_alert"] == "BULK_EXPORT"]
            assert bulk["subject"] == VENDOR and bulk["crossing_ms"] is not None
            assert report.unclaimed_crossings == []

            # exactly one BULK_EXPORT alert, at the crossing, and the recipient suspended
            found = env.read(
                topics.TOPIC_ALERTS,
                until=lambda r: any(a["kind"] == "BULK_EXPORT" for a in r),
                timeout_s=90,
            )
            [alert] = [a for a in found if a["kind"] == "BULK_EXPORT"]
            late_ms = alert["raised_at"] - bulk["crossing_ms"]
            print(f"BULK_EXPORT raised_at - ground-truth crossing = {late_ms} ms (event time)")
            assert abs(late_ms) <= 5_000
            assert alert["subject"] == VENDOR and alert["observed"] > LIMIT
            assert alert["threshold"] == LIMIT and alert["action"] == "RECIPIENT_SUSPENDED"
            controls = env.read(topics.TOPIC_CONTROLS, until=lambda r: len(r) >= 1, timeout_s=30)
            assert [(c["kind"], c["recipient_org"]) for c in controls] == [
                ("SUSPEND_RECIPIENT", VENDOR)
            ]
            suspensions = runner.topology.processor.suspensions
            wait_until(
                lambda: suspensions.suspension(VENDOR) is not None, 30, "the gate to suspend"
            )

            # the vendor's next requests are held
            after = start + int(duration_s * 1000) + 60_000
            held = _decisions_of(env, _vendor_reads(env, "held", after, 3))
            assert {(d["verdict"], d["reason"]) for d in held} == {("HOLD", "RECIPIENT_SUSPENDED")}

            # the vendor's hour drains: a read two hours later (held) moves the detectors' clock
            # past the burst and the episode ends. (A resume while the hour is still above the
            # limit would raise a new alert and suspension, contract §5: unit-tested.)
            drained = after + 2 * HOUR
            later = _decisions_of(env, _vendor_reads(env, "drained", drained, 1))
            assert {(d["verdict"], d["reason"]) for d in later} == {("HOLD", "RECIPIENT_SUSPENDED")}
            wait_until(
                lambda: _bulk_episodes(detector.port) == 0, 60, "the detector to end the episode"
            )

            # an operator resumes the vendor: its requests are decided normally again
            resume_recipient(VENDOR, "checked by the e2e test", producer=env.producer)
            wait_until(lambda: suspensions.suspension(VENDOR) is None, 30, "the gate to resume")
            allowed = _decisions_of(env, _vendor_reads(env, "resumed", drained + 60_000, 3))
            assert {(d["verdict"], d["reason"]) for d in allowed} == {("ALLOW", "CONSENTED")}

            # still one alert and one suspension for the episode
            time.sleep(5)
            alerts = _alerts(env, "BULK_EXPORT")
            assert {a["alert_id"] for a in alerts} == {alert["alert_id"]}
            kinds = [
                c["kind"]
                for c in env.read(topics.TOPIC_CONTROLS, until=lambda _: False, timeout_s=3)
            ]
            assert kinds == ["SUSPEND_RECIPIENT", "RESUME_RECIPIENT"]
        finally:
            detector.stop()


def test_a_day_of_normal_traffic_raises_no_alert(e2e: GateEnv, tmp_path: Path) -> None:
    env = e2e
    policy = _policy(tmp_path, None)
    detector = DetectorProcess(env, policy, "det-b")
    detector.start()
    gate = env.gate_process("gb")
    group = env.prefix + "consentinel-detector"
    try:
        detector.wait_ready()
        began = time.monotonic()
        report = run_simulation(
            env.settings,
            rate=RATE,
            duration_s=86_400.0,
            seed=7,
            users=1500,
            start_ms=_yesterday_noon() - DAY // 2,
            speedup=SPEEDUP,
            policy_path=policy,
            progress=False,
        )
        simulated = time.monotonic() - began
        requests = report.events["share"] + report.events["training_read"]
        assert report.unclaimed_crossings == []
        decisions = env.read(
            topics.TOPIC_DECISIONS, until=lambda r: len(r) >= requests, timeout_s=120
        )
        assert len(decisions) == requests
        wait_until(lambda: _detector_done(env, group, requests), 120, "the detector to catch up")
        print(
            f"{requests} decisions over one simulated day; simulated in {simulated:.0f} s, "
            f"detected by {time.monotonic() - began:.0f} s"
        )
        assert env.read(topics.TOPIC_ALERTS, until=lambda _: False, timeout_s=3) == []
        assert env.read(topics.TOPIC_CONTROLS, until=lambda _: False, timeout_s=3) == []
    finally:
        detector.stop()
        gate.send_signal(signal.SIGTERM)
        try:
            gate.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gate.kill()
