"""The BENCHMARKS.md page's throughput sections, from one bench.run result.

The systems' table (input events/s, CPU per event, peak RSS, verdict mix, dead letters, other
work on the machine), the decisions by verdict and reason with the note on why the peers' mixes
may differ, and the gate's CPU per input event before and after a change (``--baseline``).
"""

from __future__ import annotations

from typing import Any

from bench.page_format import dead, mix, num, same_decisions_text
from bench.report import shares

SYSTEMS = [
    ("ceiling", "ceiling: transactional passthrough (same cadence), no decoding"),
    ("gate", "**gate**: one `consentinel gate` process"),
    ("scale_out", "gate x2: two processes, one group"),
    ("gate_baseline", "gate before this change (same input, same run)"),
    ("quix_peer", "Quix Streams peer (exactly-once)"),
    ("faust_peer", "faust peer (at-least-once)"),
]


def system_table(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    gate = (runs.get("gate") or {}).get("events_per_s")
    lines = [
        "| system | input events/s | requests/s | ÷ gate | CPU µs per input event | peak RSS MB"
        " | verdict mix (share of decisions) | same mix as gate? | dead letters by kind"
        " | other work (cores) |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for key, label in SYSTEMS:
        run = runs.get(key)
        if run is None:
            continue
        note = "" if run.get("complete", True) else " ¹"
        samples = run.get("samples_events_per_s")
        if samples and len(samples) > 1:
            note += f" (best of {', '.join(num(x) for x in samples)})"
        ratio = run["events_per_s"] / gate if gate else None
        if key == "gate":
            same = "(reference)"
        elif "mix_ok" not in run:
            same = "-"
        elif "same_decisions" in run:
            same = same_decisions_text(run["same_decisions"])
        else:
            diff = run.get("mix_vs_gate_max_diff", 0)
            same = "yes" if run["mix_ok"] else f"**no** (a reason's share differs by {diff:.1%})"
        lines.append(
            f"| {label}{note} | {num(run['events_per_s'])} | {num(run['requests_per_s'])} |"
            f" {num(ratio, 2)} | {num(run['cpu_s_per_million_events'], 1)} |"
            f" {num(run['peak_rss_mb'])} | {mix(run.get('verdicts'))} | {same} |"
            f" {dead(run.get('dead_letters'))} | {num(run.get('cores_other_work'), 2)} |"
        )
    det = runs.get("detectors")
    if det:
        rate = det.get("decisions_per_s") or 0
        lines.append(
            f"| detectors, both stages (decisions in) | {num(rate)}"
            f" decisions/s | - | {num(rate / gate if gate else None, 2)}"
            f" | {num(det.get('cpu_us_per_decision'), 1)} per decision |"
            f" {num(det.get('peak_rss_mb'))} | alerts: {dead(det.get('alerts'))} | - |"
            f" {dead(det.get('dead_letters'))} | {num(det.get('cores_other_work'), 2)} |"
        )
    return lines


def verdict_table(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    names = [k for k, _ in SYSTEMS if (runs.get(k) or {}).get("verdicts")]
    if not names:
        return []
    keys = sorted({k for n in names for k in runs[n]["verdicts"]})
    head = " | ".join(f"{n} ({num(sum(runs[n]['verdicts'].values()))})" for n in names)
    lines = [f"| verdict / reason | {head} |", "|---|" + "---:|" * len(names)]
    for key in keys:
        cells = " | ".join(f"{shares(runs[n]['verdicts']).get(key, 0.0):.1%}" for n in names)
        lines.append(f"| {key} | {cells} |")
    return lines


def cpu_before_after(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    before, after = runs.get("gate_baseline"), runs.get("gate")
    if not before or not after:
        return [
            "Not measured in this run (`python -m bench.run --quick --baseline <ref>` measures"
            " the gate at `<ref>` on the same input in the same run)."
        ]
    b, a = before["cpu_s_per_million_events"], after["cpu_s_per_million_events"]
    return [
        "| gate | CPU µs per input event | input events/s | verdict mix |",
        "|---|---:|---:|---|",
        f"| before (`{before.get('ref', '?')}`) | {num(b, 1)} | {num(before['events_per_s'])} |"
        f" {mix(before.get('verdicts'))} |",
        f"| after (working tree) | {num(a, 1)} | {num(after['events_per_s'])} |"
        f" {mix(after.get('verdicts'))} |",
        "",
        f"CPU per event after ÷ before: **{a / b:.2f}** (same input, same run, one after the"
        " other on the same broker).",
    ]


MIX_NOTE = (
    "The gate merges each partition's topics by the decoded `occurred_at` and parks a request"
    " until the photo index has settled its photo, so it decides a backlog as it would have"
    " live (1% of the requests name a photo never uploaded: `UNKNOWN_PHOTO`). The Quix peer's"
    " input topics are `CreateTime` stamped with `occurred_at`, because Quix aligns"
    " concatenated topics by the Kafka timestamp only. The faust peer has no event-time merge:"
    " it takes records in arrival order, and decides requests before the consents they follow"
    " where its mix differs."
)
