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
