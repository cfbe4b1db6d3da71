"""Every rule of contract section 3, end to end through the real broker, registry and gate."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from streams import topics
from streams.report.audit_verify import verify_partitions
from tests.integration.harness import PROFILES, GateEnv, content_hash, profile_id
from tests.unit.gate_stories import HOUR, STORIES, Story, grant, twin

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("gate_profile", PROFILES, ids=profile_id),
]
"""Every story runs with the tests' replay settings and with production's (issue #21)."""


def story_time(env: GateEnv, offset_ms: int) -> int:
    """Return a story's offset (in hours, :data:`HOUR`) in the environment's story hours.

    Under production's time bounds an hour of a story is shorter (``GateProfile.story_hour_ms``):
    the events keep their order, and every one is appended within the lateness the gate accepts.
    """
    return offset_ms * env.profile.story_hour_ms // HOUR


def write_story(
    env: GateEnv, story: Story, now: int, *, request_first: bool = True
) -> tuple[str, str]:
    """Produce a story's events; return (owner, request event id).

    The upload and consents are backdated by the story's hours (:func:`story_time`).

    By default the request is written FIRST, its upload and consents after it: a gate reading a
    backlog must still order them by event time (they happened before the request). A gate that
    is already running decides what it has when the request comes (fail closed: the README's live
    race), so tests that write to a live gate pass ``request_first=False``.
    """
    tag = uuid.uuid4().hex[:8]
    owner, photo = f"u-{tag}", f"p-{tag}"
    p = env.producer
    request_at = now
    event_id = ""

    def request() -> str:
        if story.training:
            return p.training_read(
                job_id=f"job-{tag}",
                model_id=f"model-{tag}",
                org=story.recipient,
                photo_id=photo,
                owner_id=owner,
                purpose=story.purpose,
                categories=list(story.categories),
                occurred_at=request_at,
            )
        else:
            return p.share_requested(
                photo_id=photo,
                owner_id=owner,
                requester="share-svc",
                recipient_org=story.recipient,
                purpose=story.purpose,
                categories=list(story.categories),
                occurred_at=request_at,
            )

    if request_first:
        event_id = request()
    if story.upload:
        uploader = twin(owner, env.partitions) if story.uploader else owner
        p.photo_uploaded(
            photo_id=photo,
            owner_id=uploader,
            content_sha256=content_hash(photo),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=now + story_time(env, -5 * HOUR),
        )
    for consent in story.consents:
        consent = dict(consent)
        at = consent.pop("at", -4 * HOUR)
        expires = consent.pop("expires", None)
        p.consent_changed(
            user_id=owner,
            notice_version="2026-01",
            occurred_at=now + story_time(env, at),
            expires_at=None if expires is None else now + story_time(env, expires),
            **consent,
        )
    if not request_first:
        p.flush()
        event_id = request()
    return owner, event_id


def test_every_rule_end_to_end(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    expected = {}
    for story in STORIES:
        _, event_id = write_story(gate_env, story, now)
        expected[event_id] = story
    gate_env.producer.flush()

    gate_started = int(time.time() * 1000)
    with gate_env.gate_thread():
        decisions = gate_env.read_exactly(topics.TOPIC_DECISIONS, len(STORIES))
        approved = gate_env.assert_approved()
    read_back = int(time.time() * 1000)
    # within the profile's time bounds: nothing dead-lettered (INVALID_TIME), all decided
    assert gate_env.read_to_end(topics.TOPIC_DLQ) == []

    by_subject: dict[str, list[dict[str, Any]]] = {}
    for decision in decisions:
        by_subject.setdefault(decision["subject_event_id"], []).append(decision)
    assert set(by_subject) == set(expected), "every request gets a decision, nothing else does"
    for event_id, story in expected.items():
        (decision,) = by_subject[event_id]  # exactly one
        assert (decision["verdict"], decision["reason"]) == (story.verdict, story.reason), (
            story.name
        )
        assert decision["explanation"].endswith(".") and len(decision["explanation"]) > 20
        assert decision["policy_version"] == "2026-11-26.1"
        if gate_env.profile.decision_clock == "stream":
            # the partition's stream time: every request is at `now`, nothing happened later
            assert decision["decided_at"] == now, story.name
        else:  # the gate's clock, while it ran (the events were all written before it started)
            assert gate_started <= decision["decided_at"] <= read_back, story.name
    allowed_shares = {e for e, s in expected.items() if s.verdict == "ALLOW" and not s.training}
    assert sorted(a["event_id"] for a in approved) == sorted(allowed_shares)
    assert all(r.intact for r in verify_partitions(gate_env.settings))


def test_suspended_recipient_is_held_and_resumed(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    p = gate_env.producer
    p.produce(
        p.topic(topics.TOPIC_CONTROLS),
        "acme-vision",
        {
            "control_id": "c-1",
            "at": now,
            "kind": "SUSPEND_RECIPIENT",
            "recipient_org": "acme-vision",
            "reason": "test",
            "actor": "it",
        },
    )
    _, held = write_story(gate_env, Story("held", "", "", consents=[grant()]), now)
    p.flush()
    with gate_env.gate_thread():
        first = gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)
        p.produce(
            p.topic(topics.TOPIC_CONTROLS),
            "acme-vision",
            {
                "control_id": "c-2",
                "at": now + 1,
                "kind": "RESUME_RECIPIENT",
                "recipient_org": "acme-vision",
                "reason": "test",
                "actor": "it",
            },
        )
        p.flush()
        time.sleep(2)  # the gate applies controls before its next batch
        _, resumed = write_story(
            gate_env, Story("resumed", "", "", consents=[grant()]), now + 10, request_first=False
        )
        p.flush()
        both = gate_env.read_exactly(topics.TOPIC_DECISIONS, 2)
        approved = gate_env.assert_approved()
    assert [(d["verdict"], d["reason"]) for d in first] == [("HOLD", "RECIPIENT_SUSPENDED")]
    assert [a["event_id"] for a in approved] == [resumed], "the held share never leaves"
    assert held not in {a["event_id"] for a in approved}
    later = next(d for d in both if d["subject_event_id"] == resumed)
    assert (later["verdict"], later["reason"]) == ("ALLOW", "CONSENTED")


def test_late_withdrawal_raises_retroactive_violation(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    owner, request = write_story(gate_env, Story("ok", "", "", consents=[grant()]), now)
    gate_env.producer.flush()
    with gate_env.gate_thread():
        (decision,) = gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert decision["verdict"] == "ALLOW"
        withdrawal = gate_env.producer.consent_changed(
            user_id=owner,
            purpose="ML_TRAINING",
            granted=False,
            notice_version="2026-01",
            occurred_at=now + story_time(gate_env, -HOUR),
        )
        gate_env.producer.flush()
        (alert,) = gate_env.read_exactly(topics.TOPIC_ALERTS, 1)
        approved = gate_env.assert_approved()
    assert [a["event_id"] for a in approved] == [request]
    assert alert["kind"] == "RETROACTIVE_VIOLATION"
    assert decision["decision_id"] in alert["summary"]
    assert set(alert["sample_event_ids"]) == {request, withdrawal}


def test_audit_verify_reports_a_forged_decision(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    write_story(gate_env, Story("denied", "", ""), now)
    gate_env.producer.flush()
    with gate_env.gate_thread():
        (decision,) = gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert gate_env.assert_approved() == []
    assert all(r.intact for r in verify_partitions(gate_env.settings))

    # Someone with write access appends a forged ALLOW that claims to follow the real decision.
    forged = {**decision, "verdict": "ALLOW", "reason": "CONSENTED", "prev_hash": decision["hash"]}
    forged["decision_id"] = str(uuid.uuid4())
    topic = gate_env.topic(topics.TOPIC_DECISIONS)
    gate_env.produce_raw(
        topics.TOPIC_DECISIONS, decision["owner_id"].encode(), gate_env.codec.encode(topic, forged)
    )
    reports = verify_partitions(gate_env.settings)
    broken = [r for r in reports if not r.intact]
    assert len(broken) == 1 and broken[0].first_break is not None
    assert broken[0].first_break.decision_id == forged["decision_id"]
