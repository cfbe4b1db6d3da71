"""The gate believes no producer (CONTRACT §3), tried as an attacker would, on the real broker.

Each attack of the trust issue is written here against a gate running the example policy (the
contract's time bounds: 60 s of skew, 300 s of lateness) and must be refused, dead-lettered or
decided as the contract says, with the gate still deciding what comes after.
"""

from __future__ import annotations

import time
import uuid

import pytest

from streams import topics
from streams.core.egress import (
    DECISION_HASH_HEADER,
    DECISION_ID_HEADER,
    MemoryLedger,
    egress_check,
)
from streams.core.partitioning import partition_for
from tests.integration.harness import EXAMPLE_POLICY, GateEnv, content_hash

pytestmark = pytest.mark.integration

MINUTE = 60_000
DAY = 86_400_000


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _upload(env: GateEnv, owner: str, photo: str, at: int) -> None:
    env.producer.photo_uploaded(
        photo_id=photo,
        owner_id=owner,
        content_sha256=content_hash(photo),
        media_type="image/jpeg",
        size_bytes=1000,
        occurred_at=at,
    )


def _consent(env: GateEnv, owner: str, at: int, *, granted: bool) -> str:
    return env.producer.consent_changed(
        user_id=owner,
        purpose="ML_TRAINING",
        granted=granted,
        notice_version="2026-01",
        categories=["IMAGE"],
        occurred_at=at,
    )


def _read(env: GateEnv, owner: str, photo: str, at: int, *, event_id: str | None = None) -> str:
    return env.producer.training_read(
        job_id="job-x",
        model_id="model-x",
        org="acme-vision",
        photo_id=photo,
        owner_id=owner,
        categories=["IMAGE"],
        occurred_at=at,
        event_id=event_id,
    )


def test_a_backdated_read_cannot_slip_past_a_withdrawal(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo = f"u-{_tag()}", f"p-{_tag()}"
    _upload(env, owner, photo, now - 4 * MINUTE)
    _consent(env, owner, now - 3 * MINUTE, granted=True)
    _consent(env, owner, now - 1 * MINUTE, granted=False)
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        # the withdrawal is processed first: the gate's stream time is now past it
        env.read_exactly(topics.TOPIC_DECISIONS, 0, timeout_s=3)
        time.sleep(2)
        two_days_back = _read(env, owner, photo, now - 2 * DAY)
        within_bounds = _read(env, owner, photo, now - 2 * MINUTE)  # between grant and withdrawal
        env.producer.flush()
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        dead = env.read_exactly(topics.TOPIC_DLQ, 1)
        assert env.assert_approved() == []
    assert [(d["subject_event_id"], d["verdict"], d["reason"]) for d in decisions] == [
        (within_bounds, "DENY", "CONSENT_REVOKED")
    ]
    assert [(d["source_topic"], d["error_kind"]) for d in dead] == [
        (topics.TOPIC_TRAINING_READS, "INVALID_TIME")
    ]
    assert two_days_back not in {d["subject_event_id"] for d in decisions}


def test_a_future_dated_event_is_refused(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo = f"u-{_tag()}", f"p-{_tag()}"
    _upload(env, owner, photo, now)
    _consent(env, owner, now + 10 * MINUTE, granted=True)  # 10 minutes ahead: skew > 60 s
    _read(env, owner, photo, now + 5)
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        dead = env.read_exactly(topics.TOPIC_DLQ, 1)
        assert env.assert_approved() == []
    assert [d["error_kind"] for d in dead] == ["INVALID_TIME"]
    assert [(d["verdict"], d["reason"]) for d in decisions] == [("DENY", "NO_CONSENT")]


def test_misrouted_and_unkeyed_withdrawals_are_dead_lettered_not_lost(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo = f"u-{_tag()}", f"p-{_tag()}"
    home = partition_for(owner.encode(), env.partitions)
    wrong = (home + 1) % env.partitions
    withdrawal = {
        "event_id": f"w-{_tag()}",
        "occurred_at": now - 10_000,
        "source": "attacker",
        "user_id": owner,
        "purpose": "ML_TRAINING",
        "recipient_org": None,
        "categories": ["IMAGE"],
        "granted": False,
        "notice_version": "2026-01",
        "expires_at": None,
    }
    value = env.codec.encode(env.topic(topics.TOPIC_CONSENT_CHANGES), withdrawal)
    env.produce_raw(topics.TOPIC_CONSENT_CHANGES, owner.encode(), value, partition=wrong)
    env.produce_raw(topics.TOPIC_CONSENT_CHANGES, None, value, partition=home)
    env.produce_raw(topics.TOPIC_CONSENT_CHANGES, b"someone-else", value, partition=home)
    _upload(env, owner, photo, now - 20_000)
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        dead = env.read_exactly(topics.TOPIC_DLQ, 3)
        time.sleep(1)
        after = _read(env, owner, photo, now)
        env.producer.flush()
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert env.assert_approved() == []
    assert sorted(d["error_kind"] for d in dead) == ["MISROUTED"] * 3
    assert all(d["source_topic"] == topics.TOPIC_CONSENT_CHANGES for d in dead)
    assert [(d["subject_event_id"], d["reason"]) for d in decisions] == [(after, "NO_CONSENT")]


def test_a_reused_event_id_is_refused_and_an_exact_duplicate_decided_once(
    gate_env: GateEnv,
) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo, other = f"u-{_tag()}", f"p-{_tag()}", f"p-{_tag()}"
    _upload(env, owner, photo, now - 30_000)
    _upload(env, owner, other, now - 30_000)
    _consent(env, owner, now - 20_000, granted=True)
    event_id = f"e-{_tag()}"
    _read(env, owner, photo, now - 10_000, event_id=event_id)
    _read(env, owner, photo, now - 10_000, event_id=event_id)  # exact duplicate
    _read(env, owner, other, now - 5_000, event_id=event_id)  # same id, other content
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        dead = env.read_exactly(topics.TOPIC_DLQ, 1)
        assert env.assert_approved() == []  # training reads: nothing to approve
    assert [(d["subject_event_id"], d["photo_id"], d["verdict"]) for d in decisions] == [
        (event_id, photo, "ALLOW")
    ]
    assert [d["error_kind"] for d in dead] == ["DUPLICATE_EVENT_ID"]


def test_an_oversize_input_is_dead_lettered_cut_and_the_gate_goes_on(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo = f"u-{_tag()}", f"p-{_tag()}"
    huge = "x" * 900_000
    _read(env, owner, huge, now - 1000)
    _upload(env, owner, photo, now - 30_000)
    _consent(env, owner, now - 20_000, granted=True)
    after = _read(env, owner, photo, now)
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        dead = env.read_exactly(topics.TOPIC_DLQ, 1)
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert env.assert_approved() == []  # training reads: nothing to approve
    assert [d["error_kind"] for d in dead] == ["INPUT_TOO_LARGE"]
    assert len(dead[0]["value"]) <= 64 * 1024 and "cut from" in dead[0]["error"]
    assert [(d["subject_event_id"], d["verdict"]) for d in decisions] == [(after, "ALLOW")]


def test_approved_shares_carry_the_decision_that_egress_can_check(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    owner, photo = f"u-{_tag()}", f"p-{_tag()}"
    _upload(env, owner, photo, now - 30_000)
    env.producer.consent_changed(
        user_id=owner,
        purpose="PARTNER_SHARING",
        granted=True,
        notice_version="2026-01",
        categories=["IMAGE"],
        occurred_at=now - 20_000,
    )
    share = env.producer.share_requested(
        photo_id=photo,
        owner_id=owner,
        requester="share-svc",
        recipient_org="lovebird-partners",
        purpose="PARTNER_SHARING",
        categories=["IMAGE"],
        occurred_at=now,
    )
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        approved = env.read_messages(topics.TOPIC_SHARE_APPROVED, 1)
        assert [a["event_id"] for a in env.assert_approved()] == [share]
    decision = decisions[0]
    assert decision["verdict"] == "ALLOW", decision["explanation"]
    headers = approved[0].headers()
    assert dict(headers)[DECISION_ID_HEADER].decode() == decision["decision_id"]
    assert dict(headers)[DECISION_HASH_HEADER].decode() == decision["hash"]
    share = env.codec.decode(env.prefix + topics.TOPIC_SHARE_APPROVED, approved[0].value())
    assert decision["share_id"] == share["share_id"]
    ledger = MemoryLedger()
    assert egress_check(headers, decision, share, ledger=ledger)
    assert not egress_check(headers, decision, share, ledger=ledger)  # once only
    forged = [
        (DECISION_ID_HEADER, decision["decision_id"].encode()),
        (DECISION_HASH_HEADER, b"0" * 64),
    ]
    assert not egress_check(forged, decision, share, ledger=MemoryLedger())


def _on_other_partition(owner: str, partitions: int) -> str:
    home = partition_for(owner.encode(), partitions)
    for i in range(10_000):
        candidate = f"attacker-{_tag()}-{i}"
        if partition_for(candidate.encode(), partitions) != home:
            return candidate
    raise AssertionError("no user on another partition")


def test_a_photo_belongs_to_its_first_uploader_whatever_the_partitions(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    victim, photo = f"u-{_tag()}", f"p-{_tag()}"
    attacker = _on_other_partition(victim, env.partitions)
    _upload(env, victim, photo, now - 60_000)
    env.producer.flush()
    with env.gate_thread(policy=EXAMPLE_POLICY):
        time.sleep(2)  # the victim's claim reaches the photo index first
        # the attacker uploads the victim's photo id on his own partition, consents, reads it
        _upload(env, attacker, photo, now - 30_000)
        _consent(env, attacker, now - 20_000, granted=True)
        stolen = _read(env, attacker, photo, now - 10_000)
        # and names the victim's photo without uploading it (another id, the same content)
        copy = f"p-{_tag()}"
        env.producer.photo_uploaded(
            photo_id=copy,
            owner_id=attacker,
            content_sha256=content_hash(photo),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=now - 9_000,
        )
        copied = _read(env, attacker, copy, now - 5_000)
        env.producer.flush()
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 2)
        assert env.assert_approved() == []  # training reads: nothing to approve
    by_event = {d["subject_event_id"]: (d["verdict"], d["reason"]) for d in decisions}
    assert by_event == {
        stolen: ("DENY", "OWNER_MISMATCH"),
        copied: ("DENY", "OWNER_MISMATCH"),
    }
