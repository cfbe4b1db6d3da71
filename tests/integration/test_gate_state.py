"""State restore from the changelog (memory and RocksDB stores), readiness and metrics."""

from __future__ import annotations

import time
import urllib.request

import pytest

from streams import topics
from tests.integration.harness import GateEnv, content_hash
from tests.support import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_new_gate_decides_from_restored_state(gate_env: GateEnv, store: str) -> None:
    now = int(time.time() * 1000)
    p = gate_env.producer
    p.photo_uploaded(
        photo_id="p1",
        owner_id="u1",
        content_sha256=content_hash("p1"),
        media_type="image/jpeg",
        size_bytes=1,
        occurred_at=now - 10_000,
    )
    p.consent_changed(
        user_id="u1",
        purpose="ML_TRAINING",
        granted=True,
        notice_version="n",
        categories=["IMAGE"],
        occurred_at=now - 9_000,
    )
    first = p.share_requested(
        photo_id="p1",
        owner_id="u1",
        requester="svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
        occurred_at=now - 8_000,
    )
    p.flush()
    with gate_env.gate_thread("before", store=store):
        gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)

    # Another instance, with nothing local: all it knows comes from the changelog.
    second = p.share_requested(
        photo_id="p1",
        owner_id="u1",
        requester="svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
        occurred_at=now,
    )
    p.flush()
    with gate_env.gate_thread("after", store=store):
        decisions = gate_env.read_exactly(topics.TOPIC_DECISIONS, 2)
        approved = gate_env.assert_approved()
    assert [a["event_id"] for a in approved] == [first, second]
    by_event = {d["subject_event_id"]: d for d in decisions}
    assert by_event[first]["verdict"] == by_event[second]["verdict"] == "ALLOW"
    assert by_event[second]["reason"] == "CONSENTED"
    # the chain continues across the restart: the second decision links to the first
    assert by_event[second]["prev_hash"] == by_event[first]["hash"]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def test_gate_serves_readiness_and_metrics(gate_env: GateEnv) -> None:
    port = free_port()
    gate = gate_env.gate_process("metrics", metrics_port=port)
    try:
        deadline = time.monotonic() + 60
        while get(f"http://127.0.0.1:{port}/ready")[0] != 200:
            assert gate.poll() is None, "the gate exited"
            assert time.monotonic() < deadline, "the gate never became ready"
            time.sleep(0.3)
        gate_env.producer.share_requested(
            photo_id="nope",
            owner_id="u9",
            requester="svc",
            recipient_org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
        )
        gate_env.producer.flush()
        gate_env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert gate_env.assert_approved() == []
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert (
            'consentinel_gate_decisions_total{reason="UNKNOWN_PHOTO",subject_kind="SHARE",'
            'verdict="DENY"} 1.0'
        ) in body
        assert "consentinel_gate_decision_latency_seconds_bucket" in body
        assert "consentinel_gate_assigned_partitions 4.0" in body
        assert "consentinel_gate_ready 1.0" in body
        assert get(f"http://127.0.0.1:{port}/live")[0] == 200
    finally:
        gate.terminate()
        gate.wait(60)
    assert gate.returncode == 0
