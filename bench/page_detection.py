"""The BENCHMARKS.md page's note under its figures: where the detection timeline comes from.

From this run's detectors step (each crossing of the policy's limit with the first alert after
it, and what explains each alert, as sentences), or else from the latest
``bench/results/detection-*.json`` with a timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.page_format import num
from bench.timeline import explain


def detection_note(data: dict[str, Any], results_dir: Path) -> str:
    from bench.figures import alerted, latest_alerted_run

    own = data.get("detection_timeline")
    where = "this run's detectors step"
    other = None if alerted(own) else latest_alerted_run(results_dir)
    if other is not None:  # as the figure (bench.figures.detection_source) draws it
        where = (
            f"the detectors step of the {other.get('mode')} run of {other.get('date')}"
            f" (steps: {', '.join(other.get('partial_steps') or ['all'])}; code"
            f" {other.get('code', 'not recorded')}), since this run's raised no `BULK_EXPORT`"
        )
        own = other["detection_timeline"]
    if own:
        seen = [_crossing_sentence(org, t) for org, t in (own.get("timeline") or {}).items()]
        return (
            f"The detection timeline comes from {where}: the gate's decisions"
            " (decided at the stream's event time), read back with the detectors' alerts and"
            f" controls; the {len(own.get('timeline') or {})} recipient(s) with the most"
            " `BULK_EXPORT` alerts, drawn from 3 hours before the first. The line counts every"
            " `ALLOW` by decision time over a sliding 60 minutes. The detectors read the decisions"
            " after the gate made them, so a suspension shows when it was written and does not"
            " hold those decisions."
            + "".join(seen)
            + " The threshold is the lower of the policy's limit and the learned baseline (at"
            " least 100 per hour). The detector merges the gate's 8 decision partitions by"
            " `decided_at` (contract §5), so it counts what the line counts: an alert whose count"
            " the line does not bracket is flagged. The detectors step copies only the gate's"
            " backlog decisions (not the latency phases' live traffic)."
            " Recall and false alerts per scenario come from"
            " `python -m bench.detection_eval` (docs/detection-quality.md)."
        )
    from bench.figures import latest_detection

    evaluation = latest_detection(results_dir) or {}
    c = evaluation.get("config") or {}
    return (
        f"The detection timeline is drawn from the latest `bench/results/detection-*.json` with a"
        f" timeline ({evaluation.get('date')}: {c.get('days')} simulated days, {c.get('rate')}"
        f" background events/s, {c.get('users')} users, {evaluation.get('wall_s')} s of wall"
        " time), written by `python -m bench.detection_eval`, which drives the real gate and"
        " detector topologies in-process: this results file has no detectors step. Allowed"
        " photos are counted by decision time; the limit is per sliding 60 minutes."
    )


def _crossing_sentence(org: str, t: dict[str, Any]) -> str:
    """Each crossing of the policy's limit with the first alert after it (event time), and what
    explains each alert (:func:`bench.timeline.explain`), as sentences."""
    told = explain(t)
    text = f" {org}: {len(t['alerts_ms'])} `BULK_EXPORT` alert(s)."
    crossed = told["crossings"]
    if not crossed:
        text += f" The line never exceeded the limit of {t['limit_per_hour']:,}/hour."
    for c in crossed:
        text += (
            f" The line exceeded {t['limit_per_hour']:,}/hour in the minute {_utc(c['minute_ms'])}"
        )
        after, episode = c["alert_after_s"], c.get("episode_alert_ms")
        if after is None and episode is not None:
            text += (
                f", within the episode of the alert of {_utc(episode)} (the line never fell"
                " below half its threshold since: one alert per episode)."
            )
        else:
            text += "; no alert followed." if after is None else f"; first alert {_later(after)}."
    for a in told["alerts"]:
        what = "the limit" if a["trigger"] == "limit" else "the learned baseline"
        low, high = a["line_bounds"]
        verdict = "" if a["explained"] else "; NOT explained by the line"
        text += (
            f" Alert at {_utc(a['at_ms'])}: {num(a['observed'])} photos counted, above {what}"
            f" ({num(a['threshold'])}); the line allows {num(low)}-{num(high)} there{verdict}."
        )
    return text


def _later(seconds: float) -> str:
    """``12 s later``, ``5 min later``, ``12.3 hours later`` (event time)."""
    if seconds < 120:
        return f"{seconds:.0f} s later"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min later"
    return f"{seconds / 3600:.1f} hours later"


def _utc(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
