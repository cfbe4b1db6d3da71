"""Ratios, the profile summary, and ``BENCHMARKS.md`` rendered from ``bench/results/*.json``."""

from __future__ import annotations

import json
import pstats
from pathlib import Path
from typing import Any

# Functions whose inclusive time the profile summary reports (file suffix, function name).
HOT_PATH = [
    ("streams/runtime/loop.py", "_process_batch", "process a batch: everything below"),
    ("streams/runtime/runner.py", "_accept", "intake (_accept, incl. event-time decode)"),
    ("streams/gate/topology.py", "event_time", "decode input for the merge (Avro)"),
    ("streams/runtime/runner.py", "_drain", "event-time merge (drain)"),
    ("streams/gate/processor.py", "_refusal", "trust checks (routing, time, duplicates)"),
    ("streams/gate/processor.py", "_request", "decide a request (rules, record, state)"),
    ("streams/core/model.py", "from_share", "AccessRequest.from_share"),
    ("streams/core/evaluate.py", "decide_safely", "evaluate"),
    ("streams/core/model.py", "decision_record", "decision record + hash"),
    ("streams/gate/processor.py", "_upload", "upload: photo status + index claims"),
    ("streams/gate/processor.py", "on_claim", "photo index: claim"),
    ("streams/gate/processor.py", "on_verdict", "photo index: verdict (+ parked requests)"),
    ("streams/runtime/loop.py", "_write", "encode + produce outputs"),
    ("streams/serde/wire.py", "encode", "encode decision (Avro)"),
    ("streams/runtime/loop.py", "commit_open", "changelog + offsets + commit"),
    ("streams/gate/state.py", "take_changes", "state changelog (take_changes)"),
    ("streams/gate/topology.py", "committed", "metrics after commit"),
    ("streams/runtime/runner.py", "_iteration", "loop iteration (incl. consume)"),
]


def profile_summary(pstats_file: Path, top: int = 15) -> dict[str, Any]:
    """Inclusive time of the hot path's parts and the top functions by self time."""
    stats = pstats.Stats(str(pstats_file))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    iteration = 0.0
    parts = []
    for suffix, name, label in HOT_PATH:
        total = sum(
            row[3] for (file, _, func), row in raw.items() if func == name and file.endswith(suffix)
        )
        if name == "_iteration":
            iteration = total
        parts.append({"part": label, "function": f"{suffix}:{name}", "seconds": round(total, 2)})
    for part in parts:
        part["share_of_loop"] = round(part["seconds"] / iteration, 3) if iteration else None
    by_self = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    total_self = sum(row[2] for row in raw.values())
    return {
        "loop_seconds": round(iteration, 2),
        "sampled_seconds": round(total_self, 2),
        "hot_path": parts,
        "top_self": [
            {
                "function": f"{Path(file).name}:{line} {func}",
                "self_s": round(row[2], 2),
                "share": round(row[2] / total_self, 3) if total_self else None,
            }
            for (file, line, func), row in by_self
        ],
    }


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    gate = _get(results, "runs", "gate", "events_per_s")
    ceiling = _get(results, "runs", "ceiling", "events_per_s")
    faust = _get(results, "runs", "faust_peer", "events_per_s")
    quix = _get(results, "runs", "quix_peer", "events_per_s")
    scale = _get(results, "runs", "scale_out", "events_per_s")
    return {
        "gate_over_ceiling": round(gate / ceiling, 3) if gate and ceiling else None,
        "gate_over_faust": round(gate / faust, 2) if gate and faust else None,
        "gate_over_quix": round(gate / quix, 2) if gate and quix else None,
        "scale_out_over_gate": round(scale / gate, 2) if gate and scale else None,
    }


MIX_TOLERANCE = 0.005
"""Largest difference in any verdict/reason's share of decisions that still counts as the same
mix (half a point: a capped peer decides only the first part of the backlog)."""


def shares(counts: dict[str, int] | None) -> dict[str, float]:
    total = sum((counts or {}).values())
    return {k: v / total for k, v in (counts or {}).items()} if total else {}


def same_decisions(reference: dict[str, str], other: dict[str, str]) -> dict[str, Any]:
    """Compare two runs' decisions of the same input request by request (``verdict/reason``).

    ``differ``: requests both decided, otherwise; ``missing``: decided by the reference only;
    ``extra``: by the other only; ``examples``: a few differing ones, reference first.
    """
    differ = [k for k, v in reference.items() if k in other and other[k] != v]
    return {
        "compared": len(reference),
        "differ": len(differ),
        "missing": sum(1 for k in reference if k not in other),
        "extra": sum(1 for k in other if k not in reference),
        "examples": [[k, reference[k], other[k]] for k in sorted(differ)[:5]],
    }


def check_mixes(results: dict[str, Any]) -> None:
    """Mark each run whose decisions differ from the gate's (``mix_vs_gate``, ``mix_ok``).

    A run of the gate's own code on the same whole input (``same_decisions``: the scale-out)
    must give every request the same verdict and reason; a peer, or a capped run, only the same
    mix within :data:`MIX_TOLERANCE` of each share.
    """
    gate = shares(_get(results, "runs", "gate", "verdicts"))
    if not gate:
        return
    for name, run in results.get("runs", {}).items():
        mine = shares(run.get("verdicts"))
        if name == "gate" or not mine:
            continue
        diff = max(abs(gate.get(k, 0.0) - mine.get(k, 0.0)) for k in {*gate, *mine})
        run["mix_vs_gate_max_diff"] = round(diff, 4)
        same = run.get("same_decisions")
        if same is not None:
            run["mix_ok"] = same["differ"] == same["missing"] == same["extra"] == 0
        else:
            run["mix_ok"] = diff <= MIX_TOLERANCE


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = [f"== {results['mode']} run of {results['date']} ({results.get('total_s')}s)"]
    for name, run in results["runs"].items():
        if name == "detectors":
            lines.append(
                f"  detectors   {run.get('decisions_per_s') or 0:>10.0f} decisions/s"
                f"  cpu {run.get('cpu_us_per_decision')} us/decision alerts {run.get('alerts')}"
            )
            continue
        lines.append(
            f"  {name:11s} {run['events_per_s']:>10.0f} events/s {run['requests_per_s']:>9.0f}"
            f" requests/s  cpu {run['cpu_s_per_million_events']:>6.0f} s/M events"
            f"  peak RSS {run['peak_rss_mb']} MB  mix ok: {run.get('mix_ok', '-')}"
        )
    for name, runs in results["latency"].items():
        for label, lat in runs.items():
            lines.append(
                f"  latency {name} {label}: p50 {lat.get('p50_ms')} p99 {lat.get('p99_ms')}"
                f" p999 {lat.get('p999_ms')} ms (offered {lat.get('offered_requests_per_s')}/s)"
                + (f" {lat['not_run']}" if lat.get("not_run") else "")
            )
    for entry in results["restore"]:
        if entry.get("skipped"):
            lines.append(f"  restore {entry['users']} users {entry['store']}: {entry['skipped']}")
            continue
        lines.append(
            f"  restore {entry['users']} users {entry.get('state', 'consent')} {entry['store']}:"
            f" {entry['total_s']}s,"
            f" peak RSS {entry['peak_rss_mb']} MB"
        )
    lines.append(f"  ratios: {results.get('ratios')}")
    for error in results["errors"]:
        lines.append(f"  ERROR {error}")
    return lines


def latest(results_dir: Path, mode: str, tag: str = "") -> dict[str, Any] | None:
    found = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("mode") == mode and path.stem.endswith(tag) == bool(tag):
            found.append(data)
    return found[-1] if found else None


def write(path: Path, results_dir: Path) -> None:
    from bench.benchmarks_md import render

    path.write_text(render(results_dir))
