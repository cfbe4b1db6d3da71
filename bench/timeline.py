"""The detection timeline: photos allowed out per recipient against its bulk-export limit.

Pure functions over decoded records, shared by the benchmark's detectors step (records read back
from Kafka) and the in-process detection evaluation (:mod:`bench.detection_eval`); the figure
(:func:`bench.figures.detection`) sums the per-minute bins over a sliding 60 minutes, as the
limit is defined.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from streams.core.policy import Policy

MINUTE_MS = 60_000
HOUR_MS = 3_600_000

PhotosOut = Counter[tuple[str, int]]
"""(recipient, minute since the epoch) → photos allowed out in that minute."""


def count_allowed(
    decisions: Iterable[Mapping[str, Any]], into: PhotosOut | None = None
) -> PhotosOut:
    """Count the ``ALLOW`` decisions per recipient and minute of ``decided_at``."""
    counts: PhotosOut = Counter() if into is None else into
    for decision in decisions:
        if decision["verdict"] == "ALLOW":
            counts[(decision["recipient_org"], int(decision["decided_at"]) // MINUTE_MS)] += 1
    return counts


def timeline(
    policy: Policy,
    photos_out: PhotosOut,
    alerts: Iterable[Mapping[str, Any]],
    controls: Iterable[Mapping[str, Any]],
    *,
    only_alerted: bool = False,
    most: int | None = None,
    before_alert_ms: int | None = None,
) -> dict[str, Any]:
    """Per recipient with a bulk-export limit: its photos out per minute, the limit, its
    ``BULK_EXPORT`` alerts and its suspensions and resumptions (times in epoch ms).

    ``only_alerted`` keeps the recipients with at least one alert; ``most`` keeps that many,
    the most alerted first (then by name). With ``before_alert_ms``, an alerted recipient's
    entry gets a ``window_ms`` to draw: from that long before its first alert to its last bin.
    """
    alerts = [a for a in alerts if a["kind"] == "BULK_EXPORT"]
    controls = list(controls)
    out: dict[str, Any] = {}
    for org in sorted({org for org, _ in photos_out}):
        recipient = policy.recipient(org)
        limit = None if recipient is None else recipient.bulk_export
        if limit is None:
            continue
        own = [a for a in alerts if a["subject"] == org]
        raised = [int(a["raised_at"]) for a in own]
        if only_alerted and not raised:
            continue
        minutes = sorted((m, n) for (o, m), n in photos_out.items() if o == org)
        out[org] = {
            "limit_per_hour": limit.max_photos_per_hour,
            "bin_ms": MINUTE_MS,
            "bin_start_ms": [m * MINUTE_MS for m, _ in minutes],
            "photos": [n for _, n in minutes],
            "alerts_ms": raised,
            # what the detector saw when it alerted, and the threshold then in force (the lower
            # of the policy's limit and the recipient's learned normal volume)
            "alerts_observed": [float(a["observed"]) for a in own],
            "alerts_threshold": [float(a["threshold"]) for a in own],
            "suspended_ms": _control_times(controls, "SUSPEND_RECIPIENT", org),
            "resumed_ms": _control_times(controls, "RESUME_RECIPIENT", org),
        }
        if before_alert_ms is not None and raised and minutes:
            last_bin_end = (minutes[-1][0] + 1) * MINUTE_MS
            out[org]["window_ms"] = [min(raised) - before_alert_ms, last_bin_end]
    if most is not None:
        ranked = sorted(out, key=lambda org: (-len(out[org]["alerts_ms"]), org))[:most]
        out = {org: out[org] for org in sorted(ranked)}
    return out


def _control_times(controls: list[Mapping[str, Any]], kind: str, org: str) -> list[int]:
    return [int(c["at"]) for c in controls if c["kind"] == kind and c["recipient_org"] == org]


def sliding_hour(entry: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Return every bin start of a timeline entry (empty bins included) and the photos allowed
    out in the 60 minutes ending with each bin (per clock hour for hourly bins)."""
    step = entry.get("bin_ms", HOUR_MS)
    counts = dict(
        zip(entry.get("bin_start_ms") or entry["hour_start_ms"], entry["photos"], strict=True)
    )
    if not counts:
        return [], []
    bins = list(range(min(counts), max(counts) + step, step))
    series = [counts.get(b, 0) for b in bins]
    if step >= HOUR_MS:
        return bins, series
    width = HOUR_MS // step
    total, rolling = 0, []
    for i, value in enumerate(series):
        total += value - (series[i - width] if i >= width else 0)
        rolling.append(total)
    return bins, rolling


def first_crossing(entry: Mapping[str, Any]) -> int | None:
    """Return the end of the first bin whose sliding hour is above the policy's limit (epoch ms),
    or None if the photos out never exceeded it."""
    step = entry.get("bin_ms", HOUR_MS)
    for start, volume in zip(*sliding_hour(entry), strict=True):
        if volume > entry["limit_per_hour"]:
            return int(start + step)
    return None


def crossings(entry: Mapping[str, Any]) -> list[int]:
    """Return the start of every minute in which the sliding hour rose above the policy's limit
    (from at or below it in the minute before; epoch ms)."""
    out: list[int] = []
    above = False
    for start, volume in zip(*sliding_hour(entry), strict=True):
        now_above = volume > entry["limit_per_hour"]
        if now_above and not above:
            out.append(start)
        above = now_above
    return out


REARM_FRACTION = 0.5
"""The detector's default ``rearm_fraction``: an episode ends when the volume falls below it."""


def _episode_of(
    start: int, raised: list[tuple[int, Any, Any]], line: Mapping[int, int], limit: int
) -> int | None:
    """Return the alert (epoch ms) whose episode the crossing at minute ``start`` falls in: the
    last alert before it, if the line stayed at or above its re-arm level since."""
    before = [r for r in raised if r[0] < start]
    if not before:
        return None
    at, _, threshold = before[-1]
    rearm = REARM_FRACTION * float(threshold if threshold is not None else limit)
    minute = at - at % MINUTE_MS
    return at if all(v >= rearm for m, v in line.items() if minute <= m < start) else None


def explain(entry: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Explain a timeline entry's ``BULK_EXPORT`` alerts from its own line (minute bins).

    ``crossings``: each minute the line rose above the limit, with the first alert at or after
    it (event time), and ``episode_alert_ms``: the alert whose episode it falls in, if any (an
    alert before it, after which the line never fell below :data:`REARM_FRACTION` of that
    alert's threshold: the detector raises one alert per episode, so none is due).

    ``alerts``: per alert, its trigger (``limit`` when its threshold is the policy's limit, else
    ``learned``), and whether the line accounts for it. The detector's
    count at an alert in minute ``m`` is the sliding hour up to the alerting decision, so it
    lies between the line at ``m`` without minute ``m`` and the line at ``m``; a count outside
    those bounds, or not above its threshold, is not explained by the line (an under-count,
    as before the detectors merged their partitions, falls below them).
    """
    step = entry.get("bin_ms", HOUR_MS)
    bins, hour = sliding_hour(entry)
    line = dict(zip(bins, hour, strict=True))
    own = dict(zip(entry.get("bin_start_ms") or [], entry["photos"], strict=True))
    limit = entry["limit_per_hour"]
    raised = sorted(
        zip(
            entry["alerts_ms"],
            entry.get("alerts_observed") or [None] * len(entry["alerts_ms"]),
            entry.get("alerts_threshold") or [None] * len(entry["alerts_ms"]),
            strict=True,
        )
    )
    crossed = crossings(entry) if step < HOUR_MS else []
    out_crossings = []
    for start in crossed:
        after = [at for at, _, _ in raised if at >= start]
        out_crossings.append(
            {
                "minute_ms": start,
                "first_alert_ms": after[0] if after else None,
                "alert_after_s": (after[0] - start) / 1000 if after else None,
                "episode_alert_ms": _episode_of(start, raised, line, limit),
            }
        )
    out_alerts = []
    for at, observed, threshold in raised:
        minute = at - at % step
        upper = line.get(minute, 0)
        lower = upper - own.get(minute, 0)
        static = threshold is not None and float(threshold) == float(limit)
        explained = (
            observed is not None
            and threshold is not None
            and lower <= observed <= upper
            and observed > threshold
        )
        out_alerts.append(
            {
                "at_ms": at,
                "trigger": "limit" if static else "learned",
                "observed": observed,
                "threshold": threshold,
                "line_bounds": [lower, upper],
                "explained": explained,
            }
        )
    return {"crossings": out_crossings, "alerts": out_alerts}
