"""``consentinel simulate``: produce a :class:`~streams.simulate.workload.Workload` to Kafka.

Events go through the producer SDK (:class:`~streams.sdk.producer.ConsentinelProducer`: Avro,
keyed by owner, ``occurred_at`` as the Kafka timestamp) onto the input topics, under the
settings' topic prefix. Event time advances by simulated time: with ``speedup=None`` events are
produced as fast as possible; with ``speedup=S`` the run is throttled so that S seconds of event
time pass per wall-clock second (1 = real time). The ground truth of every injected scenario is
appended to ``ground_truth_path`` (JSON lines) as soon as the scenario ends, and a progress bar is
drawn on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from streams import topics
from streams.core.policy import load_policy
from streams.core.times import iso_moment
from streams.errors import ConfigError
from streams.sdk.producer import ConsentinelProducer
from streams.settings import Settings
from streams.simulate.engine import Crossing, GroundTruth, SimEvent
from streams.simulate.scenarios import parse_scenarios
from streams.simulate.workload import Workload, WorkloadConfig

BARRIER_SECONDS = 3.0
"""How long a barrier event waits, after a flush, for the gate to decide what came before."""


@dataclass
class SimulationReport:
    """What a run produced: counts, the ground truth, and background threshold crossings."""

    start_ms: int
    end_ms: int
    events: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    ground_truth: list[GroundTruth] = field(default_factory=list)
    unclaimed_crossings: list[Crossing] = field(default_factory=list)
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        """Return a short human-readable summary."""
        total = sum(self.events.values())
        out = [
            f"simulated {iso_moment(self.start_ms)} .. {iso_moment(self.end_ms)}: {total:,} events"
            f" in {self.wall_seconds:.1f} s ("
            + ", ".join(f"{k} {n:,}" for k, n in sorted(self.events.items()))
            + ")"
        ]
        for truth in self.ground_truth:
            crossing = iso_moment(truth.crossing_ms) if truth.crossing_ms else "-"
            out.append(
                f"  injected {truth.scenario}: expect {truth.expected_alert} for {truth.subject}"
                f" ({iso_moment(truth.start_ms)} .. {iso_moment(truth.end_ms)},"
                f" crossing {crossing})"
            )
        if self.unclaimed_crossings:
            out.append(
                f"  warning: the background itself crossed {len(self.unclaimed_crossings)}"
                " threshold(s); lower --rate or raise the policy limits"
            )
        return out


class ProgressBar:
    """A one-line progress bar on a stream (redrawn at most 5 times a second).

    On a terminal it redraws in place; otherwise it prints a line every 10%.
    """

    def __init__(self, start_ms: int, end_ms: int, stream: IO[str] | None = None) -> None:
        self.start_ms = start_ms
        self.span = max(1, end_ms - start_ms)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.began = time.monotonic()
        self._drawn = 0.0
        self._decile = -1

    def update(self, at_ms: int, count: int, *, force: bool = False) -> None:
        """Show progress at event time ``at_ms`` after ``count`` events."""
        now = time.monotonic()
        fraction = min(1.0, max(0.0, (at_ms - self.start_ms) / self.span))
        if self.tty:
            if not force and now - self._drawn < 0.2:
                return
            self._drawn = now
            filled = int(fraction * 30)
            rate = count / max(1e-6, now - self.began)
            self.stream.write(
                f"\r[{'#' * filled}{'-' * (30 - filled)}] {fraction:4.0%}  sim {iso_moment(at_ms)}"
                f"  {count:,} events  {rate:,.0f}/s "
            )
            self.stream.flush()
        elif int(fraction * 10) > self._decile or force:
            self._decile = int(fraction * 10)
            self.stream.write(f"simulate: {fraction:.0%} ({count:,} events)\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _send(producer: ConsentinelProducer, event: SimEvent) -> None:
    """Produce one simulated event with the SDK method of its kind."""
    fields: dict[str, Any] = event.fields
    if event.kind == "upload":
        producer.photo_uploaded(**fields)
    elif event.kind == "consent":
        producer.consent_changed(**fields)
    elif event.kind == "share":
        producer.share_requested(**fields)
    else:
        producer.training_read(**fields)


def run_simulation(
    settings: Settings,
    *,
    rate: float,
    duration_s: float,
    scenarios: Sequence[str] = (),
    seed: int = 0,
    ground_truth_path: Path | None = None,
    speedup: float | None = None,
    policy_path: Path | None = None,
    users: int | None = None,
    start_ms: int | None = None,
    progress: bool = True,
    producer: ConsentinelProducer | None = None,
) -> SimulationReport:
    """Simulate the app for ``duration_s`` seconds of event time and produce it to Kafka.

    Args:
        settings: Kafka, registry, topic prefix, and (if ``policy_path`` is None) the policy.
        rate: Mean background events per second of event time (follows the daily rhythm).
        duration_s: Simulated seconds, from ``start_ms``.
        scenarios: ``NAME`` or ``NAME@OFFSET`` items (see :mod:`streams.simulate.scenarios`).
        seed: The same seed (and arguments) always gives the same events.
        ground_truth_path: Where to write the ground truth as JSON lines (None: not written).
        speedup: Event seconds per wall second (1 = real time); None = as fast as possible.
        policy_path: The policy file (default: ``settings.policy_path``).
        users: Existing users at the start (default 5000).
        start_ms: The first moment of event time (default: now, to the minute).
        progress: Draw a progress bar on stderr.
        producer: The producer to use (default: one from ``settings``, topics prefixed).

    Raises:
        ConfigError: no policy, an unknown scenario or a bad offset.
        DeliveryError: Kafka did not acknowledge some events.
    """
    path = policy_path or settings.policy_path
    if path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    if speedup is not None and speedup <= 0:
        raise ConfigError("speedup must be positive (omit it to run as fast as possible)")
    policy = load_policy(path)
    start = start_ms if start_ms is not None else int(time.time()) // 60 * 60_000
    config = WorkloadConfig(
        rate=rate,
        duration_s=duration_s,
        start_ms=start,
        seed=seed,
        **({"users": users} if users is not None else {}),
    )
    workload = Workload(policy, config, parse_scenarios(scenarios, int(duration_s * 1000)))
    if producer is None:
        prefix = settings.topic_prefix
        names = {t: prefix + t for t in topics.INPUT_TOPICS} if prefix else None
        producer = ConsentinelProducer(
            settings, source="consentinel-simulate", topic_names=names, config={"linger.ms": 20}
        )
    report = SimulationReport(start, config.end_ms)
    bar = ProgressBar(start, config.end_ms) if progress else None
    sink = ground_truth_path.open("w", encoding="utf-8") if ground_truth_path else None
    began = time.monotonic()
    written = 0
    count = 0
    try:
        for event in workload.events():
            if speedup is not None:
                lag = (event.emit_at - start) / 1000 / speedup - (time.monotonic() - began)
                if lag > 0:
                    time.sleep(lag)
            if event.barrier:
                producer.flush()
                time.sleep(BARRIER_SECONDS)
            _send(producer, event)
            count += 1
            report.events[event.kind] += 1
            if event.scenario:
                report.injected[event.scenario] += 1
            if bar is not None:
                bar.update(event.emit_at, count)
            if len(workload.ground_truth) > written:
                written = _write_truth(sink, workload.ground_truth, written)
        producer.flush(timeout=120)
    finally:
        if bar is not None:
            bar.update(config.end_ms, count, force=True)
            bar.close()
        written = _write_truth(sink, workload.ground_truth, written)
        if sink is not None:
            sink.close()
    report.ground_truth = list(workload.ground_truth)
    report.unclaimed_crossings = workload.unclaimed_crossings()
    report.wall_seconds = time.monotonic() - began
    return report


def _write_truth(sink: IO[str] | None, truth: list[GroundTruth], written: int) -> int:
    """Append the records ``truth[written:]`` to ``sink``; return the new count written."""
    if sink is not None:
        for record in truth[written:]:
            sink.write(json.dumps(record.to_json(), sort_keys=True) + "\n")
        sink.flush()
    return len(truth)
