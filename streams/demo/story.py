"""The demo's first act and its driver: a handful of users, one request per rule, decided live."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from streams import topics
from streams.demo.bulk_export import bulk_export_story
from streams.demo.detector import DetectorProcess
from streams.demo.recall import recall_story
from streams.demo.script import (
    BULK_USERS,
    BURST_MINUTES,
    DEMO_RECALL_DAYS,
    DEMO_TIME_BOUNDS,
    HOUR,
    VENDOR,
    demo_policy,
)
from streams.demo.tail import Tail
from streams.errors import ConsentinelError
from streams.gate.app import build_runner
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings
from streams.stack.keys import ensure_key_pair


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
    signing_key = settings.signing_key_path
    if signing_key is None:
        signing_key, verify_key = ensure_key_pair(settings.stack_home)
        print(
            f"== the gate signs its chain heads with the local stack's key {signing_key}"
            f" (auditors: CONSENTINEL_VERIFY_KEY={verify_key} consentinel audit verify)"
        )
    detector = DetectorProcess(settings, policy_path, tag)
    runner = build_runner(
        settings.model_copy(update={"decision_clock": "stream", "signing_key_path": signing_key}),
        policy_path,
    )
    thread = threading.Thread(target=runner.run, name="gate", daemon=True)
    alerts = Tail(settings, topics.TOPIC_ALERTS)  # from now on: this run's alerts
    recalls = Tail(settings, topics.TOPIC_RECALLS)  # and this run's recall orders
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
        stopped = ready and bulk_export_story(settings, policy_path, runner, alerts, tag)
        recalled = stopped and recall_story(settings, recalls, alerts, tag)
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
