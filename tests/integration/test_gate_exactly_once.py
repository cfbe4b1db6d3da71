"""Exactly once under SIGKILL and under rebalancing, observed with read_committed consumers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from streams import topics
from streams.report.audit_verify import verify_partitions
from tests.integration.harness import PROFILES, GateEnv, content_hash, profile_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 200
REQUESTS = int(os.environ.get("CONSENTINEL_CRASH_REQUESTS", "3000"))
"""Requests in the crash test (``make soak`` runs it 20 times with 20,000)."""
RATE = int(os.environ.get("CONSENTINEL_CRASH_RATE", "400"))
"""Requests per second the crash test sends."""


def seed_users(env: GateEnv, now: int) -> None:
    """Uploads for every user; consent for even-numbered users only."""
    for u in range(USERS):
        env.producer.photo_uploaded(
            photo_id=f"p{u}",
            owner_id=f"u{u}",
            content_sha256=content_hash(f"p{u}"),
            media_type="image/jpeg",
            size_bytes=1,
            occurred_at=now - 60_000,
        )
        if u % 2 == 0:
            env.producer.consent_changed(
                user_id=f"u{u}",
                purpose="ML_TRAINING",
                granted=True,
                notice_version="n1",
                categories=["IMAGE"],
                occurred_at=now - 50_000,
            )
    env.producer.flush()


def produce_load(
    env: GateEnv,
    now: int,
    start: int,
    stop: int,
    per_second: int,
    between: Any = None,
    flush_timeout_s: float = 30,
) -> list[str]:
    """Share requests at a steady rate; call ``between(i)`` after each one.

    ``flush_timeout_s``: how long the last records may wait for the cluster to take them.
    """
    ids = []
    began = time.monotonic()
    for i in range(start, stop):
        u = i % USERS
        ids.append(
            env.producer.share_requested(
                photo_id=f"p{u}",
                owner_id=f"u{u}",
                requester="svc",
                recipient_org="acme-vision",
                purpose="ML_TRAINING",
                categories=["IMAGE"],
                occurred_at=now + i,
            )
        )
        if between is not None:
            between(i)
        ahead = (i - start + 1) / per_second - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)
    env.producer.flush(flush_timeout_s)
    return ids


def assert_exactly_once(env: GateEnv, request_ids: list[str]) -> None:
    decisions = env.read_exactly(topics.TOPIC_DECISIONS, len(request_ids), timeout_s=180)
    counts = Counter(d["subject_event_id"] for d in decisions)
    missing = set(request_ids) - set(counts)
    duplicated = {k: v for k, v in counts.items() if v > 1}
    assert not missing, f"{len(missing)} requests have no decision"
    assert not duplicated, f"{len(duplicated)} requests have several decisions"
    assert set(counts) == set(request_ids)
    # the same decisions as an uncrashed run: even users consented, odd ones did not
    wrong = [
        (d["owner_id"], d["verdict"], d["reason"])
        for d in decisions
        if (d["verdict"], d["reason"])
        != (("ALLOW", "CONSENTED") if int(d["owner_id"][1:]) % 2 == 0 else ("DENY", "NO_CONSENT"))
    ]
    assert not wrong, f"{len(wrong)} decisions differ from an uncrashed run, e.g. {wrong[:5]}"
    allowed = {d["subject_event_id"] for d in decisions if d["verdict"] == "ALLOW"}
    assert allowed, "the load must include allowed shares"
    approved = env.assert_approved(timeout_s=180)
    approved_counts = Counter(a["event_id"] for a in approved)
    assert set(approved_counts) == allowed and max(approved_counts.values()) == 1
    reports = verify_partitions(env.settings)
    assert all(r.intact for r in reports), [str(r.first_break) for r in reports if not r.intact]
    assert sum(r.decisions for r in reports) == len(request_ids)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(60)


@pytest.mark.parametrize("gate_profile", PROFILES, ids=profile_id)
def test_sigkill_mid_stream_loses_and_duplicates_nothing(gate_env: GateEnv) -> None:
    """Two SIGKILLs under load: the decisions are those of an uncrashed run, each exactly once.

    With the tests' replay settings and with production's (wall clock, the policy's time bounds,
    transactions open across loop turns when the gate is killed).
    """
    now = int(time.time() * 1000)
    seed_users(gate_env, now)
    gates = [gate_env.gate_process("crash")]
    kills = {REQUESTS // 3, 2 * REQUESTS // 3}
    committed = [0]

    def chaos(i: int) -> None:
        if i in kills:
            # each gate is killed once it has committed work of its own (it restored its
            # predecessor's state): not while it is still starting
            committed[0] = gate_env.wait_for_progress(beyond=committed[0])
            stop(gates[-1], signal.SIGKILL)  # no chance to commit or abort anything
        if i - 300 in kills:
            gates.append(gate_env.gate_process("crash"))

    try:
        ids = produce_load(gate_env, now, 0, REQUESTS, per_second=RATE, between=chaos)
        assert_exactly_once(gate_env, ids)
    finally:
        for gate in gates:
            stop(gate)
    assert [g.returncode for g in gates[:2]] == [-signal.SIGKILL, -signal.SIGKILL]


def test_two_gates_split_partitions_and_survive_a_rebalance(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    seed_users(gate_env, now)
    first, second = gate_env.gate_process("g1"), gate_env.gate_process("g2")
    try:
        for instance in ("g1", "g2"):  # both own partitions before the load starts
            wait_for_log(gate_env, instance, "restored")
        ids = produce_load(gate_env, now, 0, REQUESTS // 2, per_second=400)
        stop(second)  # a clean leave: its partitions move to the first gate
        ids += produce_load(gate_env, now, REQUESTS // 2, REQUESTS, per_second=400)
        assert_exactly_once(gate_env, ids)
    finally:
        stop(first)
        stop(second)
    assert second.returncode == 0, "a gate stops cleanly on SIGTERM"


def wait_for_log(env: GateEnv, instance: str, text: str, timeout_s: float = 60) -> None:
    log = env.work_dir / f"gate-{instance}.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"gate {instance} never logged {text!r}")
