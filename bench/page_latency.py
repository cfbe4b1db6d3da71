"""The BENCHMARKS.md page's latency section, from one bench.run result.

The table of offered live loads (send → decision visible to a ``read_committed`` reader, with the
gate's own commit and GC histograms meanwhile), the commit-interval curve, and the sentences that
say where a p99 went: the split at the decision record's timestamp, and what the gate's
histograms rule in or out.
"""

from __future__ import annotations

from typing import Any

from bench.page_format import num


def _inside(seen: dict[str, Any] | None) -> str:
    """The gate's own histograms during a phase: commit p99, and long GC pauses."""
    if not seen:
        return "- | -"
    pauses = seen.get("gc_pauses") or {}
    long = sum(p.get("over_50ms", 0) for p in pauses.values())
    seconds = sum(p.get("seconds", 0.0) for p in pauses.values())
    return f"{num(seen.get('commit_p99_ms'))} | {long} ({seconds:.2f} s in GC)"


def _lat_row(label: str, run: dict[str, Any] | None) -> str:
    if not run or run.get("p50_ms") is None:
        return f"| {label} | - | - | - | - | - | - | - | - |"
    kept = "" if run.get("kept_up", True) else " (fell behind)"
    return (
        f"| {label}{kept} | {num(run['offered_requests_per_s'])} | {num(run['p50_ms'])} |"
        f" {num(run['p99_ms'])} | {num(run['p999_ms'])} |"
        f" {_inside(run.get('gate_internals'))} |"
        f" {num(run.get('cores_under_test'), 2)} |"
        f" {num(run.get('cores_other_work'), 2)} |"
    )


def latency_table(data: dict[str, Any]) -> list[str]:
    gate = data.get("latency", {}).get("gate") or {}
    if not gate:
        return ["(not run)"]
    live_max = (gate.get("full_load") or {}).get("live_max_requests_per_s")
    lines = [
        "| offered live load | requests/s | p50 ms | p99 ms | p99.9 ms | gate's commit p99 ms |"
        " gate's GC pauses over 50 ms | gate cores | other work (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        _lat_row("2,000 requests/s", gate.get("live_2000")),
        _lat_row(
            f"the backlog maximum (→ live maximum {num(live_max)} requests/s)",
            gate.get("full_load"),
        ),
        _lat_row("half the live maximum", gate.get("half_live_max")),
    ]
    return lines


def commit_curve(data: dict[str, Any]) -> list[str]:
    curve = data.get("commit_curve") or []
    if not curve:
        return ["(not run)"]
    lines = [
        "| `commit_interval_ms` | p50 ms at 2,000/s | p99 ms at 2,000/s | gate's commit p99 ms"
        " | gate's GC pauses over 50 ms | live maximum requests/s | p99 ms at that maximum"
        " | other work (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in curve:
        lines.append(
            f"| {c['commit_interval_ms']} | {num(c.get('p50_ms_at_2000'))} |"
            f" {num(c.get('p99_ms_at_2000'))} | {_inside(c.get('gate_internals_at_2000'))} |"
            f" {num(c.get('live_max_requests_per_s'))} |"
            f" {num(c.get('p99_ms_at_full_load'))} | {num(c.get('cores_other_work'), 2)} |"
        )
    return lines


def latency_split(split: dict[str, Any] | None) -> str:
    """Where the send→visible time went, by the decision record's timestamp (a sentence)."""
    if not split:
        return ""
    until, after = split["until_produced"], split["produced_to_visible"]
    return (
        " Split at the decision record's timestamp (when the gate produced it): from the send"
        f" to the gate producing the decision p50 {num(until.get('p50_ms'))} ms / p99"
        f" {num(until.get('p99_ms'))} ms; from there to visible (the transaction's commit and"
        f" the reader's fetch) p50 {num(after.get('p50_ms'))} ms / p99"
        f" {num(after.get('p99_ms'))} ms."
        + _split_verdict(until.get("p99_ms") or 0, after.get("p99_ms") or 0)
    )


def _split_verdict(until_p99: float, after_p99: float) -> str:
    if until_p99 > 2 * after_p99:
        return (
            " Most of the tail comes before the gate produced the decision: the request's way"
            " in (producer, broker, the gate's fetch and event-time merge) and its wait behind"
            " the loop turn in progress."
        )
    if after_p99 > 2 * until_p99:
        return (
            " Most of the tail comes after the gate produced the decision: the rest of its"
            " loop turn, the transaction's commit and the reader's fetch."
        )
    return (
        " The two halves are about equal: a request waits for the loop turn in progress"
        " before the gate takes it, then for the rest of its own turn and the commit, so the"
        " tail is about two turns of the gate's loop."
    )


def tail_causes(seen: dict[str, Any] | None, p99_ms: float | None) -> str:
    """What the gate's own histograms rule in or out as the cause of a p99 (a sentence)."""
    if not seen or p99_ms is None:
        return ""
    pauses = seen.get("gc_pauses") or {}
    long = sum(p.get("over_50ms", 0) for p in pauses.values())
    in_gc = sum(p.get("seconds", 0.0) for p in pauses.values())
    commit = seen.get("commit_p99_ms")
    parts = [
        f" Inside the gate meanwhile (its own histograms): {seen.get('commits')} commits,"
        f" p99 at most {num(commit)} ms (mean {num(seen.get('commit_mean_ms'), 1)} ms), and"
        f" {long} garbage collection(s) longer than 50 ms ({in_gc:.2f} s in the collector"
        " in all)."
    ]
    if long == 0 and commit is not None and commit < p99_ms / 2:
        parts.append(" So neither a collector pause nor a slow commit makes the tail.")
    return "".join(parts)
