"""Detection quality: every injectable scenario over a simulated week, without Kafka.

Run ``python -m bench.detection_eval [--days 7] [--seed N]``. The simulator's workload
(:class:`streams.simulate.workload.Workload`: a realistic background with its daily rhythm and
nightly training jobs) gets each scenario injected several times. Every event is written, in the
order and at the moment the simulator emits it, to an in-memory broker on which the service's
own gate and detector topologies run (:class:`~streams.runtime.testing.TopologyDriver`, the
runtime's semantics without Kafka): the gate decides it in its own transaction, the detector
reads the committed decisions and training reads through its two stages, and a
``SUSPEND_RECIPIENT`` it writes reaches the gate's controls table before the next event; a
modelled operator resumes the recipient ``--resume-after`` minutes later. So the evaluation and
the service cannot differ: inputs the gate refuses (dead letters) are refused here too.

Alerts are matched to the simulator's ground truth (same kind and subject, raised between the
injection's start and its end plus a grace period). Reported per alert kind: recall (injected
episodes with at least one matching alert), false alerts (matching no injection) per simulated
day, and the event time from the ground truth's crossing to the alert (p50, max); for injections
without a defined crossing (``slow-drip``: only the learned baseline can catch it) the time from
the injection's start instead. Results go to ``bench/results/detection-<date>.json``; the table is
printed as markdown.
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import platform
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.timeline import PhotosOut, count_allowed, timeline
from streams import topics
from streams.core.policy import Policy, load_policy
from streams.core.times import iso_moment
from streams.runtime.testing import ManualClock, TopologyDriver
from streams.simulate.engine import GroundTruth, SimEvent
from streams.simulate.scenarios import ScenarioSpec
from streams.simulate.workload import Workload, WorkloadConfig
from streams.testing.topologies import detector_driver, gate_driver

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "deploy" / "policy.example.yaml"
RESULTS = REPO / "bench" / "results"
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
KINDS = ("BULK_EXPORT", "DENIED_BURST", "UNCONSENTED_TRAINING", "RETROACTIVE_VIOLATION")
GRACE_MS = 30 * MINUTE
"""An alert raised up to this long after an injection ended still belongs to it."""
SLOTS = (6, 12, 18)
"""Injections start in the 3.5 hours after these hours (UTC); 00-06 is left to nightly jobs."""
WARMUP_DAYS = 3
"""``slow-drip`` is injected only after this many days: the learned baseline needs them."""

OPERATOR = "operator:detection-eval"
"""The actor of the modelled operator's ``RESUME_RECIPIENT`` controls."""

_TOPIC_OF = {
    "upload": topics.TOPIC_PHOTO_UPLOADS,
    "consent": topics.TOPIC_CONSENT_CHANGES,
    "share": topics.TOPIC_SHARE_REQUESTS,
    "training_read": topics.TOPIC_TRAINING_READS,
}


def schedule(days: int, seed: int) -> list[ScenarioSpec]:
    """Return the injections: one per slot (three a day), every scenario several times a week.

    ``slow-drip`` takes one slot a day after the warm-up; the other slots cycle through a seeded
    shuffle of ``bulk-2014``, ``probe`` and ``revoke-after-training``.
    """
    rng = random.Random(f"detection-eval/{seed}")
    pool: list[str] = []
    specs = []
    for day in range(days):
        drip_slot = rng.randrange(len(SLOTS)) if day >= WARMUP_DAYS else -1
        for index, hour in enumerate(SLOTS):
            if index == drip_slot:
                name = "slow-drip"
            else:
                if not pool:
                    pool = ["bulk-2014", "probe", "revoke-after-training"]
                    rng.shuffle(pool)
                name = pool.pop()
            offset = day * DAY + hour * HOUR + rng.randint(30, 210) * MINUTE
            specs.append(ScenarioSpec(name, offset))
    return specs


@dataclass
class Episode:
    """One ground-truth record and the alerts matched to it."""

    truth: GroundTruth
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def matches(self, alert: dict[str, Any]) -> bool:
        t = self.truth
        return bool(
            alert["kind"] == t.expected_alert
            and alert["subject"] == t.subject
            and t.start_ms <= alert["raised_at"] <= t.end_ms + GRACE_MS
        )

    def involves(self, alert: dict[str, Any]) -> bool:
        """Whether ``alert`` names a party of this injection during it (a side effect)."""
        t = self.truth
        parties = {t.subject} | {
            str(t.details[k])
            for k in ("job_id", "requester", "recipient", "org")
            if t.details.get(k)
        }
        return (
            alert["subject"] in parties and t.start_ms <= alert["raised_at"] <= t.end_ms + GRACE_MS
        )

    def to_json(self) -> dict[str, Any]:
        first = self.alerts[0] if self.alerts else None
        t = self.truth
        return {
            "scenario": t.scenario,
            "kind": t.expected_alert,
            "subject": t.subject,
            "start": iso_moment(t.start_ms),
            "end": iso_moment(t.end_ms),
            "crossing": iso_moment(t.crossing_ms) if t.crossing_ms else None,
            "detected": first is not None,
            "raised_at": iso_moment(first["raised_at"]) if first else None,
            "crossing_to_alert_s": _seconds(first, t.crossing_ms),
            "start_to_alert_s": _seconds(first, t.start_ms),
            "alerts": len({a["alert_id"] for a in self.alerts}),
            "details": {k: v for k, v in t.details.items() if k != "decisions"},
        }


def _seconds(alert: dict[str, Any] | None, since_ms: int | None) -> float | None:
    if alert is None or since_ms is None:
        return None
    return (int(alert["raised_at"]) - since_ms) / 1000


class Evaluation:
    """The gate and the detector topologies on one in-memory broker, fed simulated events.

    Both run on :class:`~streams.runtime.testing.TopologyDriver` exactly as the service runs
    them on Kafka (:func:`~streams.testing.topologies.gate_driver`,
    :func:`~streams.testing.topologies.detector_driver`): the gate decides each event in its own
    transaction, the detector reads the committed decisions and training reads through its two
    stages, and the ``SUSPEND_RECIPIENT`` controls it writes reach the gate through its
    ``governance.controls`` table before the next event. The clock is the simulated time.
    """

    def __init__(self, policy: Policy, resume_after_ms: int) -> None:
        self.resume_after_ms = resume_after_ms
        self.clock = ManualClock(0)  # set to each event's emit time (history comes before start)
        self.gate = gate_driver(policy, partitions=1, clock=self.clock)
        self.broker = self.gate.broker
        self.detector = detector_driver(
            policy, partitions=1, codec=self.gate.codec, clock=self.clock, broker=self.broker
        )
        self.alerts: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []
        self.verdicts: Counter[tuple[str, str]] = Counter()
        self.predicted_mismatch: Counter[tuple[str, str]] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.photos_out: PhotosOut = Counter()
        self._alert_ids: set[str] = set()
        self._read: dict[str, int] = {}
        self._resumes: list[tuple[int, str]] = []
        self._events = 0

    def feed(self, event: SimEvent) -> None:
        """Write one event, let the gate and then the detector process what it leads to."""
        self.clock.advance(max(event.emit_at - self.clock(), 0))
        self._resume_due()
        topic = _TOPIC_OF[event.kind]
        record = _record(self.gate, topic, event.fields)
        self.gate.feed(topic, event.key, record, timestamp_ms=event.emit_at)
        self.gate.run()
        self.detector.run()
        for decision in self._take(topics.TOPIC_DECISIONS):
            self.verdicts[(decision["verdict"], decision["reason"])] += 1
            count_allowed([decision], into=self.photos_out)
            if event.verdict is not None and event.verdict != decision["verdict"]:
                self.predicted_mismatch[(event.verdict, decision["reason"])] += 1
        for alert in self._take(topics.TOPIC_ALERTS):
            if alert["alert_id"] not in self._alert_ids:  # later records are the alert's updates
                self._alert_ids.add(alert["alert_id"])
                self.alerts.append(alert)
        for control in self._take(topics.TOPIC_CONTROLS):
            if control["actor"] == OPERATOR:
                continue
            self.controls.append(control)
            if control["kind"] == "SUSPEND_RECIPIENT":
                due = event.emit_at + self.resume_after_ms
                heapq.heappush(self._resumes, (due, control["recipient_org"]))
        for letter in self._take(topics.TOPIC_DLQ):
            self.dead_letters[f"{letter['source_topic']}/{letter['error_kind']}"] += 1
        self._events += 1
        if self._events % 5000 == 0:
            self._trim()

    def _take(self, topic: str) -> list[dict[str, Any]]:
        """Return the records committed to ``topic`` since the last call."""
        records = self.broker.records(topic, self._read.get(topic, 0))
        self._read[topic] = self._read.get(topic, 0) + len(records)
        return [self.gate.codec.decode(topic, record.value) for record in records]

    def _trim(self) -> None:
        """Let retention and compaction bound memory: both drivers have read these records.

        (Not the controls: the gate applies the detector's at its next turn.)
        """
        spec, detector = self.gate.spec, self.detector.spec
        done = {*spec.sources, *spec.outputs, *detector.sources} - {topics.TOPIC_CONTROLS}
        self.broker.delete_records(done)
        for topic in done:
            self._read.pop(topic, None)
        self.broker.compact([spec.changelog, detector.changelog])

    def _resume_due(self) -> None:
        while self._resumes and self._resumes[0][0] <= self.clock():
            at, org = heapq.heappop(self._resumes)
            resume = {
                "control_id": f"resume-{org}-{at}",
                "at": at,
                "kind": "RESUME_RECIPIENT",
                "recipient_org": org,
                "reason": "resumed by the modelled operator",
                "actor": OPERATOR,
            }
            self.controls.append(resume)
            self.gate.control(topics.TOPIC_CONTROLS, org, resume)


def _record(driver: TopologyDriver[Any], topic: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Return the Avro record the SDK writes for ``fields`` (absent fields take their default)."""
    schema = driver.codec.catalog.for_topic(topic).raw["fields"]
    return {f["name"]: fields.get(f["name"], f.get("default")) for f in schema}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


def summarise(
    episodes: list[Episode],
    false_alerts: list[dict[str, Any]],
    side_effects: list[dict[str, Any]],
    days: float,
) -> dict[str, Any]:
    """Return the figures per alert kind."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        mine = [e for e in episodes if e.truth.expected_alert == kind]
        detected = [e for e in mine if e.alerts]
        crossing = [
            (e.alerts[0]["raised_at"] - e.truth.crossing_ms) / 1000
            for e in detected
            if e.truth.crossing_ms is not None
        ]
        from_start = [(e.alerts[0]["raised_at"] - e.truth.start_ms) / 1000 for e in detected]
        false = [a for a in false_alerts if a["kind"] == kind]
        side = [a for a in side_effects if a["kind"] == kind]
        out[kind] = {
            "episodes": len(mine),
            "detected": len(detected),
            "recall": len(detected) / len(mine) if mine else None,
            "false_alerts": len(false),
            "false_alerts_per_day": len(false) / days,
            "side_effect_alerts": len(side),
            "crossing_to_alert_s": {
                "n": len(crossing),
                "p50": _percentile(crossing, 0.5),
                "max": max(crossing) if crossing else None,
            },
            "start_to_alert_s": {
                "n": len(from_start),
                "p50": _percentile(from_start, 0.5),
                "max": max(from_start) if from_start else None,
            },
            "alerts_per_detected_episode": (
                statistics.mean(len({a["alert_id"] for a in e.alerts}) for e in detected)
                if detected
                else None
            ),
        }
    return out


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.0f} min"


def markdown(per_kind: dict[str, Any], days: float) -> str:
    """Return the results table."""
    lines = [
        "| alert kind | injected episodes | detected | recall | false alerts"
        f" ({days:g} days) | false alerts / day | crossing → alert p50 / max"
        " | injection start → alert p50 / max | alerts per detected episode"
        " | side-effect alerts |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for kind, k in per_kind.items():
        recall = "-" if k["recall"] is None else f"{k['recall']:.0%}"
        cross, start = k["crossing_to_alert_s"], k["start_to_alert_s"]
        per = k["alerts_per_detected_episode"] or 0.0
        cross_text = (
            f"{_fmt_s(cross['p50'])} / {_fmt_s(cross['max'])} (n={cross['n']})"
            if cross["n"]
            else "- (no crossing defined)"
        )
        lines.append(
            f"| `{kind}` | {k['episodes']} | {k['detected']} | {recall} | {k['false_alerts']}"
            f" | {k['false_alerts_per_day']:.2f} | {cross_text}"
            f" | {_fmt_s(start['p50'])} / {_fmt_s(start['max'])}"
            f" | {per:.2f} | {k['side_effect_alerts']} |"
        )
    return "\n".join(lines)


def evaluate(
    *,
    days: int,
    seed: int,
    rate: float,
    users: int,
    policy_path: Path,
    resume_after_min: float,
) -> dict[str, Any]:
    """Run the evaluation; return everything that goes into the results file."""
    policy = load_policy(policy_path)
    logging.getLogger("streams.gate").setLevel(logging.ERROR)  # dead letters are counted instead
    specs = schedule(days, seed)
    config = WorkloadConfig(rate=rate, duration_s=days * 86_400.0, users=users, seed=seed)
    workload = Workload(policy, config, specs)
    run = Evaluation(policy, int(resume_after_min * MINUTE))
    began = time.monotonic()
    events: Counter[str] = Counter()
    for event in workload.events():
        events[event.kind] += 1
        run.feed(event)
        total = sum(events.values())
        if total % 200_000 == 0:
            print(
                f"  {total:,} events, simulated up to {iso_moment(event.emit_at)}"
                f" ({time.monotonic() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    wall = time.monotonic() - began
    episodes = [Episode(t) for t in workload.ground_truth]
    false_alerts: list[dict[str, Any]] = []
    side_effects: list[dict[str, Any]] = []
    for alert in sorted(run.alerts, key=lambda a: a["raised_at"]):
        home = next((e for e in episodes if e.matches(alert)), None)
        if home is not None:
            home.alerts.append(alert)
        elif any(e.involves(alert) for e in episodes):
            side_effects.append(alert)
        else:
            false_alerts.append(alert)
    per_kind = summarise(episodes, false_alerts, side_effects, float(days))
    return {
        "date": time.strftime("%Y-%m-%d"),
        "config": {
            "days": days,
            "seed": seed,
            "rate": rate,
            "users": users,
            "policy": str(
                policy_path.relative_to(REPO) if policy_path.is_relative_to(REPO) else policy_path
            ),
            "resume_after_min": resume_after_min,
            "start": iso_moment(config.start_ms),
            "grace_min": GRACE_MS / MINUTE,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "wall_s": round(wall, 1),
        "events": dict(events),
        "decisions": {f"{v}/{r}": n for (v, r), n in sorted(run.verdicts.items())},
        "dead_letters": dict(sorted(run.dead_letters.items())),
        "predicted_verdict_mismatches": {
            f"predicted {v}, gate {r}": n for (v, r), n in sorted(run.predicted_mismatch.items())
        },
        "injections": [
            {"scenario": s.name, "at": iso_moment(config.start_ms + (s.offset_ms or 0))}
            for s in specs
        ],
        "per_kind": per_kind,
        "episodes": [e.to_json() for e in episodes],
        "false_alerts": [_alert_json(a) for a in false_alerts],
        "side_effect_alerts": [_alert_json(a) for a in side_effects],
        "controls": [
            {"kind": c["kind"], "recipient_org": c["recipient_org"], "at": iso_moment(c["at"])}
            for c in run.controls
        ],
        "background_crossings": len(workload.unclaimed_crossings()),
        "timeline": timeline(policy, run.photos_out, run.alerts, run.controls),
        "table": markdown(per_kind, float(days)),
    }


def _alert_json(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": alert["kind"],
        "subject": alert["subject"],
        "raised_at": iso_moment(alert["raised_at"]),
        "observed": alert["observed"],
        "threshold": alert["threshold"],
        "summary": alert["summary"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.detection_eval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=int, default=7, help="simulated days (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rate", type=float, default=1.0, help="background events per simulated second"
    )
    parser.add_argument("--users", type=int, default=1500, help="users at the start")
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument(
        "--resume-after",
        type=float,
        default=60.0,
        help="minutes until the operator resumes a suspended recipient",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default bench/results/detection-<date>.json)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    print(
        f"detection eval: {args.days} simulated days, rate {args.rate}/s,"
        f" {args.users} users, seed {args.seed}",
        file=sys.stderr,
    )
    result = evaluate(
        days=args.days,
        seed=args.seed,
        rate=args.rate,
        users=args.users,
        policy_path=args.policy.resolve(),
        resume_after_min=args.resume_after,
    )
    out = args.out or RESULTS / f"detection-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    events = sum(result["events"].values())
    print(
        f"\n{events:,} events, {sum(result['decisions'].values()):,} decisions"
        f" in {result['wall_s']} s;"
        f" results in {out.relative_to(REPO) if out.is_relative_to(REPO) else out}\n"
    )
    print(result["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
