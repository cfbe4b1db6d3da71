"""The BENCHMARKS.md page's state-restore table, from one bench.run result.

Per users, state (consent, or consent and recall ledgers) and store: changelog records, restore
time of 8 partitions in one process, records/s, peak RSS and value bytes per user; runs that
were skipped are listed with why.
"""

from __future__ import annotations

from typing import Any

from bench.page_format import num


def restore_table(data: dict[str, Any]) -> list[str]:
    entries = data.get("restore") or []
    if not entries:
        return ["(not run)"]
    lines = [
        "| users | state | store | changelog records | restore s (8 partitions, one process)"
        " | records/s | peak RSS MB | value bytes per user |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    skipped = []
    for e in entries:
        if e.get("skipped"):
            skipped.append(
                f"- {num(e['users'])} users, {e.get('state', 'consent')}, {e['store']}:"
                f" {e['skipped']}."
            )
            continue
        lines.append(
            f"| {num(e['users'])} | {e.get('state', 'consent')} | {e['store']} |"
            f" {num(e.get('records'))} | {num(e['total_s'], 1)} | {num(e.get('records_per_s'))}"
            f" | {num(e['peak_rss_mb'])} | {num(e.get('value_bytes_avg'))} |"
        )
    return [*lines, *([""] if skipped else []), *skipped]
