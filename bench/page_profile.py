"""The BENCHMARKS.md page's profile of the gate, from one bench.run result.

Inclusive time per part of the hot path and the top functions by self time (pyinstrument), and
the share of the gate's loop a set of hot-path functions took (for the targets' causes).
"""

from __future__ import annotations

from typing import Any

from bench.page_format import num


def profile_tables(data: dict[str, Any]) -> list[str]:
    prof = data.get("profile")
    if not prof:
        return ["(not run)"]
    lines = [
        f"{num(prof['decisions_profiled'])} decisions under pyinstrument (report"
        f" `{prof['text_report']}`), inclusive time:",
        "",
        "| part of the hot path | seconds | share of the loop |",
        "|---|---:|---:|",
    ]
    for part in prof["hot_path"]:
        if not part["seconds"]:
            continue
        share = part.get("share_of_loop")
        lines.append(
            f"| {part['part']} (`{part['function'].split('/')[-1]}`) | {part['seconds']:.2f} |"
            f" {'-' if share is None else f'{share:.0%}'} |"
        )
    lines += ["", "| top functions by self time | self s | share |", "|---|---:|---:|"]
    for top in prof["top_self"][:12]:
        lines.append(f"| `{top['function']}` | {top['self_s']:.2f} | {top['share']:.1%} |")
    return lines


def loop_share(prof: dict[str, Any], *functions: str) -> float:
    parts = {p["function"].split(":")[-1]: p.get("share_of_loop") or 0.0 for p in prof["hot_path"]}
    return sum(parts.get(f, 0.0) for f in functions)
