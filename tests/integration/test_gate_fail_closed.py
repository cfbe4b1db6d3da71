"""HOLD and fail closed, checked where it matters: on ``photo.share.approved`` (CONTRACT §3).

The real gate on the real broker, each time with a consented share to ``acme-vision`` that
would be ``ALLOW`` and a consented share to ``lovebird-partners`` that is (so the approved topic
is shown to be written at all):

- a ``SUSPEND_RECIPIENT`` control for acme-vision: its share is ``HOLD``/``RECIPIENT_SUSPENDED``;
- an unreadable control (garbage bytes keyed by acme-vision): the same, and a dead letter;
- an error raised inside the gate's evaluation of one share: ``DENY``/``UNKNOWN``.

In every case ``photo.share.approved`` holds exactly the other share, once, with its decision's
headers, and nothing of the held or failed one.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

import streams.core.evaluate
from streams import topics
from streams.gate.processor import GateProcessor
from tests.integration.harness import GateEnv, content_hash
from tests.support import wait_until

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def _shares(env: GateEnv, now: int) -> tuple[str, str]:
    """A user who consented to both purposes; return (acme-vision share, lovebird share)."""
    tag = uuid.uuid4().hex[:8]
    owner, photo = f"u-{tag}", f"p-{tag}"
    p = env.producer
    p.photo_uploaded(
        photo_id=photo,
        owner_id=owner,
        content_sha256=content_hash(photo),
        media_type="image/jpeg",
        size_bytes=1000,
        occurred_at=now - 3 * HOUR,
    )
    for purpose in ("ML_TRAINING", "PARTNER_SHARING"):
        p.consent_changed(
            user_id=owner,
            purpose=purpose,
            granted=True,
            notice_version="2026-01",
            categories=["IMAGE"],
            occurred_at=now - 2 * HOUR,
        )
    to_acme = p.share_requested(
        photo_id=photo,
        owner_id=owner,
        requester="share-svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
        occurred_at=now - HOUR,
    )
    to_lovebird = p.share_requested(
        photo_id=photo,
        owner_id=owner,
        requester="share-svc",
        recipient_org="lovebird-partners",
        purpose="PARTNER_SHARING",
        categories=["IMAGE"],
        occurred_at=now - HOUR + 1,
    )
    p.flush()
    return to_acme, to_lovebird


def _outcome(env: GateEnv) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Run a gate over the backlog: (verdict and reason by request, approved event ids)."""
    with env.gate_thread():
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 2)
        approved = env.assert_approved()
    verdicts = {d["subject_event_id"]: (d["verdict"], d["reason"]) for d in decisions}
    return verdicts, [a["event_id"] for a in approved]


def _control(kind: str, at: int) -> dict[str, Any]:
    return {
        "control_id": f"c-{uuid.uuid4().hex[:8]}",
        "at": at,
        "kind": kind,
        "recipient_org": "acme-vision",
        "reason": "test",
        "actor": "it",
    }


def test_a_suspended_recipients_share_is_held_and_never_approved(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    p = env.producer
    p.produce(
        p.topic(topics.TOPIC_CONTROLS), "acme-vision", _control("SUSPEND_RECIPIENT", now - HOUR)
    )
    held, shipped = _shares(env, now)
    verdicts, approved = _outcome(env)
    assert verdicts == {
        held: ("HOLD", "RECIPIENT_SUSPENDED"),
        shipped: ("ALLOW", "CONSENTED"),
    }
    assert approved == [shipped]


def test_an_unreadable_control_holds_its_recipients_share_never_approved(
    gate_env: GateEnv,
) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    env.produce_raw(topics.TOPIC_CONTROLS, b"acme-vision", b"garbage, not a control", partition=0)
    held, shipped = _shares(env, now)
    verdicts, approved = _outcome(env)
    assert verdicts == {
        held: ("HOLD", "RECIPIENT_SUSPENDED"),
        shipped: ("ALLOW", "CONSENTED"),
    }
    assert approved == [shipped]
    (dead,) = env.read_exactly(topics.TOPIC_DLQ, 1)
    assert (dead["source_topic"], dead["key"]) == (topics.TOPIC_CONTROLS, b"acme-vision")


def test_an_error_inside_the_gate_denies_that_share_and_approves_nothing_of_it(
    gate_env: GateEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    failed, shipped = _shares(env, now)
    evaluate = streams.core.evaluate.evaluate
    calls: list[str] = []

    def failing(request: Any, **kwargs: Any) -> Any:
        calls.append(request.event_id)
        if request.event_id == failed:
            raise KeyError("injected: the gate's evaluation fails for this one request")
        return evaluate(request, **kwargs)

    # the gate runs in this process: its evaluation of `failed` raises, as a bug would
    monkeypatch.setattr(streams.core.evaluate, "evaluate", failing)
    verdicts, approved = _outcome(env)
    assert failed in calls, "the injected error was never reached"
    assert verdicts == {
        failed: ("DENY", "UNKNOWN"),
        shipped: ("ALLOW", "CONSENTED"),
    }
    assert approved == [shipped]


def test_an_error_in_the_processor_aborts_its_batch_and_a_restart_decides_each_once(
    gate_env: GateEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside evaluation an error stops the gate: its open transaction, ALLOWs and all, aborts."""
    env = gate_env
    now = int(time.time() * 1000)
    # both wait for their photo's index verdict and are decided together, `other` first
    other, failed = _shares(env, now)
    request = GateProcessor._request
    calls: list[str] = []

    def failing(self: GateProcessor, access: Any, *args: Any) -> Any:
        calls.append(access.event_id)
        if access.event_id == failed:
            raise KeyError("injected: the gate's processor fails on this request")
        return request(self, access, *args)

    monkeypatch.setattr(GateProcessor, "_request", failing)
    with (
        pytest.raises(AssertionError, match="the gate failed: KeyError"),
        env.gate_thread("broken"),
    ):
        wait_until(
            lambda: not any(t.name == "gate-broken" for t in threading.enumerate()),
            120,
            "the gate to stop on the error",
        )
    assert calls == [other, failed], "other is decided, then the error, in one transaction"
    assert env.read_to_end(topics.TOPIC_DECISIONS) == []
    # `other`'s ALLOW was in the aborted transaction: neither its decision nor its share is out
    assert env.assert_approved(settle=False) == []

    monkeypatch.setattr(GateProcessor, "_request", request)  # the bug is fixed: restart
    with env.gate_thread("fixed"):
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 2)
        approved = env.assert_approved()
    verdicts = {d["subject_event_id"]: (d["verdict"], d["reason"]) for d in decisions}
    assert verdicts == {other: ("ALLOW", "CONSENTED"), failed: ("ALLOW", "CONSENTED")}
    assert sorted(a["event_id"] for a in approved) == sorted([failed, other])
