"""The recall loop on the real broker: the gate issues orders, recipients acknowledge, and the
detector raises ``RECALL_OVERDUE`` for what is not fully acknowledged by ``due_at`` (§3, §5).

A gate (in this process) and a detector (``consentinel detect``, its own process) share one
prefixed environment; acme-vision's ``recall_within_days`` is cut to 0.0002 days (about 17 s).
Three users' accounts are erased, so three orders go to acme-vision, each naming a photo and the
model that read it: one is fully acknowledged (closed, never alerted), one partly (it stays open
and goes overdue), one not at all (overdue). Exactly one alert per overdue order, still one some
seconds later, all read with ``read_committed``; the detector's gauge
``consentinel_detector_recall_orders`` says the same.
"""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams import topics
from streams.core.recall import DAY_MS
from streams.core.times import iso_day
from tests.ack_support import ACK_KEY, OTHER_KEY, with_ack_keys
from tests.integration.harness import POLICY, GateEnv, content_hash
from tests.integration.test_detection_e2e import DetectorProcess
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = 3_600_000
DAYS = 0.0002
VENDOR = "acme-vision"


def short_deadline_policy(tmp: Path) -> Path:
    text = POLICY.read_text()
    assert "recall_within_days: 14" in text, "the example policy's acme-vision deadline changed"
    path = tmp / "policy-recall.yaml"
    text = with_ack_keys(text.replace("recall_within_days: 14", f"recall_within_days: {DAYS}"))
    path.write_text(text)
    return path


def recall_gauge(port: int) -> dict[str, float]:
    """Return ``state -> value`` of the detector's recall gauge for acme-vision."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if not line.startswith("consentinel_detector_recall_orders{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("recipient") == VENDOR:
            found[labels["state"]] = float(line.rsplit(" ", 1)[1])
    return found


def overdue_alerts(env: GateEnv, until: Callable[[list[Any]], bool]) -> list[dict[str, Any]]:
    def enough(records: list[Any]) -> bool:
        return until([a for a in records if a["kind"] == "RECALL_OVERDUE"])

    records = env.read(topics.TOPIC_ALERTS, until=enough, timeout_s=60)
    return [a for a in records if a["kind"] == "RECALL_OVERDUE"]


def test_acknowledged_orders_close_and_unacknowledged_ones_alert_once(
    gate_env: GateEnv, tmp_path: Path
) -> None:
    policy = short_deadline_policy(tmp_path)
    detector = DetectorProcess(gate_env, policy, "recall-loop")
    detector.start()
    tag = uuid.uuid4().hex[:8]
    now = int(time.time() * 1000)
    p = gate_env.producer
    model = f"faceprint-{tag}"
    users = {name: (f"{name}-{tag}", f"{name}-{tag}-p0") for name in ("full", "part", "none")}
    for n, (owner, photo) in enumerate(users.values()):
        p.photo_uploaded(
            photo_id=photo,
            owner_id=owner,
            content_sha256=content_hash(photo),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=now - 3 * HOUR,
        )
        p.consent_changed(
            user_id=owner,
            purpose="ML_TRAINING",
            granted=True,
            categories=["IMAGE"],
            notice_version="2026-11",
            occurred_at=now - 2 * HOUR,
        )
        p.share_requested(
            photo_id=photo,
            owner_id=owner,
            requester="share-svc",
            recipient_org=VENDOR,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=now - HOUR + n,
        )
        p.training_read(
            job_id=f"job-{tag}",
            model_id=model,
            org=VENDOR,
            photo_id=photo,
            owner_id=owner,
            categories=["IMAGE"],
            occurred_at=now - HOUR + 10 + n,
        )
    p.flush()
    try:
        detector.wait_ready()
        with gate_env.gate_thread(policy=policy):
            decisions = gate_env.read_exactly(topics.TOPIC_DECISIONS, 6)
            assert {d["verdict"] for d in decisions} == {"ALLOW"}
            for owner, _ in users.values():
                p.request_erasure(user_id=owner, scope="ACCOUNT", occurred_at=now - HOUR + 100)
            p.flush()
            orders = {o["user_id"]: o for o in gate_env.read_exactly(topics.TOPIC_RECALLS, 3)}
        assert set(orders) == {owner for owner, _ in users.values()}
        for owner, photo in users.values():
            order = orders[owner]
            assert (order["recipient_org"], order["photo_ids"], order["model_ids"]) == (
                VENDOR,
                [photo],
                [model],
            )
            assert order["due_at"] == order["issued_at"] + round(DAYS * DAY_MS)
        full, part, none = (orders[users[name][0]] for name in ("full", "part", "none"))
        assert time.time() * 1000 < full["due_at"] - 5_000, "too slow to acknowledge in time"
        p.acknowledge_recall(
            order_id=full["order_id"],
            recipient_org=VENDOR,
            deleted_photo_ids=full["photo_ids"],
            purged_model_ids=full["model_ids"],
            evidence="s3://acme-vision-dpa/deletions/full.pdf",
            signing_key=ACK_KEY,
        )
        p.acknowledge_recall(  # the photo is deleted, the model not yet purged
            order_id=part["order_id"],
            recipient_org=VENDOR,
            deleted_photo_ids=part["photo_ids"],
            evidence="s3://acme-vision-dpa/deletions/part.pdf",
            signing_key=ACK_KEY,
        )
        # two forged full acks of the last order: signed by another recipient's key, and unsigned
        forged = {
            "order_id": none["order_id"],
            "recipient_org": VENDOR,
            "deleted_photo_ids": none["photo_ids"],
            "purged_model_ids": none["model_ids"],
            "evidence": "forged",
        }
        p.acknowledge_recall(**forged, signing_key=OTHER_KEY)
        unsigned = {**forged, "acknowledged_at": now, "key_id": "", "signature": b""}
        p.produce(p.topic(topics.TOPIC_RECALL_ACKS), VENDOR, unsigned, timestamp_ms=now)
        p.flush()

        # before the deadline: the full acknowledgement closed its order, the partial one did not
        wait_until(
            lambda: recall_gauge(detector.port) == {"open": 2.0, "overdue": 0.0},
            timeout_s=30,
            what="two open orders on the detector's gauge",
        )
        assert time.time() * 1000 < part["due_at"], "the deadline passed before the check"

        deadlines = {iso_day(o["due_at"]) for o in (part, none)}  # one, unless at midnight
        alerts = overdue_alerts(gate_env, until=lambda a: len(a) >= len(deadlines))
        assert len(alerts) == len(deadlines), alerts
        time.sleep(5)  # five more punctuations of the detector: still one alert per group
        alerts = overdue_alerts(gate_env, until=lambda a: len(a) > len(deadlines))
        wait_until(
            lambda: recall_gauge(detector.port) == {"open": 0.0, "overdue": 2.0},
            timeout_s=10,
            what="two overdue orders on the detector's gauge",
        )
    finally:
        detector.stop()
    named = sorted(o for a in alerts for o in a["sample_event_ids"])
    assert len(alerts) == len(deadlines) and named == sorted([part["order_id"], none["order_id"]])
    for alert in alerts:
        assert (alert["subject"], alert["severity"]) == (VENDOR, "CRITICAL")
        assert alert["observed"] == len(alert["sample_event_ids"])  # overdue orders counted
        assert "ERASURE_REQUESTED" in alert["summary"]
        assert alert["raised_at"] >= alert["window_end"] >= alert["window_start"]
    if len(alerts) == 1:
        [alert] = alerts
        dues = sorted([part["due_at"], none["due_at"]])
        assert [alert["window_start"], alert["window_end"]] == dues
        assert "1 of them partly acknowledged" in alert["summary"]
        assert "2 photo(s) and 2 model purge(s)" not in alert["summary"]
        assert "1 photo(s) and 2 model purge(s)" in alert["summary"]
    letters = gate_env.read(
        topics.TOPIC_DLQ,
        until=lambda r: sum(d["error_kind"] == "UNVERIFIED_ACK" for d in r) >= 2,
        timeout_s=60,
    )
    refused = [d for d in letters if d["error_kind"] == "UNVERIFIED_ACK"]
    assert len(refused) == 2 and all(d["source_topic"] == topics.TOPIC_RECALL_ACKS for d in refused)
    assert [d for d in letters if d["source_topic"] == topics.TOPIC_RECALLS] == []
