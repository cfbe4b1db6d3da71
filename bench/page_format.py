"""Cells of the BENCHMARKS.md page, shared by its sections: numbers, verdict mixes, dead letters,
and how a run's decisions compare with the gate's, request by request.
"""

from __future__ import annotations

from typing import Any

from bench.report import shares


def num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " + ".join(num(v, digits) for v in value)
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def mix(counts: dict[str, int] | None, top: int = 4) -> str:
    if not counts:
        return "-"
    share = shares(counts)
    ranked = sorted(share.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k} {v:.1%}" for k, v in ranked[:top])
    rest = sum(v for _, v in ranked[top:])
    return text + (f", other {rest:.1%}" if rest else "")


def dead(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "-"
    if not counts:
        return "none"
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))


def same_decisions_text(same: dict[str, Any]) -> str:
    """Say how a run's decisions compare with the gate's, request by request."""
    wrong = same["differ"] + same["missing"] + same["extra"]
    if wrong == 0:
        return f"yes: all {same['compared']:,} requests alike"
    return (
        f"**no**: {same['differ']:,} of {same['compared']:,} requests decided otherwise,"
        f" {same['missing']:,} missing, {same['extra']:,} extra"
    )
