"""The HTML pages of ``report transfers`` and ``report recalls`` (pure: frames in, HTML out).

:func:`transfers_view` computes, lazily over the spooled transfers, everything the terminal and
the page show (small results only: per-recipient totals, the chart's buckets, the first rows);
:func:`transfers_page` and :func:`recalls_page` lay them out with :mod:`streams.report.html`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

import polars as pl

from streams.report import html
from streams.report.recalls import STATES, RecallsReport
from streams.report.transfers import (
    bucket_size,
    policy_versions,
    transfers_over_time,
    transfers_summary,
)


def moment(value: datetime | None) -> str:
    """Return ``value`` as ``YYYY-MM-DDTHH:MM:SSZ``, or ``-`` for none."""
    return "-" if value is None else f"{value:%Y-%m-%dT%H:%M:%S}Z"


@dataclass(frozen=True)
class TransfersView:
    """What the transfers report shows (all of it small, computed from the lazy frame).

    Attributes:
        who: The recipients asked for, in words.
        start, end: The window asked for (None: open).
        first, last: The earliest and latest ``decided_at`` of the transfers.
        total: How many transfers.
        versions: The policy versions the transfers were decided under.
        summary: Per recipient (:func:`~streams.report.transfers.transfers_summary`).
        rows: The first transfers, by ``decided_at``.
        every: The chart's bucket (``1h``, ``1d`` or ``1w``).
        over_time: ``bucket, recipient_org, photos``.
    """

    who: str
    start: datetime | None
    end: datetime | None
    first: datetime | None
    last: datetime | None
    total: int
    versions: list[str]
    summary: pl.DataFrame
    rows: pl.DataFrame
    every: str
    over_time: pl.DataFrame

    def headline(self) -> str:
        """Return the one-line summary printed above every output."""
        return (
            f"transfers to {self.who}, decided since {moment(self.start)} until"
            f" {moment(self.end)} (UTC): {self.total} (first {moment(self.first)},"
            f" last {moment(self.last)}); policy versions seen:"
            f" {', '.join(self.versions) or 'none'}"
        )


def _instant(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def transfers_view(
    frame: pl.LazyFrame,
    *,
    recipients: Sequence[str] | None,
    start: datetime | None,
    end: datetime | None,
    top: int,
) -> TransfersView:
    """Compute the :class:`TransfersView` of a lazy transfers frame."""
    summary = transfers_summary(frame)
    first = _instant(summary["first"].min()) if summary.height else None
    last = _instant(summary["last"].max()) if summary.height else None
    every = bucket_size(first, last)
    return TransfersView(
        who=", ".join(recipients) if recipients else "every recipient",
        start=start,
        end=end,
        first=first,
        last=last,
        total=int(summary["transfers"].sum()) if summary.height else 0,
        versions=policy_versions(frame),
        summary=summary,
        rows=frame.head(top).collect(),
        every=every,
        over_time=transfers_over_time(frame, every),
    )


def recall_sections(recalls: RecallsReport | None) -> list[str]:
    """Return the "recall orders by state" heading and bar chart (or why there is none)."""
    if recalls is None:
        return ["<h2>Recall orders</h2>", '<p class="note">governance.recalls does not exist.</p>']
    counts = recalls.state_counts()
    bars = [(s, counts[s], html.STATE_COLOURS[s]) for s in STATES]
    return ["<h2>Recall orders by state</h2>", html.bars_svg(bars)]


def _window(start: datetime | None, end: datetime | None) -> str:
    if start is None and end is None:
        return "all time"
    if end is None:
        return f"since {moment(start)}"
    return f"until {moment(end)}" if start is None else f"{moment(start)} → {moment(end)}"


def _generated(command: str) -> str:
    return f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z by consentinel report {command}"


def transfers_page(view: TransfersView, recalls: RecallsReport | None, source: str) -> str:
    """Return the transfers report as one offline HTML page (``source``: what was read)."""
    summary = view.summary
    meta = [
        f"<b>Window</b> (decided_at, UTC): {escape(_window(view.start, view.end))};"
        f" transfers from {escape(moment(view.first))} to {escape(moment(view.last))}",
        f"<b>Policy versions seen</b>: {escape(', '.join(view.versions) or 'none')}",
        f"<b>Source</b>: {escape(source)}",
        _generated("transfers"),
    ]
    photos = int(summary["photos"].sum()) if summary.height else 0
    not_allowed = int(summary["not_allowed"].sum()) if summary.height else 0
    cards = [
        html.Card("transfers", str(view.total)),
        html.Card("distinct photos", str(photos)),
        html.Card("recipients", str(summary.height)),
        html.Card("training reads not allowed", str(not_allowed)),
    ]
    if recalls is not None:
        counts = recalls.state_counts()
        cards.append(html.Card("recall orders overdue", str(counts["OVERDUE"])))
    per = {"1h": "hour", "1d": "day"}.get(view.every, "week")
    sections = [
        f"<h2>Transfers per recipient per {per}</h2>",
        html.stacked_bars_svg(view.over_time, view.every),
        "<h2>Per recipient</h2>",
        html.table_html(summary),
        *recall_sections(recalls),
        f"<h2>Transfers (first {view.rows.height})</h2>",
        html.table_html(_without_empty(view.rows, "model_id"), total=view.total),
    ]
    return html.page(f"Photo transfers to {view.who}", meta, cards, sections)


def _without_empty(frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    """Drop the columns of ``names`` that are null in every row (shares have no model)."""
    empty = [n for n in names if frame[n].null_count() == frame.height]
    return frame.drop(empty)


def recalls_page(
    report: RecallsReport,
    *,
    as_of: datetime,
    recipients: Sequence[str] | None,
    problems: Sequence[str],
    top: int,
) -> str:
    """Return the recalls report as one offline HTML page."""
    counts = report.state_counts()
    meta = [
        f"<b>As of</b> {escape(moment(as_of))}; orders issued and acknowledgements made later"
        " are left out",
        f"<b>Recipients</b>: {escape(', '.join(recipients) if recipients else 'all')}",
        *(f'<span class="warn">{escape(line)}</span>' for line in problems),
        _generated("recalls"),
    ]
    cards = [html.Card(s.lower(), str(counts[s])) for s in STATES]
    sections = [
        *recall_sections(report),
        "<h2>Per recipient</h2>",
        html.table_html(report.by_recipient),
        f"<h2>Orders (first {min(top, report.orders.height)})</h2>",
        html.table_html(report.orders.head(top), total=report.orders.height),
    ]
    return html.page("Recall orders", meta, cards, sections)
