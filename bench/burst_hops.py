"""The live burst's timeline per hop (issue #19): pure functions over what one run observed.

A run of :mod:`bench.burst` sends a burst of share requests to one recipient and records, on the
bench's wall clock (every process runs on this machine, so one clock), when each request was
sent and when a ``read_committed`` observer saw each record; the records carry the rest:

* a request's broker append time (``LogAppendTime`` input topic);
* a decision's ``decided_at`` (the gate's wall clock as it decided);
* an alert's broker timestamp (``CreateTime``: when the detector produced it, in its transaction);
* the detector's committed offset on the crossing decision's partition, polled.

The *crossing* is the decision that took the recipient's sliding hour above its limit: the
``limit + 1``-th ``ALLOW`` for it in ``decided_at`` order (the order the detector counts in).
:func:`timeline` returns each hop's time after the crossing request was sent, in ms.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOPS: tuple[tuple[str, str], ...] = (
    ("request_appended", "request on the broker (its LogAppendTime)"),
    ("gate_decided", "gate decided it (decided_at)"),
    ("decision_visible", "decision visible (gate commit)"),
    ("stage1_committed", "detector committed past it (stage 1)"),
    ("repartitioned", "forwarded copy visible on by-recipient (repartition)"),
    ("alert_produced", "alert produced (stage 2, CreateTime)"),
    ("alert_visible", "alert visible (stage-2 commit)"),
    ("control_visible", "SUSPEND_RECIPIENT visible"),
    ("first_hold_decided", "first HOLD decided (gate's control reader)"),
    ("first_hold_visible", "first HOLD visible"),
)
"""Each hop's key and what it measures, in the order of the path."""

TARGET_MS = 2_000
"""Issue #19: the alert visible at most 2 s after the crossing request was sent."""


@dataclass(frozen=True)
class Seen:
    """One record as the observer saw it."""

    seen_ms: int
    """When the observer's consumer returned it (bench wall clock)."""
    timestamp_ms: int
    """Its broker timestamp (CreateTime or LogAppendTime, by topic)."""
    partition: int
    offset: int
    value: Mapping[str, Any]


def crossing(decisions: Sequence[Seen], recipient: str, limit: int) -> Seen | None:
    """Return the decision that took ``recipient`` above ``limit`` ALLOWs, or None."""
    allowed = [
        d
        for d in decisions
        if d.value.get("recipient_org") == recipient and d.value.get("verdict") == "ALLOW"
    ]
    allowed.sort(key=lambda d: (d.value["decided_at"], d.partition, d.offset))
    return allowed[limit] if len(allowed) > limit else None


def committed_at(
    commits: Sequence[tuple[int, Mapping[tuple[str, int], int]]], topic: str, seen: Seen
) -> int | None:
    """Return when the committed offset of ``seen``'s partition was first seen past it."""
    for at_ms, offsets in commits:
        if offsets.get((topic, seen.partition), -1) > seen.offset:
            return at_ms
    return None


def timeline(
    *,
    recipient: str,
    limit: int,
    sent_ms: Mapping[str, int],
    requests: Mapping[str, Seen],
    decisions: Sequence[Seen],
    alerts: Sequence[Seen],
    controls: Sequence[Seen],
    forwarded: Sequence[Seen],
    commits: Sequence[tuple[int, Mapping[tuple[str, int], int]]],
    decisions_topic: str,
) -> dict[str, Any]:
    """Return one run's hops (ms after the crossing request was sent) and its verdict mix.

    ``sent_ms`` and ``requests`` are keyed by event id; ``forwarded`` holds the by-recipient
    records seen (empty when stage 1 hands its output to stage 2 in process); ``commits`` is
    the detector group's committed offsets as polled, oldest first.
    """
    mine = [d for d in decisions if d.value.get("recipient_org") == recipient]
    mix = Counter(f"{d.value['verdict']}/{d.value['reason']}" for d in mine)
    result: dict[str, Any] = {
        "recipient": recipient,
        "sent": len(sent_ms),
        "decided": len(mine),
        "verdicts": dict(sorted(mix.items())),
    }
    cross = crossing(decisions, recipient, limit)
    if cross is None:
        result["error"] = f"no crossing: {mix.get('ALLOW/CONSENTED', 0)} ALLOW decisions"
        return result
    event_id = str(cross.value["subject_event_id"])
    t0 = sent_ms[event_id]
    last_sent = max(sent_ms.values())
    hops: dict[str, int | None] = dict.fromkeys(key for key, _ in HOPS)
    request = requests.get(event_id)
    hops["request_appended"] = None if request is None else request.timestamp_ms - t0
    hops["gate_decided"] = int(cross.value["decided_at"]) - t0
    hops["decision_visible"] = cross.seen_ms - t0
    stage1 = committed_at(commits, decisions_topic, cross)
    hops["stage1_committed"] = None if stage1 is None else stage1 - t0
    copies = [f for f in forwarded if f.value.get("src") == [cross.partition, cross.offset]]
    hops["repartitioned"] = min(f.seen_ms for f in copies) - t0 if copies else None
    bulk = [
        a
        for a in alerts
        if a.value.get("kind") == "BULK_EXPORT" and a.value.get("subject") == recipient
    ]
    if bulk:
        first = min(bulk, key=lambda a: a.seen_ms)
        hops["alert_produced"] = first.timestamp_ms - t0
        hops["alert_visible"] = first.seen_ms - t0
        result["alert_observed"] = first.value.get("observed")
        result["alert_at_crossing"] = first.value.get("raised_at") == cross.value["decided_at"]
    suspends = [
        c
        for c in controls
        if c.value.get("kind") == "SUSPEND_RECIPIENT" and c.value.get("recipient_org") == recipient
    ]
    if suspends:
        hops["control_visible"] = min(c.seen_ms for c in suspends) - t0
    holds = [d for d in mine if d.value.get("verdict") == "HOLD"]
    if holds:
        first_hold = min(holds, key=lambda d: d.value["decided_at"])
        hops["first_hold_decided"] = int(first_hold.value["decided_at"]) - t0
        hops["first_hold_visible"] = first_hold.seen_ms - t0
    result["hops_ms"] = hops
    result["last_request_sent_ms"] = last_sent - t0
    result["held"] = len(holds)
    result["allowed_after_crossing"] = sum(
        1
        for d in mine
        if d.value.get("verdict") == "ALLOW" and d.value["decided_at"] > cross.value["decided_at"]
    )
    return result


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """Return the min, median, max (and count) of ``values``."""
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(values),
        "min": round(min(values)),
        "median": round(statistics.median(values)),
        "max": round(max(values)),
    }


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return the per-hop distribution over runs, the verdict mix and the target's tally."""
    measured = [r for r in runs if "hops_ms" in r]
    per_hop = {
        key: distribution([r["hops_ms"][key] for r in measured if r["hops_ms"][key] is not None])
        for key, _ in HOPS
    }
    alerts = [r["hops_ms"]["alert_visible"] for r in measured]
    within = sum(1 for a in alerts if a is not None and a <= TARGET_MS)
    mix: Counter[str] = Counter()
    for run in runs:
        mix.update(run.get("verdicts", {}))
    return {
        "runs": len(runs),
        "alert_within_target": f"{within}/{len(runs)}",
        "alert_visible_ms": sorted(a for a in alerts if a is not None),
        "held_per_run": [r.get("held", 0) for r in runs],
        "per_hop_ms": per_hop,
        "verdicts": dict(sorted(mix.items())),
    }


def markdown(summaries: Mapping[str, Mapping[str, Any]]) -> str:
    """Return a per-hop table (median [min-max] ms after the crossing request), one column each."""
    names = list(summaries)
    lines = [
        "| hop (ms after the crossing request was sent) | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, label in HOPS:
        cells = []
        for name in names:
            d = summaries[name]["per_hop_ms"][key]
            cells.append("-" if d["median"] is None else f"{d['median']} [{d['min']}..{d['max']}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| alert ≤ 2 s | " + " | ".join(summaries[n]["alert_within_target"] for n in names) + " |"
    )
    return "\n".join(lines)


def section(results_dir: Path) -> list[str]:
    """The ``BENCHMARKS.md`` section of the live burst: the latest ``before`` and ``after``
    results (``bench/results/burst-*-before*.json`` / ``-after*``), else (up to three of) the
    latest day's, one column each."""
    loaded = []
    for path in sorted(results_dir.glob("burst-*.json")):
        try:
            loaded.append((path.stem, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    if not loaded:
        return ["Not measured yet: `make bench-burst` (`python -m bench.burst`)."]
    chosen = [
        found[-1]
        for found in (
            [x for x in loaded if "before" in x[0]],
            [x for x in loaded if "after" in x[0]],
        )
        if found
    ] or [x for x in loaded if x[1].get("date") == loaded[-1][1].get("date")][-3:]
    c = chosen[-1][1]["config"]
    lines = [
        f"`make bench-burst`: a real gate and a real detector as processes on the local stack, a"
        f" burst of {c['requests']:,} share requests at {c['rate_per_s']:g}/s to a recipient"
        f" with a limit of {c['limit_per_hour']:,} photos an hour (`auto_suspend`); the runs"
        " (and whether a warm-up burst came first) are listed under the table. Each hop is"
        " measured from the moment the crossing request (the one whose `ALLOW` took the hour"
        " above the limit) was handed to the producer, on this machine's one clock:"
        " median [min..max] ms.",
        "",
        markdown({f"`{stem}`": data["summary"] for stem, data in chosen}),
        "",
    ]
    for stem, data in chosen:
        s, cfg = data["summary"], data["config"]
        env = {**cfg.get("gate_env", {}), **cfg.get("detector_env", {})}
        runs = data["runs"]
        lines.append(
            f"- `{stem}` ({len(runs)} runs"
            + (", after a warm-up" if cfg.get("warmup", True) else ", no warm-up")
            + f", code `{data.get('commit')}`"
            + (f", environment {env}" if env else "")
            + f"): alert visible after {', '.join(str(a) for a in s['alert_visible_ms'])} ms;"
            f" requests held per run {s['held_per_run']}; verdicts over all runs"
            f" {s['verdicts']}; CPU cores busy (whole machine) per run"
            f" {[r.get('machine_cores_busy') for r in runs]}; detector commits per run"
            f" {[r.get('detect', {}).get('commits') for r in runs]} at a mean of"
            f" {[r.get('detect', {}).get('commit_mean_ms') for r in runs]} ms."
        )
    return lines
