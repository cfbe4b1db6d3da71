"""``consentinel demo``: a short scripted story through the real gate, printed as it is decided.

It writes a handful of users' uploads and consents, then requests that exercise each rule, and a
2014-style attempt to hand hundreds of users' photos to an AI vendor for training. The gate runs in
this process; each decision is printed with its explanation as it is committed, then a summary.

The detector (``consentinel detect``, a subprocess started with the gate) then stops a bulk export:
a training job reads thousands of users' photos for acme-vision within minutes of event time,
crossing its ``bulk_export`` limit; the detector raises ``BULK_EXPORT`` and writes
``SUSPEND_RECIPIENT``, the gate holds the job's next reads, and the demo resumes the recipient
(so a rerun starts clean) and stops the detector.

Then the recall loop (CONTRACT §3 "Erasure and recall"): some of the users behind the export ask
for their accounts to be erased (``ErasureRequested`` ``ACCOUNT``); the gate issues one
``RecallOrder`` per user to acme-vision naming the model ``faceprint-2014`` and the photos it
read, with the decisions as evidence; the vendor acknowledges some orders (one only in part), and
the detector raises ``RECALL_OVERDUE`` for every order not fully acknowledged by its ``due_at``.
Each step is checked; the demo fails loudly (exit 1) when one does not happen.

The story is told in simulated time: uploads and consents hours before now, the bulk export spread
over the next ten minutes of event time. So the demo runs the gate and the detector with a copy of
the policy (next to the state directory) that trusts producers' clocks that far (``time:
{max_skew_s, max_lateness_s}``, CONTRACT §3: a replay raises the bounds in its own policy file)
and gives acme-vision a ``recall_within_days`` of 0.0002 (17 s) so that an overdue recall can be
seen; and the gate stamps decisions with stream time (``CONSENTINEL_DECISION_CLOCK=stream``), so
the detector judges the export in the story's own time. The demo prints both changes.

Every run uses fresh ids, so it can be repeated against the same topics. The detector runs under
a name of its own per run (``--app-name consentinel-detector-demo-<run>``, ``--from-now``): it
starts with empty state at the end of its input topics, so an earlier run's export, still
inside the sliding hour, cannot hide this run's crossing, and earlier runs' recall orders are not
raised again; its internal topics and consumer group are deleted when the demo ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.admin.controls import resume_recipient
from streams.core.policy import load_policy
from streams.core.times import iso_moment
from streams.errors import ConsentinelError
from streams.gate.app import build_runner
from streams.gate.topology import GateTopology
from streams.runtime.runner import StreamRunner
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings

HOUR = 3_600_000
MINUTE = 60_000
BULK_USERS = 300
VENDOR = "acme-vision"
BURST_USERS = 2500
BURST_PHOTOS = 4
BURST_CONSENTING = 0.6
"""The share of the burst's users who consented (so about 6,000 of its 10,000 reads are allowed)."""
BURST_MINUTES = 10
DETECTOR_PORT = 9465
MODEL = "faceprint-2014"
"""The model the bulk-export job trains: the recall orders name it."""
DEMO_TIME_BOUNDS = {"max_skew_s": 1800, "max_lateness_s": 6 * 3600}
"""The demo's events are up to 5 h old (uploads) and up to ~15 min ahead (the export's reads)."""
DEMO_RECALL_DAYS = 0.0002
"""acme-vision's recall deadline in the demo: 0.0002 days, about 17 s."""
ERASED_USERS = 12
"""How many of the export's users ask for their accounts to be erased."""
ACKNOWLEDGED = 6
"""How many of those orders acme-vision acknowledges in full (one more only in part)."""


def demo_policy(policy_path: Path, out: Path) -> Path:
    """Write the demo's policy copy to ``out``: replay time bounds, acme-vision's deadline."""
    data = yaml.safe_load(policy_path.read_text())
    data["time"] = dict(DEMO_TIME_BOUNDS)
    vendor = (data.get("recipients") or {}).get(VENDOR)
    if not isinstance(vendor, dict):
        raise RuntimeError(f"the policy {policy_path} has no recipient {VENDOR}: the demo needs it")
    vendor["recall_within_days"] = DEMO_RECALL_DAYS
    data["version"] = f"{data.get('version', 'policy')}+demo"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Written by `consentinel demo` from {policy_path}: replay time bounds and a short\n"
        f"# recall deadline for {VENDOR}. Not for production.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return out


def _story(p: ConsentinelProducer, tag: str, now: int) -> dict[str, str]:
    """Write the scripted events; return request event id -> what the request is."""
    labels: dict[str, str] = {}

    def user(name: str, consents: list[dict[str, Any]]) -> tuple[str, str]:
        owner, photo = f"{name}-{tag}", f"{name}-photo-{tag}"
        p.photo_uploaded(
            photo_id=photo,
            owner_id=owner,
            content_sha256=hashlib.sha256(photo.encode()).hexdigest(),
            media_type="image/jpeg",
            size_bytes=180_000,
            occurred_at=now - 5 * HOUR,
        )
        for c in consents:
            at = c.pop("at", -4 * HOUR)
            p.consent_changed(user_id=owner, notice_version="2026-11", occurred_at=now + at, **c)
        return owner, photo

    def share(
        label: str, owner: str, photo: str, recipient: str, purpose: str, categories: list[str]
    ) -> None:
        event_id = p.share_requested(
            photo_id=photo,
            owner_id=owner,
            requester="matchmaker-svc",
            recipient_org=recipient,
            purpose=purpose,
            categories=categories,
            occurred_at=now,
        )
        labels[event_id] = label

    ml = {"purpose": "ML_TRAINING", "granted": True}
    alice = user("alice", [{**ml, "categories": ["IMAGE"], "recipient_org": "acme-vision"}])
    bob = user("bob", [])
    carol = user(
        "carol",
        [
            {**ml, "categories": ["IMAGE"], "at": -3 * HOUR},
            {**ml, "granted": False, "at": -1 * HOUR},
        ],
    )
    dave = user("dave", [{**ml, "categories": ["IMAGE"]}])
    share(
        "alice's photo to acme-vision for training (she consented)",
        *alice,
        "acme-vision",
        "ML_TRAINING",
        ["IMAGE"],
    )
    share(
        "bob's photo to acme-vision (bob never consented)",
        *bob,
        "acme-vision",
        "ML_TRAINING",
        ["IMAGE"],
    )
    share(
        "carol's photo (she withdrew an hour ago)", *carol, "acme-vision", "ML_TRAINING", ["IMAGE"]
    )
    share(
        "alice's photo to an unregistered recipient", *alice, "shady-ai", "ML_TRAINING", ["IMAGE"]
    )
    share(
        "dave's face geometry (he consented to images, not biometrics)",
        *dave,
        "acme-vision",
        "ML_TRAINING",
        ["IMAGE", "FACE_BIOMETRIC"],
    )
    share(
        "bob's photo shown to matches (service operation)",
        *bob,
        "photo-cdn",
        "SERVICE_OPERATION",
        ["IMAGE"],
    )
    # 2014: a training job reads hundreds of users' photos with age, sex, race and location.
    for i in range(BULK_USERS):
        consents = [{**ml, "categories": ["IMAGE", "FACE_BIOMETRIC", "DEMOGRAPHIC", "LOCATION"]}]
        owner, photo = user(f"member{i:03d}", consents if i % 10 == 0 else [])
        event_id = p.training_read(
            job_id=f"facerec-2014-{tag}",
            model_id="face-id-v1",
            org="acme-vision",
            photo_id=photo,
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE", "FACE_BIOMETRIC", "DEMOGRAPHIC", "LOCATION"],
            occurred_at=now + i,
        )
        labels[event_id] = "2014-style bulk training read"
    p.flush()
    return labels


def _collect(
    settings: Settings,
    wanted: set[str],
    on_decision: Callable[[dict[str, Any]], None],
    timeout_s: float,
) -> list[dict[str, Any]]:
    topic = settings.topic_prefix + topics.TOPIC_DECISIONS
    codec = AvroCodec(RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings))
    consumer = Consumer(
        {
            **settings.kafka_config(),
            "group.id": f"demo-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < len(wanted) and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                decision = codec.decode(topic, message.value())
                if decision["subject_event_id"] in wanted:
                    found.append(decision)
                    on_decision(decision)
    finally:
        consumer.close()
    return found


def run_demo(settings: Settings, *, policy_path: Path) -> int:
    """Run the story; return 0 when every request got its decision and the export was stopped."""
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    print(f"== Consentinel demo (run {tag}) against {settings.kafka_bootstrap_servers}")
    policy_path = demo_policy(policy_path, settings.state_dir.parent / "demo-policy.yaml")
    bounds = DEMO_TIME_BOUNDS
    print(
        f"== the story runs in simulated time (uploads hours ago, a bulk export over the next"
        f" {BURST_MINUTES} minutes of event time), so the demo uses a copy of the policy,"
        f" {policy_path}:\n"
        f"   time: {{max_skew_s: {bounds['max_skew_s']}, max_lateness_s:"
        f" {bounds['max_lateness_s']}}} (replay bounds: the gate would dead-letter such"
        " backdated and future-dated events as INVALID_TIME under the production bounds),\n"
        f"   recall_within_days: {DEMO_RECALL_DAYS} for {VENDOR}"
        f" (~{DEMO_RECALL_DAYS * 86_400:.0f} s, so that an overdue recall shows; its DPA says"
        " weeks);\n"
        "   and the gate stamps decisions with stream time (CONSENTINEL_DECISION_CLOCK=stream),"
        " so the detector judges the export in the story's own time."
    )
    detector = _Detector(settings, policy_path, tag)
    runner = build_runner(settings.model_copy(update={"decision_clock": "stream"}), policy_path)
    thread = threading.Thread(target=runner.run, name="gate", daemon=True)
    alerts = _Tail(settings, topics.TOPIC_ALERTS)  # from now on: this run's alerts
    recalls = _Tail(settings, topics.TOPIC_RECALLS)  # and this run's recall orders
    recalled = False
    try:
        detector.start()
        thread.start()
        print("== the gate is starting: restoring state from its changelog, reading controls...")
        ready = detector.wait_ready()
        with ConsentinelProducer(settings, source="consentinel-demo") as producer:
            labels = _story(producer, tag, now)
        print(f"== wrote {len(labels)} requests; decisions as the gate commits them:\n")
        shown = Counter[str]()

        def show(decision: dict[str, Any]) -> None:
            label = labels[decision["subject_event_id"]]
            shown[label] += 1
            if label.startswith("2014") and shown[label] > 3:
                if shown[label] == 4:
                    print("   ... (the rest of the 2014-style job is summarised below)\n")
                return
            print(
                f" * {label}\n   {decision['verdict']:5} {decision['reason']}: "
                f"{decision['explanation']}\n"
            )

        decisions = _collect(settings, set(labels), show, timeout_s=120)
        _summary(decisions, labels)
        stopped = ready and _bulk_export_story(settings, policy_path, runner, alerts, tag)
        recalled = stopped and _recall_story(settings, recalls, alerts, tag)
    except (RuntimeError, ConsentinelError) as exc:
        print(f"!! {exc}")
        return 1
    finally:
        alerts.close()
        recalls.close()
        detector.stop()
        runner.stop()
        if thread.is_alive():
            thread.join(30)
    if len(decisions) != len(labels):
        print(f"!! only {len(decisions)} of {len(labels)} requests were decided")
    return 0 if len(decisions) == len(labels) and stopped and recalled else 1


def _summary(decisions: list[dict[str, Any]], labels: dict[str, str]) -> None:
    counts = Counter((d["verdict"], d["reason"]) for d in decisions)
    print("== summary: decisions by verdict and reason")
    print(f"   {'verdict':8}{'reason':26}{'count':>6}")
    for (verdict, reason), count in sorted(counts.items()):
        print(f"   {verdict:8}{reason:26}{count:>6}")
    bulk = [d for d in decisions if labels[d["subject_event_id"]].startswith("2014")]
    allowed = sum(d["verdict"] == "ALLOW" for d in bulk)
    print(
        f"\n== the 2014-style job asked for {len(bulk)} users' photos; the gate let "
        f"{allowed} through (the users who consented) and denied {len(bulk) - allowed}."
    )
    print(
        f"== {len(decisions)} of {len(labels)} requests decided; every decision is chained in "
        "governance.decisions (`consentinel audit verify`)."
    )


# ---------------------------------------------------------------------- a bulk export is stopped


class _Tail:
    """Reads the records written to a topic after it was opened (``read_committed``)."""

    def __init__(self, settings: Settings, contract_topic: str) -> None:
        self.topic = settings.topic_prefix + contract_topic
        self.codec = AvroCodec(
            RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings)
        )
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": f"demo-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        meta = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic]
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in meta.partitions])

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float
    ) -> list[dict[str, Any]]:
        """Read until ``done(records read so far)`` or the timeout; return the records."""
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while not done(records) and time.monotonic() < deadline:
            for message in self.consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is None:
                    records.append(self.codec.decode(self.topic, message.value()))
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(f"reading {self.topic}: {error}")
        return records

    def close(self) -> None:
        self.consumer.close()


def _detector_port() -> int:
    """Return 9465 (the detector's usual metrics port) if it is free, else any free port."""
    for port in (DETECTOR_PORT, 0):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("0.0.0.0", port))
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port for the detector's metrics")


class _Detector:
    """``consentinel detect`` in a subprocess, under a name (and so a state) of its own."""

    def __init__(self, settings: Settings, policy_path: Path, tag: str) -> None:
        self.settings = settings
        self.policy_path = policy_path
        self.app_name = f"consentinel-detector-demo-{tag}"
        self.log_path = settings.state_dir.parent / "demo-detector.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = _detector_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
            "CONSENTINEL_TOPIC_PREFIX": self.settings.topic_prefix,
            "METRICS_PORT": str(self.port),
        }
        command = [
            *("consentinel", "detect", "--policy", str(self.policy_path)),
            *("--app-name", self.app_name, "--from-now"),
        ]
        print(
            f"== starting the detector: {' '.join(command)}\n   (metrics and readiness on"
            f" :{self.port}, log in {self.log_path})"
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *command[1:]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 120) -> bool:
        """Wait until its ``/ready`` answers; False (with a message) if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while self.process is not None and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2):
                    return True
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        print(f"!! the detector did not become ready; see {self.log_path}")
        return False

    def stop(self) -> None:
        """Stop it, then delete its consumer group and internal topics (this run's state)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
        app_id = self.settings.topic_prefix + self.app_name
        admin = AdminClient(self.settings.kafka_config())
        names = [
            t
            for t in admin.list_topics(timeout=30).topics
            if t.startswith((app_id + ".", app_id + "-"))
        ]
        for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
            with contextlib.suppress(Exception):  # already gone
                future.result()
        for _ in range(20):  # the group empties once the broker has seen the member leave
            try:
                admin.delete_consumer_groups([app_id], request_timeout=30)[app_id].result()
                break
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    break
                time.sleep(0.5)
        print(f"== the detector stopped; its state ({len(names)} internal topics) was deleted")


def _write_burst(p: ConsentinelProducer, tag: str, start: int) -> tuple[str, list[str], set[str]]:
    """Write the burst; return the job id, the consenting users and the reads' event ids."""
    job = f"bulk-2014-{tag}"
    consenting: list[str] = []
    reads: list[tuple[str, str]] = []
    for i in range(BURST_USERS):
        owner = f"burst{i:04d}-{tag}"
        for k in range(BURST_PHOTOS):
            photo = f"burst{i:04d}-{k}-{tag}"
            p.photo_uploaded(
                photo_id=photo,
                owner_id=owner,
                content_sha256=hashlib.sha256(photo.encode()).hexdigest(),
                media_type="image/jpeg",
                size_bytes=150_000,
                occurred_at=start - 2 * HOUR,
            )
            reads.append((owner, photo))
        if i % 10 < BURST_CONSENTING * 10:
            p.consent_changed(
                user_id=owner,
                purpose="ML_TRAINING",
                granted=True,
                recipient_org=VENDOR,
                categories=["IMAGE"],
                notice_version="2026-11",
                occurred_at=start - HOUR,
            )
            consenting.append(owner)
    # photo k of every user, then photo k+1: the job sweeps the whole user base
    reads.sort(key=lambda r: r[1].rsplit("-", 2)[1])
    step = BURST_MINUTES * MINUTE / len(reads)
    ids = set()
    for n, (owner, photo) in enumerate(reads):
        event_id = p.training_read(
            job_id=job,
            model_id=MODEL,
            org=VENDOR,
            photo_id=photo,
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=start + int(n * step),
        )
        ids.add(event_id)
    p.flush()
    return job, consenting, ids


def _follow_ups(
    p: ConsentinelProducer, job: str, tag: str, owners: list[str], at: int
) -> dict[str, str]:
    """Write the job's next reads (consenting users' photos); return event id -> owner."""
    ids = {}
    for n, owner in enumerate(owners):
        event_id = p.training_read(
            job_id=job,
            model_id=MODEL,
            org=VENDOR,
            photo_id=owner.replace("-", "-0-", 1),
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=at + n,
        )
        ids[event_id] = owner
    p.flush()
    return ids


def _wait_gate(runner: StreamRunner[GateTopology], suspended: bool, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (runner.topology.processor.suspensions.suspension(VENDOR) is not None) == suspended:
            return True
        time.sleep(0.2)
    return False


def _bulk_export_story(
    settings: Settings,
    policy_path: Path,
    runner: StreamRunner[GateTopology],
    alerts: _Tail,
    tag: str,
) -> bool:
    """Let a bulk export cross the limit; return True if the detector and the gate stopped it."""
    limit_spec = load_policy(policy_path).recipients[VENDOR].bulk_export
    limit = f"{limit_spec.max_photos_per_hour:,}" if limit_spec else "no"
    start = int(time.time() * 1000)
    controls = _Tail(settings, topics.TOPIC_CONTROLS)
    decisions = _Tail(settings, topics.TOPIC_DECISIONS)
    try:
        with ConsentinelProducer(settings, source="consentinel-demo") as producer:
            reads = BURST_USERS * BURST_PHOTOS
            print(
                f"== 2014 again, at scale: training job bulk-2014-{tag} reads {reads:,} photos of"
                f" {BURST_USERS:,} users for {VENDOR} within {BURST_MINUTES} minutes (event time"
                f" from {iso_moment(start)}); {VENDOR}'s limit is {limit} photos per hour."
            )
            job, consenting, read_ids = _write_burst(producer, tag, start)

            def ours(alert: dict[str, Any]) -> bool:
                samples = set(alert["sample_event_ids"])
                return alert["kind"] == "BULK_EXPORT" and bool(samples & read_ids)

            def bulk(records: list[dict[str, Any]]) -> bool:
                return any(ours(a) for a in records)

            raised = alerts.until(bulk, timeout_s=120)
            alert = next((a for a in raised if ours(a)), None)
            if alert is None:
                print("!! no BULK_EXPORT alert within 120 s")
                return False
            crossed = (alert["raised_at"] - start) / 1000
            late = (
                ", after the job's last read: the gate judges at its partitions' stream time,"
                " which an earlier run of the demo left ahead"
                if crossed > BURST_MINUTES * 60
                else ""
            )
            print(
                f"\n * the detector's alert ({crossed:.0f} s into the job, event time{late})\n"
                f"   {alert['severity']} {alert['kind']} {alert['subject']}: {alert['summary']}\n"
            )
            suspended = controls.until(lambda r: bool(r), timeout_s=30)
            for control in suspended:
                print(
                    f" * the control it wrote to governance.controls\n"
                    f"   {control['kind']} {control['recipient_org']} by {control['actor']}:"
                    f" {control['reason']}\n"
                )
            latest: dict[str, dict[str, Any]] = {}
            for other in raised + alerts.until(lambda _: False, timeout_s=1):
                if other["kind"] == "UNCONSENTED_TRAINING":  # updated as the count grows
                    latest[other["alert_id"]] = other
            jobs = {job: "the same job", f"facerec-2014-{tag}": "the story's 2014-style job"}
            for other in latest.values():
                if other["subject"] in jobs:
                    print(
                        f" * and, about {jobs[other['subject']]}\n"
                        f"   {other['severity']} {other['kind']}: {other['summary']}\n"
                    )
            if not _wait_gate(runner, suspended=True):
                print("!! the gate did not apply the suspension within 30 s")
                return False
            after = start + (BURST_MINUTES + 1) * MINUTE
            held_ids = _follow_ups(producer, job, tag, consenting[:3], after)
            held = _decisions_for(decisions, held_ids)
            print(" * the job's next reads (users who did consent), as the gate decides them")
            for d in held:
                print(f"   {d['verdict']:5} {d['reason']}: {d['explanation']}")
            topic, _ = resume_recipient(
                VENDOR,
                f"demo run {tag}: checked the alert, resuming so that reruns start clean",
                actor="operator:demo",
                producer=producer,
            )
            print(f"\n== an operator resumes {VENDOR} (RESUME_RECIPIENT to {topic})")
            if not _wait_gate(runner, suspended=False):
                print("!! the gate did not lift the suspension within 30 s")
                return False
            again_ids = _follow_ups(producer, job, tag, consenting[3:4], after + MINUTE)
            for d in _decisions_for(decisions, again_ids):
                print(f"   {d['verdict']:5} {d['reason']}: {d['explanation']}")
        ok = len(held) == 3 and all(d["verdict"] == "HOLD" for d in held)
        print(
            f"\n== the bulk export was stopped: one {alert['kind']} alert, {VENDOR} suspended,"
            f" its next {len(held)} reads held; resumed afterwards."
            if ok
            else "\n!! the follow-up reads were not all held"
        )
        return ok
    finally:
        controls.close()
        decisions.close()


def _decisions_for(tail: _Tail, ids: dict[str, str]) -> list[dict[str, Any]]:
    """Read decisions until every event in ``ids`` has one; return them in ``ids`` order."""

    def done(records: list[dict[str, Any]]) -> bool:
        return set(ids) <= {r["subject_event_id"] for r in records}

    found = {r["subject_event_id"]: r for r in tail.until(done, timeout_s=60)}
    return [found[i] for i in ids if i in found]


# ---------------------------------------------------------------------- erasure and recall


def _recall_story(settings: Settings, recalls: _Tail, alerts: _Tail, tag: str) -> bool:
    """Erase some of the export's users; return True if the recall loop ran as the contract says.

    One order per erased user to acme-vision naming ``faceprint-2014`` and the user's photos;
    fully acknowledged orders close without an alert; the partly acknowledged one and the
    unacknowledged ones each raise exactly one ``RECALL_OVERDUE``; the gate denies the erased
    photos (``ERASED``).
    """
    users = {f"burst{i:04d}-{tag}": i for i in range(ERASED_USERS)}
    photos = {
        user: sorted(f"burst{i:04d}-{k}-{tag}" for k in range(BURST_PHOTOS))
        for user, i in users.items()
    }
    decisions = _Tail(settings, topics.TOPIC_DECISIONS)
    try:
        with ConsentinelProducer(settings, source="consentinel-demo") as producer:
            print(
                f"\n== erasure: {len(users)} of the export's users ask for their accounts to be"
                " erased (ErasureRequested ACCOUNT, reason USER_REQUEST, through the SDK's"
                " request_erasure)"
            )
            for user in users:
                producer.request_erasure(user_id=user, scope="ACCOUNT", reason="USER_REQUEST")
            producer.flush()

            def ours(order: dict[str, Any]) -> bool:
                return order["cause"] == "ERASURE_REQUESTED" and order["user_id"] in users

            def complete(records: list[dict[str, Any]]) -> bool:
                return {o["user_id"] for o in records if ours(o)} >= set(users)

            seen = recalls.until(complete, timeout_s=60)
            orders = sorted((o for o in seen if ours(o)), key=lambda o: users[o["user_id"]])
            if len(orders) != len(users):
                print(f"!! {len(orders)} recall orders for {len(users)} erased users, not one each")
                return False
            wrong = [
                o["order_id"]
                for o in orders
                if o["recipient_org"] != VENDOR
                or o["model_ids"] != [MODEL]
                or o["photo_ids"] != photos[o["user_id"]]
                or len(o["decision_ids"]) < BURST_PHOTOS
            ]
            if wrong:
                print(f"!! recall orders that do not name {MODEL} and the user's photos: {wrong}")
                return False
            first = orders[0]
            others = Counter(o["cause"] for o in seen if not ours(o))
            print(
                f" * the gate issued {len(orders)} recall orders to {VENDOR}, one per erased user,"
                f" each naming the model {MODEL} and the user's {BURST_PHOTOS} photos it read,"
                " with the decisions under which they were read as evidence; e.g.\n"
                f"   order {first['order_id']}: user {first['user_id']},"
                f" photos {', '.join(first['photo_ids'])}, models {', '.join(first['model_ids'])},"
                f" {len(first['decision_ids'])} decisions, issued {iso_moment(first['issued_at'])},"
                f" due {iso_moment(first['due_at'])}"
            )
            if others:
                listed = ", ".join(f"{n} {cause}" for cause, n in sorted(others.items()))
                print(
                    f"   (this run's gate also issued {listed} orders for the training reads it"
                    f" did not allow; under the demo's {DEMO_RECALL_DAYS}-day deadline they go"
                    " overdue too, and the detector alerts on each of them)"
                )

            asked = _ask_for_erased(producer, tag, users)
            for d in _decisions_for(decisions, asked):
                print(
                    " * the job reads an erased user's photo again\n"
                    f"   {d['verdict']:5} {d['reason']}: {d['explanation']}"
                )
                if (d["verdict"], d["reason"]) != ("DENY", "ERASED"):
                    print("!! the gate did not deny the erased photo")
                    return False

            full, partial, silent = (
                orders[:ACKNOWLEDGED],
                orders[ACKNOWLEDGED],
                orders[ACKNOWLEDGED + 1 :],
            )
            for order in full:
                producer.acknowledge_recall(
                    order_id=order["order_id"],
                    recipient_org=VENDOR,
                    deleted_photo_ids=order["photo_ids"],
                    purged_model_ids=order["model_ids"],
                    evidence=f"https://dpa.acme-vision.example/deletions/{order['order_id']}",
                )
            producer.acknowledge_recall(  # the photos are deleted; the model is not retrained yet
                order_id=partial["order_id"],
                recipient_org=VENDOR,
                deleted_photo_ids=partial["photo_ids"],
                evidence=f"https://dpa.acme-vision.example/deletions/{partial['order_id']}",
            )
            producer.flush()
        print(
            f" * {VENDOR} acknowledges {len(full)} orders in full (photos deleted, {MODEL}"
            f" purged) and 1 in part (photos deleted, model not purged); {len(silent)} get no"
            " answer (RecallAcknowledged through the SDK's acknowledge_recall)"
        )
        return _overdue_checked(alerts, full, [partial, *silent], partial)
    finally:
        decisions.close()


def _ask_for_erased(
    producer: ConsentinelProducer, tag: str, users: dict[str, int]
) -> dict[str, str]:
    """Write one more read of the first erased user's photo; return event id -> owner."""
    owner = next(iter(users))
    event_id = producer.training_read(
        job_id=f"bulk-2014-{tag}",
        model_id=MODEL,
        org=VENDOR,
        photo_id=f"burst{users[owner]:04d}-0-{tag}",
        owner_id=owner,
        purpose="ML_TRAINING",
        categories=["IMAGE"],
    )
    producer.flush()
    return {event_id: owner}


def _overdue_checked(
    alerts: _Tail,
    acknowledged: list[dict[str, Any]],
    unacknowledged: list[dict[str, Any]],
    partial: dict[str, Any],
) -> bool:
    """Wait for the ``RECALL_OVERDUE`` alerts; True if exactly the unacknowledged orders got one."""
    expected = {o["order_id"] for o in unacknowledged}
    due = max(o["due_at"] for o in unacknowledged)
    wait_s = max(due / 1000 - time.time(), 0)
    print(
        f"\n== waiting for the deadline ({wait_s:.0f} s) and the detector's RECALL_OVERDUE alerts"
    )

    def overdue(records: list[dict[str, Any]]) -> Counter[str]:
        return Counter(
            a["sample_event_ids"][0]
            for a in records
            if a["kind"] == "RECALL_OVERDUE" and a["sample_event_ids"]
        )

    raised = alerts.until(lambda r: expected <= set(overdue(r)), timeout_s=wait_s + 60)
    raised += alerts.until(lambda _: False, timeout_s=3)  # and nothing more for our orders
    counts = overdue(raised)
    missing = expected - set(counts)
    if missing:
        print(f"!! no RECALL_OVERDUE for {len(missing)} unacknowledged orders: {sorted(missing)}")
        return False
    closed = {o["order_id"] for o in acknowledged} & set(counts)
    if closed:
        print(f"!! RECALL_OVERDUE raised for acknowledged orders: {sorted(closed)}")
        return False
    repeated = sorted(o for o in expected if counts[o] > 1)
    if repeated:
        print(f"!! more than one RECALL_OVERDUE alert for orders {repeated}")
        return False
    by_order = {a["sample_event_ids"][0]: a for a in raised if a["kind"] == "RECALL_OVERDUE"}
    example = by_order[partial["order_id"]]
    print(
        f" * the detector raised one RECALL_OVERDUE per order not fully acknowledged by its"
        f" due_at ({len(expected)}: the partly acknowledged one and the {len(expected) - 1} without"
        f" an answer), none for the {len(acknowledged)} acknowledged ones; e.g.\n"
        f"   {example['severity']} {example['kind']} {example['subject']}: {example['summary']}"
    )
    print(
        "\n== the recall loop ran: erasures -> recall orders naming"
        f" {MODEL} -> acknowledgements -> RECALL_OVERDUE for the rest. The decisions that let the"
        " photos out stay in governance.decisions (`consentinel audit verify` still passes);"
        " `consentinel report recalls` lists the orders."
    )
    return True
