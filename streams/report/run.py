"""``consentinel report decisions`` and ``consentinel report user``: read, aggregate, render."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from streams.report.frame import (
    decisions_frame,
    parse_instant,
    summarize,
    user_decisions,
    within,
)
from streams.report.render import check_output, render_decisions, render_user
from streams.report.source import DecisionLog, read_decisions
from streams.settings import Settings


def _scope(log: DecisionLog) -> str:
    text = f"{log.topic}: {log.read} decisions read on {log.partitions} partitions"
    if log.unreadable:
        where = ", ".join(f"{p}@{o}" for p, o in log.unreadable[:5])
        more = f" and {len(log.unreadable) - 5} more" if len(log.unreadable) > 5 else ""
        text += f"; {len(log.unreadable)} UNREADABLE record(s) left out ({where}{more})"
    return text


def _moment(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%dT%H:%M:%S}Z"


def decisions_report(
    settings: Settings,
    *,
    since: str | None = None,
    until: str | None = None,
    fmt: str = "table",
    out: Path | None = None,
) -> str:
    """Read every decision and return the rendered report (or where its files went)."""
    start = parse_instant(since) if since else None
    end = parse_instant(until, end_of_day=True) if until else None
    within(decisions_frame([]), start, end)  # refuse a bad window before reading anything
    check_output(fmt, out, directory=True)
    log = read_decisions(settings)
    report = summarize(within(decisions_frame(log.records), start, end))
    header = (
        f"{_scope(log)}\n"
        f"window: since {_moment(start)} until {_moment(end)} (decided_at, UTC): "
        f"{report.decisions} decisions, first {_moment(report.first)}, "
        f"last {_moment(report.last)}"
    )
    return render_decisions(report, header, fmt, out)


def user_report(
    settings: Settings, user_id: str, *, fmt: str = "table", out: Path | None = None
) -> str:
    """Read every decision about ``user_id`` and the recall orders naming them; render both.

    The recall orders follow the decisions: as a second table (``table``), a second CSV under
    ``# recall_orders`` (CSV to stdout), or a file beside ``--out`` (``<stem>.recalls<suffix>``).
    """
    from streams.report.regulator import user_recall_section

    check_output(fmt, out, directory=False)
    log = read_decisions(settings, keep=lambda record: record.get("owner_id") == user_id)
    frame = user_decisions(decisions_frame(log.records), user_id)
    verdicts = frame["verdict"].value_counts(sort=True)
    counts = ", ".join(f"{v} {n}" for v, n in verdicts.iter_rows()) or "none"
    header = (
        f"{_scope(log)}\nuser {user_id}: {frame.height} decision(s) about their photos ({counts})"
    )
    if fmt == "table":
        text = render_user(frame, header, fmt, None)
        text += "\n" + user_recall_section(settings, user_id, fmt, None)
        if out is None:
            return text
        out.write_text(text + "\n", encoding="utf-8")
        return f"wrote {out}"
    text = render_user(frame, header, fmt, out)
    return text + user_recall_section(settings, user_id, fmt, out)
