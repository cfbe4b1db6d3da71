"""A single offline HTML file for the regulator reports, charts drawn here as inline SVG.

No script, no web font, no CDN: the file opens the same on an air-gapped machine and prints.
Charts: :func:`stacked_bars_svg` (transfers per recipient over time, one stacked bar per hour or
day) and :func:`bars_svg` (recall orders by state). Colours are fixed (:data:`SERIES_COLOURS`,
:data:`STATE_COLOURS`) so that a reader learns them once and a test can look for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from typing import Any, Final

import polars as pl

SERIES_COLOURS: Final = (
    "#2563eb",  # blue
    "#ea580c",  # orange
    "#059669",  # green
    "#9333ea",  # purple
    "#db2777",  # pink
    "#0891b2",  # cyan
    "#ca8a04",  # ochre
    "#4b5563",  # grey: also "other recipients"
)
"""Colours of the recipients in the transfers chart, in the order of their totals."""

STATE_COLOURS: Final = {
    "OPEN": "#3b82f6",
    "PARTIAL": "#f59e0b",
    "OVERDUE": "#dc2626",
    "ACKNOWLEDGED": "#16a34a",
}
"""The colour of each recall state."""

_STEP: Final = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "1w": timedelta(weeks=1)}
_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;
 margin:0;background:#f3f4f6}
main{max-width:1200px;margin:0 auto;padding:24px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;color:#111827}
.meta{color:#4b5563;margin:2px 0}.meta b{color:#111827}
.meta.gen{color:#9ca3af;font-size:12px;margin-top:6px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:120px}
.card .n{font-size:22px;font-weight:600}.card .l{color:#6b7280;font-size:12px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:11.5px;margin-top:6px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 5px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;white-space:nowrap}td.t{white-space:nowrap}
tr:nth-child(even) td{background:#fcfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#6b7280;font-size:12px}.warn{color:#b91c1c}
svg text{font:11px system-ui,sans-serif;fill:#374151}
"""


@dataclass(frozen=True)
class Card:
    """A headline number."""

    label: str
    value: str


def axis_peak(value: float) -> float:
    """Return the top of a y axis with four gridlines for data up to ``value``.

    Counts get whole-number gridlines: the top is four times a round whole step.
    """
    if value <= 0:
        return 4.0
    step = nice_ceiling(value / 4)
    return 4 * max(1.0, float(math.ceil(step)))


def nice_ceiling(value: float) -> float:
    """Return a round number at or above ``value`` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return 10.0 * power


def _axis(height: int, top: int, left: int, width: int, peak: float) -> list[str]:
    """Horizontal grid lines and y labels for values 0..peak."""
    parts = []
    for i in range(5):
        value = peak * i / 4
        y = top + height - height * i / 4
        label = f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    return parts


def _buckets(first: datetime, last: datetime, every: str) -> list[datetime]:
    step, at = _STEP[every], first
    out: list[datetime] = []
    while at <= last and len(out) < 2000:
        out.append(at)
        at += step
    return out


def stacked_bars_svg(series: pl.DataFrame, every: str, *, width: int = 960) -> str:
    """Return an SVG of ``bucket, recipient_org, photos`` as stacked bars (one per bucket).

    Recipients beyond the palette's first seven (by total) are drawn together as ``other``.
    """
    if series.is_empty():
        return '<p class="note">No transfers in this window.</p>'
    totals = (
        series.group_by("recipient_org")
        .agg(pl.col("photos").sum())
        .sort("photos", "recipient_org", descending=[True, False])
    )
    names = totals["recipient_org"].to_list()
    shown = names if len(names) <= len(SERIES_COLOURS) else names[: len(SERIES_COLOURS) - 1]
    colour = {name: SERIES_COLOURS[i] for i, name in enumerate(shown)}
    other = "other recipients" if len(shown) < len(names) else None
    cells: dict[tuple[datetime, str], int] = {}
    for bucket, org, photos in series.select("bucket", "recipient_org", "photos").iter_rows():
        key = (bucket, org if org in colour else str(other))
        cells[key] = cells.get(key, 0) + int(photos)
    legend_names = [*shown, *([other] if other else [])]
    buckets = _buckets(series["bucket"].min(), series["bucket"].max(), every)  # type: ignore[arg-type]
    stacks = [sum(cells.get((b, n), 0) for n in legend_names) for b in buckets]
    left, top, plot_w, plot_h = 56, 16, width - 72, 220
    peak = axis_peak(max(stacks))
    slot = plot_w / len(buckets)
    bar = max(1.0, slot * 0.78)
    parts = _axis(plot_h, top, left, plot_w, peak)
    for i, bucket in enumerate(buckets):
        y = float(top + plot_h)
        x = left + i * slot + (slot - bar) / 2
        for name in legend_names:
            value = cells.get((bucket, name), 0)
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            fill = colour.get(name, SERIES_COLOURS[-1])
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{fill}">'
                f"<title>{escape(name)} {bucket:%Y-%m-%d %H:%M}: {value}</title></rect>"
            )
    label_every = max(1, math.ceil(len(buckets) / 12))
    fmt = "%m-%d %H:00" if every == "1h" else "%Y-%m-%d"
    for i in range(0, len(buckets), label_every):
        x = left + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{buckets[i].strftime(fmt)}</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' stroke="#9ca3af"/>'
    )
    legend_y = top + plot_h + 40
    x = float(left)
    for name in legend_names:
        fill = colour.get(name, SERIES_COLOURS[-1])
        parts.append(
            f'<rect x="{x:.0f}" y="{legend_y - 10}" width="12" height="12" rx="2" fill="{fill}"/>'
            f'<text x="{x + 17:.0f}" y="{legend_y}">{escape(name)}</text>'
        )
        x += 30 + 7 * len(name)
    height = legend_y + 12
    return _svg(width, height, "transfers per recipient over time", parts)


def bars_svg(values: Sequence[tuple[str, int, str]], *, width: int = 960) -> str:
    """Return an SVG bar chart of ``(label, value, colour)`` (one bar per label)."""
    left, top, plot_w, plot_h = 56, 16, width - 72, 180
    peak = axis_peak(max((v for _, v, _ in values), default=0))
    slot = plot_w / max(1, len(values))
    bar = min(120.0, slot * 0.6)
    parts = _axis(plot_h, top, left, plot_w, peak)
    for i, (label, value, fill) in enumerate(values):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" rx="3"'
            f' fill="{fill}"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{x + bar / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle"'
            f' font-weight="600">{value}</text>'
            f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}"'
        ' stroke="#9ca3af"/>'
    )
    return _svg(width, top + plot_h + 28, "recall orders by state", parts)


def _svg(width: int, height: int, label: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        + "".join(parts)
        + "</svg>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="note">-</td>'
    if isinstance(value, datetime):
        return f'<td class="t">{value:%Y-%m-%d %H:%M:%S}Z</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, int | float):
        return f'<td class="num">{value:g}</td>'
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:6]) + (" …" if len(value) > 6 else "")
        return f"<td>{escape(shown) or '-'}</td>"
    return f"<td>{escape(str(value))}</td>"


def table_html(frame: pl.DataFrame, *, total: int | None = None) -> str:
    """Return an HTML table of ``frame`` with a note when it shows only the first of ``total``."""
    head = "".join(f"<th>{escape(name)}</th>" for name in frame.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.iter_rows())
    note = ""
    if total is not None and total > frame.height:
        note = (
            f'<p class="note">The first {frame.height} of {total} rows; '
            "use --format csv or parquet for all of them.</p>"
        )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>{note}'


def page(title: str, meta: Sequence[str], cards: Sequence[Card], sections: Sequence[str]) -> str:
    """Return the whole HTML document (``meta`` lines and ``sections`` are already HTML).

    The last ``meta`` line is shown smaller (who generated the page, and when).
    """
    card_html = "".join(
        f'<div class="card"><div class="n">{escape(c.value)}</div>'
        f'<div class="l">{escape(c.label)}</div></div>'
        for c in cards
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        + "".join(f'<p class="meta">{line}</p>' for line in meta[:-1])
        + "".join(f'<p class="meta gen">{line}</p>' for line in meta[-1:])
        + f'<div class="cards">{card_html}</div>'
        + "".join(sections)
        + "</main></body></html>\n"
    )
