"""The figures of ``BENCHMARKS.md``, drawn from one results file (and the detection evaluation).

``python -m bench.figures [RESULTS.json]`` (``make bench`` and ``make bench-quick`` call
:func:`draw` after the run). PNGs go to ``bench/results/figures/``; nothing is drawn from memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.timeline import explain, sliding_hour

FIGURES = Path(__file__).resolve().parent / "results" / "figures"

LABELS = {
    "ceiling": "ceiling\n(passthrough)",
    "gate_baseline": "gate before\n(same run)",
    "gate": "gate\n(1 process)",
    "scale_out": "gate\n(2 processes)",
    "faust_peer": "faust peer",
    "quix_peer": "Quix Streams\npeer",
    "detectors": "detectors\n(decisions/s)",
}


def _saved(plt: Any, fig: Any, out: Path) -> Path:
    """Write ``fig`` to ``out`` as a PNG, release it, and return ``out``."""
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def throughput(results: dict[str, Any], out: Path) -> Path | None:
    runs = results.get("runs", {})
    names = [n for n in LABELS if n in runs and runs[n].get("events_per_s")]
    if not names:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    values = [runs[n]["events_per_s"] for n in names]
    colors = ["#999999" if n == "ceiling" else "#4477aa" if "gate" in n or n == "scale_out"
              else "#66aa55" if n == "detectors" else "#dd8844" for n in names]  # fmt: skip
    bars = ax.bar([LABELS[n] for n in names], values, color=colors)
    for bar, name in zip(bars, names, strict=True):
        run = runs[name]
        note = f"{run['events_per_s']:,.0f}"
        if run.get("cpu_s_per_million_events"):
            note += f"\n{run['cpu_s_per_million_events']:.0f} µs CPU/event"
        if run.get("mix_ok") is False:
            note += "\nverdicts differ!"
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set_ylabel("input events per second (detectors: decisions per second)")
    ax.set_title(f"Throughput over the same backlog ({results['mode']} run, {results['date']})")
    ax.margins(y=0.25)
    return _saved(plt, fig, out)


def latency(results: dict[str, Any], out: Path) -> Path | None:
    lat = results.get("latency", {}).get("gate")
    curve = results.get("commit_curve") or []
    if not lat and not curve:
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    if lat:
        points = sorted(
            (v["offered_requests_per_s"], v.get("p50_ms"), v.get("p99_ms"), k)
            for k, v in lat.items()
            if v.get("p99_ms") is not None
        )
        xs = [p[0] for p in points]
        left.plot(xs, [p[1] for p in points], "o-", label="p50")
        left.plot(xs, [p[2] for p in points], "s-", label="p99")
        for x, _, p99, label in points:
            left.annotate(label, (x, p99), fontsize=7, xytext=(3, 3), textcoords="offset points")
        left.axhline(100, color="red", ls=":", lw=1, label="target p99 at 2,000/s")
        left.axhline(250, color="orange", ls=":", lw=1, label="target p99 at half max")
        left.set_yscale("log")
        left.set_xlabel("offered requests per second (live)")
        left.set_ylabel("send → visible to read_committed (ms)")
        left.set_title("Gate latency against offered load")
        left.legend(fontsize=7)
    if curve:
        xs = [c["commit_interval_ms"] for c in curve]
        right.plot(xs, [c.get("p99_ms_at_2000") for c in curve], "s-", label="p99 at 2,000/s")
        right.set_xlabel("commit_interval_ms")
        right.set_ylabel("p99 (ms)")
        twin = right.twinx()
        twin.plot(xs, [c.get("live_max_requests_per_s") for c in curve], "o--", color="green",
                  label="live maximum (requests/s)")  # fmt: skip
        twin.set_ylabel("live maximum, requests/s", color="green")
        right.set_title("Commit interval: p99 vs live throughput")
        right.legend(loc="upper left", fontsize=7)
        twin.legend(loc="lower right", fontsize=7)
    return _saved(plt, fig, out)


def restore(results: dict[str, Any], out: Path) -> Path | None:
    entries = results.get("restore") or []
    if not entries:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for e in entries:
        if e.get("skipped"):
            continue
        key = (e.get("state", "consent"), e["store"])
        series.setdefault(key, []).append((e["users"], e["total_s"], e["peak_rss_mb"]))
    for (state, store), points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-" if store == "memory"
                else "s--", label=f"{state}, {store}")  # fmt: skip
        for users, seconds, rss in points:
            ax.annotate(f"{rss:.0f} MB", (users, seconds), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("users restored (8 partitions, one process)")
    ax.set_ylabel("restore time (s); labels: peak RSS")
    ax.set_title("State restore: consent vs consent + recall ledgers")
    ax.legend(fontsize=8)
    return _saved(plt, fig, out)


def detection(evaluation: dict[str, Any], out: Path) -> Path | None:
    timeline = evaluation.get("timeline") or {}
    if not timeline:
        return None
    import datetime as dt

    plt = _plt()
    fig, axes = plt.subplots(len(timeline), 1, figsize=(11, 3.2 * len(timeline)), squeeze=False)

    def when(ms: int) -> Any:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)

    hour = 3_600_000
    for ax, (org, t) in zip(axes[:, 0], timeline.items(), strict=True):
        bins, series = sliding_hour(t)
        label = (
            "photos allowed out in the last 60 minutes"
            if t.get("bin_ms", hour) < hour
            else "photos allowed out per clock hour (the limit is per sliding 60 min)"
        )
        if t.get("window_ms"):  # drawn around the alerts; the sums above saw the earlier bins
            start, end = t["window_ms"]
            kept = [i for i, b in enumerate(bins) if start <= b <= end]
            bins, series = [bins[i] for i in kept], [series[i] for i in kept]
        ax.step([when(b) for b in bins], series, where="post", lw=0.8, label=label)
        ax.axhline(t["limit_per_hour"], color="red", ls=":", label="max_photos_per_hour")
        for i, ms in enumerate(t["alerts_ms"]):
            ax.axvline(
                when(ms), color="orange", lw=0.8, label="BULK_EXPORT alert" if not i else None
            )
        if t.get("alerts_threshold"):
            ax.scatter(
                [when(ms) for ms in t["alerts_ms"]],
                t["alerts_threshold"],
                marker="_",
                s=120,
                color="orange",
                label="threshold in force at the alert (limit or learned)",
            )
        told = explain(t)
        for i, c in enumerate(told["crossings"]):
            ax.scatter([when(c["minute_ms"])], [t["limit_per_hour"]], marker="v", color="red",
                       zorder=3, label="line crosses the limit" if not i else None)  # fmt: skip
            ax.annotate(_crossing_note(c), (when(c["minute_ms"]), t["limit_per_hour"]),
                        fontsize=7, color="red", xytext=(4, 6 + 9 * (i % 3)),
                        textcoords="offset points")  # fmt: skip
        for a in told["alerts"]:
            mark = "L" if a["trigger"] == "limit" else "B"
            count = a["observed"] if a["observed"] is not None else t["limit_per_hour"]
            ax.annotate(mark if a["explained"] else mark + "?", (when(a["at_ms"]), count),
                        fontsize=7, color="darkorange", xytext=(2, -10),
                        textcoords="offset points")  # fmt: skip
        for i, ms in enumerate(t["suspended_ms"]):
            ax.axvline(when(ms), color="black", ls="--", lw=1, label="suspended" if not i else None)
        for i, ms in enumerate(t["resumed_ms"]):
            ax.axvline(when(ms), color="green", ls="--", lw=0.8, label="resumed" if not i else None)
        ax.set_title(f"{org}: photos out per hour against its limit")
        ax.set_ylabel("photos / hour")
        ax.set_ylim(0, max([*series, t["limit_per_hour"]]) * 1.35)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    source = evaluation.get("source") or "the detection evaluation (simulated time)"
    fig.suptitle(
        f"Detection timeline of {evaluation.get('date')}: {source}, UTC\nalerts marked L (limit)"
        " or B (learned baseline), ? where the line does not account for the count",
        fontsize=9,
    )
    return _saved(plt, fig, out)


def _crossing_note(crossing: dict[str, Any]) -> str:
    """``crossed HH:MM, first alert +Δ`` (event time, UTC) for one crossing of the limit."""
    import datetime as dt

    at = dt.datetime.fromtimestamp(crossing["minute_ms"] / 1000, dt.UTC).strftime("%H:%M")
    after = crossing["alert_after_s"]
    episode = crossing.get("episode_alert_ms")
    if after is None and episode is not None:
        alerted = dt.datetime.fromtimestamp(episode / 1000, dt.UTC).strftime("%H:%M")
        return f"crossed {at} again, in the episode of the {alerted} alert (one per episode)"
    if after is None:
        return f"crossed {at}, no alert after"
    if after < 120:
        return f"crossed {at}, first alert +{after:.0f} s"
    if after < 7200:
        return f"crossed {at}, first alert +{after / 60:.0f} min"
    return f"crossed {at}, first alert +{after / 3600:.1f} h"


def detection_source(results: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """The timeline to draw: this run's detectors step's when it raised a ``BULK_EXPORT`` alert,
    else the latest results file's whose detectors step did (a full run: a quick run's input
    crosses no limit), else this run's, else the latest detection evaluation's."""
    own = results.get("detection_timeline")
    if alerted(own):
        return dict(own or {})
    other = latest_alerted_run(results_dir)
    if other is not None:
        return dict(other["detection_timeline"])
    return own or latest_detection(results_dir) or {}


def alerted(timeline: dict[str, Any] | None) -> bool:
    """Whether a detectors step's timeline holds a ``BULK_EXPORT`` alert."""
    return any(t.get("alerts_ms") for t in ((timeline or {}).get("timeline") or {}).values())


def latest_alerted_run(results_dir: Path) -> dict[str, Any] | None:
    """Return the latest ``bench.run`` results whose detectors step raised ``BULK_EXPORT``."""
    for path in sorted(results_dir.glob("20*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and alerted(data.get("detection_timeline")):
            return dict(data)
    return None


def latest_detection(results_dir: Path) -> dict[str, Any] | None:
    files = sorted(results_dir.glob("detection-*.json"))
    for path in reversed(files):
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("timeline"):
            return data
    return None


def draw(results: dict[str, Any], results_dir: Path) -> dict[str, str]:
    """Draw every figure the results allow; return name -> path (relative to the repository)."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    results_dir = results_dir.resolve()
    repo = results_dir.parents[1] if results_dir.name == "results" else results_dir
    drawn = {}
    for name, make, source in (
        ("throughput", throughput, results),
        ("latency", latency, results),
        ("restore", restore, results),
        ("detection", detection, detection_source(results, results_dir)),
    ):
        path = make(source, FIGURES / f"{name}.png")
        if path is not None:
            drawn[name] = str(path.relative_to(repo))
    return drawn


def main(argv: list[str]) -> int:
    results_dir = FIGURES.parent
    path = Path(argv[0]) if argv else max(results_dir.glob("20*.json"))
    print(draw(json.loads(path.read_text()), results_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
