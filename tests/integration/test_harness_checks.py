"""The harness's checks can fail: ``read_exactly`` and ``assert_approved`` catch what they claim.

Every gate test leans on these two, so each is shown to reject a topic that is one record short,
one record long, or whose approved shares do not match the decisions (a share shipped twice, a
forged header, an ALLOW that never shipped).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

from streams import topics
from streams.core.egress import DECISION_HASH_HEADER, DECISION_ID_HEADER
from tests.integration.harness import GateEnv, content_hash

pytestmark = pytest.mark.integration


def _control(n: int) -> dict[str, Any]:
    return {
        "control_id": f"c-{n}",
        "at": int(time.time() * 1000),
        "kind": "RESUME_RECIPIENT",
        "recipient_org": "acme-vision",
        "reason": "test",
        "actor": "it",
    }


def test_read_exactly_fails_on_a_record_too_many_or_too_few(gate_env: GateEnv) -> None:
    env = gate_env
    for n in range(2):
        env.producer.produce(env.topic(topics.TOPIC_CONTROLS), "acme-vision", _control(n))
    env.producer.flush()
    assert len(env.read_exactly(topics.TOPIC_CONTROLS, 2)) == 2
    with pytest.raises(AssertionError, match="2 records, expected exactly 1"):
        env.read_exactly(topics.TOPIC_CONTROLS, 1)
    with pytest.raises(AssertionError, match="2 records, expected exactly 3"):
        env.read_exactly(topics.TOPIC_CONTROLS, 3, timeout_s=3)


def _one_allowed_share(env: GateEnv) -> tuple[str, dict[str, Any]]:
    """Run a gate over one consented share; return its event id and its decision."""
    now = int(time.time() * 1000)
    tag = uuid.uuid4().hex[:8]
    owner, photo = f"u-{tag}", f"p-{tag}"
    p = env.producer
    p.photo_uploaded(
        photo_id=photo,
        owner_id=owner,
        content_sha256=content_hash(photo),
        media_type="image/jpeg",
        size_bytes=1,
        occurred_at=now - 30_000,
    )
    p.consent_changed(
        user_id=owner,
        purpose="ML_TRAINING",
        granted=True,
        notice_version="n",
        categories=["IMAGE"],
        occurred_at=now - 20_000,
    )
    share = p.share_requested(
        photo_id=photo,
        owner_id=owner,
        requester="svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
        occurred_at=now - 10_000,
    )
    p.flush()
    with env.gate_thread():
        (decision,) = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert [a["event_id"] for a in env.assert_approved()] == [share]
    assert decision["verdict"] == "ALLOW", decision["explanation"]
    return share, decision


@pytest.mark.parametrize("tamper", ["shipped twice", "forged hash", "allow never shipped"])
def test_assert_approved_fails_when_approved_does_not_match_the_decisions(
    gate_env: GateEnv, tamper: str
) -> None:
    env = gate_env
    _, decision = _one_allowed_share(env)
    (original,) = env.read_to_end(topics.TOPIC_SHARE_APPROVED, messages=True)
    producer = Producer(env.settings.kafka_config())
    if tamper == "allow never shipped":
        forged = {**decision, "decision_id": str(uuid.uuid4())}
        topic = env.topic(topics.TOPIC_DECISIONS)
        producer.produce(
            topic,
            key=original.key(),
            value=env.codec.encode(topic, forged),
            partition=original.partition(),
        )
        expected = "ALLOW shares never shipped"
    else:
        headers = list(original.headers())
        if tamper == "forged hash":
            headers = [
                (DECISION_ID_HEADER, decision["decision_id"].encode()),
                (DECISION_HASH_HEADER, b"0" * 64),
            ]
        producer.produce(
            env.topic(topics.TOPIC_SHARE_APPROVED),
            key=original.key(),
            value=original.value(),
            headers=headers,
            partition=original.partition(),
        )
        expected = "more than once" if tamper == "shipped twice" else "hash header differs"
    assert producer.flush(30) == 0
    with pytest.raises(AssertionError, match=expected):
        env.assert_approved()
