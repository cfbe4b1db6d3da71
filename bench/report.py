"""Ratios, the profile summary, and ``BENCHMARKS.md`` rendered from ``bench/results/*.json``."""

from __future__ import annotations

import json
import pstats
from pathlib import Path
from typing import Any

# Functions whose inclusive time the profile summary reports (file suffix, function name).
HOT_PATH = [
    ("streams/gate/runner.py", "_transact", "one transaction: everything below"),
    ("streams/serde/wire.py", "decode", "decode input (Avro)"),
    ("streams/gate/processor.py", "process", "process (rules, state, record)"),
    ("streams/core/model.py", "from_share", "AccessRequest.from_share"),
    ("streams/core/evaluate.py", "decide_safely", "evaluate"),
    ("streams/core/model.py", "decision_record", "decision record + hash (core)"),
    ("streams/core/audit.py", "chain_hash", "chain hash (canonical JSON + SHA-256, core)"),
    ("streams/gate/processor.py", "fast_decision_record", "decision record + hash (gate)"),
    ("uuid.py", "uuid5", "uuid5 (decision id)"),
    ("streams/gate/processor.py", "derived_id", "derived_id (decision id)"),
    ("streams/serde/wire.py", "encode", "encode decision (Avro)"),
    ("streams/gate/runner.py", "_produce", "produce outputs"),
    ("streams/gate/runner.py", "_count", "metrics per decision"),
    ("streams/gate/state.py", "take_changes", "state changelog (take_changes)"),
    ("streams/core/consent.py", "to_bytes", "UserState.to_bytes (JSON)"),
    ("streams/gate/runner.py", "_commit", "commit_transaction"),
    ("streams/gate/runner.py", "_drain", "event-time merge (drain)"),
    ("streams/gate/runner.py", "_accept", "intake (_accept)"),
    ("streams/gate/runner.py", "_iteration", "loop iteration (incl. consume)"),
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
    scale = _get(results, "runs", "scale_out", "events_per_s")
    return {
        "gate_over_ceiling": round(gate / ceiling, 3) if gate and ceiling else None,
        "gate_over_faust": round(gate / faust, 2) if gate and faust else None,
        "scale_out_over_gate": round(scale / gate, 2) if gate and scale else None,
    }


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = [f"== {results['mode']} run of {results['date']} ({results.get('total_s')}s)"]
    for name, run in results["runs"].items():
        lines.append(
            f"  {name:11s} {run['events_per_s']:>10.0f} events/s {run['requests_per_s']:>9.0f}"
            f" requests/s  cpu {run['cpu_s_per_million_events']:>6.0f} s/M events"
            f"  peak RSS {run['peak_rss_mb']} MB"
        )
    for name, runs in results["latency"].items():
        for label, lat in runs.items():
            lines.append(
                f"  latency {name} {label}: p50 {lat.get('p50_ms')} p99 {lat.get('p99_ms')}"
                f" p999 {lat.get('p999_ms')} ms (offered {lat.get('offered_requests_per_s')}/s)"
                + (f" {lat['not_run']}" if lat.get("not_run") else "")
            )
    for entry in results["restore"]:
        lines.append(
            f"  restore {entry['users']} users {entry['store']}: {entry['total_s']}s,"
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
