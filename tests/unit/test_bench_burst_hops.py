"""The live burst's per-hop timeline (bench/burst_hops.py): crossing, hops, summary."""

from __future__ import annotations

from typing import Any

from bench.burst_hops import HOPS, Seen, committed_at, crossing, markdown, summarize, timeline

TOPIC = "x.governance.decisions"


def decision(n: int, verdict: str = "ALLOW", org: str = "v", decided_at: int | None = None) -> Seen:
    value = {
        "subject_event_id": f"e{n}",
        "recipient_org": org,
        "verdict": verdict,
        "reason": "CONSENTED" if verdict == "ALLOW" else "RECIPIENT_SUSPENDED",
        "decided_at": 1000 + 10 * n if decided_at is None else decided_at,
    }
    return Seen(seen_ms=1000 + 10 * n + 50, timestamp_ms=0, partition=n % 2, offset=n, value=value)


def test_the_crossing_is_the_first_allow_past_the_limit_in_decided_at_order() -> None:
    decisions = [decision(n) for n in range(5)][::-1]  # arrival order does not matter
    decisions.append(decision(9, org="other"))
    decisions.append(decision(7, verdict="HOLD"))
    cross = crossing(decisions, "v", limit=3)
    assert cross is not None and cross.value["subject_event_id"] == "e3"
    assert crossing(decisions, "v", limit=5) is None


def test_committed_at_is_the_first_poll_past_the_offset() -> None:
    seen = decision(3)  # partition 1, offset 3
    commits: list[tuple[int, dict[tuple[str, int], int]]] = [
        (10, {(TOPIC, 1): 3}),
        (20, {(TOPIC, 1): 4}),
        (30, {(TOPIC, 1): 9}),
    ]
    assert committed_at(commits, TOPIC, seen) == 20
    assert committed_at(commits[:1], TOPIC, seen) is None


def test_timeline_measures_each_hop_from_the_crossing_request() -> None:
    decisions = [decision(n) for n in range(4)] + [decision(n, verdict="HOLD") for n in (4, 5)]
    sent = {f"e{n}": 900 + 10 * n for n in range(6)}
    cross_at = decisions[2].value["decided_at"]  # limit 2: the third ALLOW crosses
    alert: dict[str, Any] = {
        "kind": "BULK_EXPORT",
        "subject": "v",
        "raised_at": cross_at,
        "observed": 3,
    }
    control = {"kind": "SUSPEND_RECIPIENT", "recipient_org": "v"}
    run = timeline(
        recipient="v",
        limit=2,
        sent_ms=sent,
        requests={"e2": Seen(925, 925, 0, 0, {})},
        decisions=decisions,
        alerts=[Seen(1300, 1250, 0, 0, alert)],
        controls=[Seen(1310, 1250, 0, 0, control)],
        forwarded=[Seen(1200, 1100, 3, 0, {"src": [0, 2]})],
        commits=[(1290, {(TOPIC, 0): 3})],
        decisions_topic=TOPIC,
    )
    t0 = sent["e2"]
    hops = run["hops_ms"]
    assert set(hops) == {key for key, _ in HOPS}
    assert hops["request_appended"] == 925 - t0
    assert hops["gate_decided"] == cross_at - t0
    assert hops["decision_visible"] == decisions[2].seen_ms - t0
    assert hops["stage1_committed"] == 1290 - t0
    assert hops["repartitioned"] == 1200 - t0
    assert hops["alert_produced"] == 1250 - t0
    assert hops["alert_visible"] == 1300 - t0
    assert hops["control_visible"] == 1310 - t0
    assert hops["first_hold_decided"] == decisions[4].value["decided_at"] - t0
    assert run["held"] == 2 and run["alert_at_crossing"] is True
    assert run["verdicts"] == {"ALLOW/CONSENTED": 4, "HOLD/RECIPIENT_SUSPENDED": 2}
    assert run["allowed_after_crossing"] == 1

    summary = summarize([run, {"recipient": "w", "verdicts": {}, "error": "no crossing"}])
    assert summary["alert_within_target"] == "1/2"
    assert summary["per_hop_ms"]["alert_visible"]["median"] == 1300 - t0
    table = markdown({"after": summary})
    assert "alert visible (stage-2 commit)" in table and "| 1/2 |" in table


def test_a_run_without_a_crossing_says_so() -> None:
    run = timeline(
        recipient="v",
        limit=10,
        sent_ms={"e0": 1},
        requests={},
        decisions=[decision(0)],
        alerts=[],
        controls=[],
        forwarded=[],
        commits=[],
        decisions_topic=TOPIC,
    )
    assert "hops_ms" not in run and run["error"].startswith("no crossing")
