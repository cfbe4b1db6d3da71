"""Suspend and resume a recipient through ``streams.admin.controls``, then report the decisions."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from streams import topics
from streams.admin.controls import resume_recipient, suspend_recipient
from streams.cli import main
from streams.core.policy import load_policy
from streams.report.frame import decisions_frame, summarize, user_decisions
from streams.report.source import read_decisions
from tests.integration.harness import POLICY, GateEnv, content_hash

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def request(
    env: GateEnv, now: int, *, consent: bool = True, training: bool = False
) -> tuple[str, str]:
    """Write an upload, optionally a consent, and a share (or training read) to acme-vision."""
    tag = uuid.uuid4().hex[:8]
    owner, photo = f"u-{tag}", f"p-{tag}"
    p = env.producer
    p.photo_uploaded(
        photo_id=photo,
        owner_id=owner,
        content_sha256=content_hash(photo),
        media_type="image/jpeg",
        size_bytes=1000,
        occurred_at=now - 2 * HOUR,
    )
    if consent:
        p.consent_changed(
            user_id=owner,
            purpose="ML_TRAINING",
            granted=True,
            notice_version="2026-01",
            categories=["IMAGE"],
            occurred_at=now - HOUR,
        )
    # The upload and consent are acknowledged before the request is written: this test is about
    # suspension and reports, not about a live request racing its own upload (see the README).
    p.flush()
    common: dict[str, Any] = {"photo_id": photo, "owner_id": owner, "occurred_at": now}
    if training:
        event_id = p.training_read(
            job_id=f"job-{tag}", model_id=f"model-{tag}", org="acme-vision", **common
        )
    else:
        event_id = p.share_requested(
            requester="share-svc",
            recipient_org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            **common,
        )
    p.flush()
    return owner, event_id


def test_suspend_hold_resume_allow_then_report(
    gate_env: GateEnv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = load_policy(POLICY)
    topic, suspension = suspend_recipient(
        "acme-vision", "integration test", actor="it", policy=policy, settings=gate_env.settings
    )
    assert topic == gate_env.topic(topics.TOPIC_CONTROLS)
    (written,) = gate_env.read_exactly(topics.TOPIC_CONTROLS, 1)
    assert written == suspension

    now = int(time.time() * 1000)
    held_owner, held = request(gate_env, now)
    with gate_env.gate_thread():
        (first,) = gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert first["subject_event_id"] == held
        assert (first["verdict"], first["reason"]) == ("HOLD", "RECIPIENT_SUSPENDED")

        resume_recipient("acme-vision", actor="it", policy=policy, settings=gate_env.settings)
        time.sleep(2)  # the gate applies controls before its next batch
        _, allowed = request(gate_env, now + 10)
        _, denied = request(gate_env, now + 20, consent=False)
        _, trained = request(gate_env, now + 30, training=True)
        decisions = gate_env.read_exactly(topics.TOPIC_DECISIONS, 4)

    verdicts = {d["subject_event_id"]: (d["verdict"], d["reason"]) for d in decisions}
    assert verdicts == {
        held: ("HOLD", "RECIPIENT_SUSPENDED"),
        allowed: ("ALLOW", "CONSENTED"),
        denied: ("DENY", "NO_CONSENT"),
        trained: ("ALLOW", "CONSENTED"),
    }

    # The report's reader sees exactly the committed decisions; its aggregation counts them.
    log = read_decisions(gate_env.settings)
    assert (log.read, log.unreadable, log.partitions) == (4, [], gate_env.partitions)
    report = summarize(decisions_frame(log.records))
    assert report.decisions == 4
    assert {(r["verdict"], r["reason"]): r["decisions"] for r in report.by_verdict.to_dicts()} == {
        ("HOLD", "RECIPIENT_SUSPENDED"): 1,
        ("ALLOW", "CONSENTED"): 2,
        ("DENY", "NO_CONSENT"): 1,
    }
    (acme,) = report.by_recipient.to_dicts()
    assert acme == {
        "recipient_org": "acme-vision",
        "allowed": 2,
        "denied": 1,
        "held": 1,
        "total": 4,
        "photos_out": 2,
    }
    kinds = {r["subject_kind"]: r["total"] for r in report.by_subject_kind.to_dicts()}
    assert kinds == {"SHARE": 3, "TRAINING_READ": 1}
    assert sum(report.by_day["total"]) == 4

    listing = user_decisions(decisions_frame(log.records), held_owner)
    assert listing["verdict"].to_list() == ["HOLD"]
    assert "suspended" in listing["explanation"].item().lower()

    # The same through the command line, under the environment's topic prefix.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", gate_env.settings.kafka_bootstrap_servers)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", gate_env.settings.schema_registry_url)
    monkeypatch.setenv("CONSENTINEL_TOPIC_PREFIX", gate_env.prefix)
    capsys.readouterr()
    assert main(["report", "decisions", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "HOLD,RECIPIENT_SUSPENDED,1," in out
    assert "acme-vision,2,1,1,4,2" in out
    assert main(["report", "user", held_owner]) == 0
    assert "HOLD RECIPIENT_SUSPENDED" in capsys.readouterr().out
    code = main(["recipients", "suspend", "acme-visoin", "--reason", "x", "--policy", str(POLICY)])
    assert code == 2
    assert "did you mean 'acme-vision'" in capsys.readouterr().err
    monkeypatch.setenv("USER", "dpo")
    assert main(["recipients", "resume", "acme-vision"]) == 0
    captured = capsys.readouterr()
    assert "no policy given" in captured.err
    assert f"RESUME_RECIPIENT acme-vision written to {topic}" in captured.out
    assert '"actor": "operator:dpo"' in captured.out
    controls = gate_env.read_exactly(topics.TOPIC_CONTROLS, 3)
    assert [c["kind"] for c in controls] == [
        "SUSPEND_RECIPIENT",
        "RESUME_RECIPIENT",
        "RESUME_RECIPIENT",
    ]
