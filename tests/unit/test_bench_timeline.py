"""The detection timeline of the benchmark (bench/timeline.py): counts, limits, alerts, controls."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.timeline import (
    MINUTE_MS,
    count_allowed,
    crossings,
    explain,
    first_crossing,
    sliding_hour,
    timeline,
)
from streams.core.policy import load_policy

POLICY = load_policy(Path(__file__).parents[2] / "deploy" / "policy.example.yaml")
T0 = 1_795_000_000_000 - 1_795_000_000_000 % MINUTE_MS  # a minute boundary


def decision(org: str, at_ms: int, verdict: str = "ALLOW") -> dict[str, object]:
    return {"recipient_org": org, "decided_at": at_ms, "verdict": verdict}


def alert(org: str, at_ms: int, kind: str = "BULK_EXPORT") -> dict[str, object]:
    return {"kind": kind, "subject": org, "raised_at": at_ms, "observed": 120, "threshold": 90.5}


def control(org: str, at_ms: int, kind: str) -> dict[str, object]:
    return {"kind": kind, "recipient_org": org, "at": at_ms}


def test_only_allowed_decisions_count_per_recipient_and_minute() -> None:
    counts = count_allowed(
        [
            decision("acme-vision", T0),
            decision("acme-vision", T0 + MINUTE_MS - 1),
            decision("acme-vision", T0 + MINUTE_MS),
            decision("acme-vision", T0, verdict="DENY"),
            decision("lovebird-partners", T0),
        ]
    )
    minute = T0 // MINUTE_MS
    assert counts == Counter(
        {
            ("acme-vision", minute): 2,
            ("acme-vision", minute + 1): 1,
            ("lovebird-partners", minute): 1,
        }
    )
    more = count_allowed([decision("acme-vision", T0)], into=counts)
    assert more is counts and counts[("acme-vision", minute)] == 3


def test_a_recipient_timeline_has_its_limit_alerts_and_controls() -> None:
    counts = count_allowed(
        [decision("acme-vision", T0), decision("acme-vision", T0 + 5 * MINUTE_MS)]
    )
    drawn = timeline(
        POLICY,
        counts,
        [alert("acme-vision", T0 + 1), alert("acme-vision", T0 + 2, kind="DENIED_BURST")],
        [
            control("acme-vision", T0 + 3, "SUSPEND_RECIPIENT"),
            control("acme-vision", T0 + 4, "RESUME_RECIPIENT"),
            control("lovebird-partners", T0 + 5, "SUSPEND_RECIPIENT"),
        ],
    )
    assert drawn == {
        "acme-vision": {
            "limit_per_hour": 5000,
            "bin_ms": MINUTE_MS,
            "bin_start_ms": [T0, T0 + 5 * MINUTE_MS],
            "photos": [1, 1],
            "alerts_ms": [T0 + 1],
            "alerts_observed": [120.0],
            "alerts_threshold": [90.5],
            "suspended_ms": [T0 + 3],
            "resumed_ms": [T0 + 4],
        }
    }


def test_recipients_without_a_limit_are_left_out_and_the_most_alerted_kept() -> None:
    counts = count_allowed(
        [decision(org, T0) for org in ("acme-vision", "lovebird-partners", "photo-cdn", "nobody")]
    )
    alerts = [alert("lovebird-partners", T0), alert("lovebird-partners", T0 + 1)]
    assert set(timeline(POLICY, counts, alerts, [])) == {"acme-vision", "lovebird-partners"}
    assert set(timeline(POLICY, counts, alerts, [], only_alerted=True)) == {"lovebird-partners"}
    assert set(timeline(POLICY, counts, alerts, [], most=1)) == {"lovebird-partners"}
    assert timeline(POLICY, Counter(), alerts, []) == {}


def test_an_alerted_recipient_is_drawn_from_before_its_first_alert_to_its_last_minute() -> None:
    counts = count_allowed(
        [decision("acme-vision", T0), decision("acme-vision", T0 + 9 * MINUTE_MS)]
    )
    alerts = [alert("acme-vision", T0 + 5 * MINUTE_MS), alert("acme-vision", T0 + 7 * MINUTE_MS)]
    drawn = timeline(POLICY, counts, alerts, [], before_alert_ms=2 * MINUTE_MS)
    assert drawn["acme-vision"]["window_ms"] == [T0 + 3 * MINUTE_MS, T0 + 10 * MINUTE_MS]
    quiet = timeline(POLICY, counts, [], [], before_alert_ms=2 * MINUTE_MS)
    assert "window_ms" not in quiet["acme-vision"]


def test_the_sliding_hour_sums_sixty_minutes_and_finds_the_first_crossing() -> None:
    # 90 photos in each of minutes 0..59, then nothing: the hour ending at minute 55 holds
    # 56 * 90 = 5,040 > 5,000, and the hour ending at minute 119 is empty again
    counts = count_allowed(
        decision("acme-vision", T0 + m * MINUTE_MS) for m in range(60) for _ in range(90)
    )
    counts[("acme-vision", T0 // MINUTE_MS + 119)] = 1
    entry = timeline(POLICY, counts, [], [])["acme-vision"]
    bins, hour = sliding_hour(entry)
    assert bins[0] == T0 and bins[-1] == T0 + 119 * MINUTE_MS and len(bins) == 120
    assert hour[0] == 90 and hour[59] == 5400 and hour[60] == 5310 and hour[119] == 1
    assert first_crossing(entry) == T0 + 56 * MINUTE_MS  # the end of minute 55
    calm = timeline(POLICY, count_allowed([decision("acme-vision", T0)]), [], [])
    assert first_crossing(calm["acme-vision"]) is None


def test_each_crossing_gets_its_first_alert_and_every_alert_is_explained_by_the_line() -> None:
    # acme-vision (5,000/hour): 100 photos a minute for 60 minutes crosses in minute 50
    # (5,100 > 5,000); then silence for an hour and the same again: a second crossing
    ones = [decision("acme-vision", T0 + m * MINUTE_MS + s) for m in range(60) for s in range(100)]
    twos = [
        decision("acme-vision", T0 + (120 + m) * MINUTE_MS) for m in range(60) for _ in range(100)
    ]
    counts = count_allowed([*ones, *twos])
    at_crossing = T0 + 50 * MINUTE_MS + 1  # the 5,001st decision of the first hour
    too_low = T0 + 130 * MINUTE_MS  # a learned alert the line cannot account for
    alerts = [
        {**alert("acme-vision", at_crossing), "observed": 5001, "threshold": 5000.0},
        {**alert("acme-vision", too_low), "observed": 120, "threshold": 100.0},
    ]
    entry = timeline(POLICY, counts, alerts, [])["acme-vision"]
    assert crossings(entry) == [T0 + 50 * MINUTE_MS, T0 + 170 * MINUTE_MS]
    told = explain(entry)
    assert told["crossings"] == [
        {
            "minute_ms": T0 + 50 * MINUTE_MS,
            "first_alert_ms": at_crossing,
            "alert_after_s": 0.001,
            "episode_alert_ms": None,
        },
        # the learned alert of minute 130 (threshold 100) began an episode the line never left
        # (never below 50 since): no new alert is due at this crossing
        {
            "minute_ms": T0 + 170 * MINUTE_MS,
            "first_alert_ms": None,
            "alert_after_s": None,
            "episode_alert_ms": too_low,
        },
    ]
    first, second = told["alerts"]
    assert first["trigger"] == "limit" and first["explained"]
    assert first["line_bounds"] == [5000, 5100]
    # the line held 1,100 photos in the hour ending at minute 130: 120 is an under-count
    assert second["trigger"] == "learned" and not second["explained"]
    assert second["line_bounds"] == [1000, 1100]
