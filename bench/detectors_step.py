"""The benchmark's detectors step: both detector stages over the gate's decisions of the run."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from bench.common import POLICY, copy_topic, say
from bench.consumer_groups import committed_progress
from bench.observe import read_topic, tally
from bench.processes import ProcSampler, python_env, start, stop
from bench.timeline import HOUR_MS, PhotosOut, count_allowed, timeline
from streams import topics
from streams.core.policy import load_policy
from streams.serde.wire import AvroCodec


class DetectorRuns:
    """The detectors step of :class:`bench.run.Bench` (a mixin: it uses the bench's state)."""

    def run_detectors(self) -> None:
        """Both detector stages over N decisions: from start until all are consumed, committed.

        The decisions are the gate's from this run (decided with ``CONSENTINEL_DECISION_CLOCK=
        stream``, so ``decided_at`` follows the backlog's event time), copied to a fresh prefix.
        """
        source = self.decisions_prefix
        if source is None:
            raise RuntimeError("the detectors step needs the gate's decisions (run the gate first)")
        prefix, codec = self.env("d")
        ends = self.backlog_decision_ends
        limit = self.conf["detector_decisions"]
        if ends is not None and self.work is not None and self.work.requests <= limit:
            limit = 0  # the whole backlog: no partition is cut short of the week's end
        copied = copy_topic(
            self.base,
            source + topics.TOPIC_DECISIONS,
            prefix + topics.TOPIC_DECISIONS,
            limit=limit,
            ends=ends,
        )
        say(f"detectors: {copied} decisions copied to {prefix}")
        argv = [sys.executable, "-m", "streams.cli", "detect", "--policy", str(POLICY)]
        env = python_env(
            self.base,
            prefix,
            CONSENTINEL_INSTANCE_ID="bench-detect",
            CONSENTINEL_STATE_DIR=str(self.work_dir / "state" / prefix),
        )
        group = prefix + topics.DETECTOR_APP
        launched = time.time()
        proc = start(argv, env, self.work_dir / "detectors.log")
        sampler = ProcSampler([proc.pid])
        sampler.start()
        try:
            progress = committed_progress(
                self.base,
                self.admin,
                group,
                {prefix + topics.TOPIC_DECISIONS: copied},
                self.conf["timeout_s"],
                alive=lambda: proc.poll() is None,
            )
        finally:
            sampler.stop()
            stop([proc])
        first, done = progress["first_commit_at"], progress["done_at"]
        wall = done - first
        counted = copied - progress["first_committed"]
        cpu = sampler.cpu_at(done) - sampler.cpu_at(first)
        alerts: list[dict[str, Any]] = []
        read_topic(self.base, codec, prefix + topics.TOPIC_ALERTS, alerts.append)
        dead = tally(self.base, codec, prefix + topics.TOPIC_DLQ, fields=("error_kind",))
        self.detection_timeline(prefix, codec, alerts)
        result = {
            "processes": 1,
            "decisions": copied,
            "startup_s": round(first - launched, 2),
            "wall_s": round(wall, 2),
            "decisions_per_s": round(counted / wall, 1) if wall > 0 else None,
            "events_per_s": round(counted / wall, 1) if wall > 0 else None,
            "cpu_s": round(cpu, 2),
            "cpu_us_per_decision": round(cpu / max(counted, 1) * 1e6, 1),
            "peak_rss_mb": [round(kb / 1024, 1) for kb in sampler.hwm_kb.values()],
            "alerts": dict(sorted(Counter(a["kind"] for a in alerts).items())),
            "dead_letters": dead,
            **sampler.window(first, done),
        }
        say(f"detectors: {result}")
        self.results["runs"]["detectors"] = result

    def detection_timeline(
        self, prefix: str, codec: AvroCodec, alerts: list[dict[str, Any]]
    ) -> None:
        """Keep the timeline of the detectors step for the detection figure: photos allowed out
        per minute to the (at most two) most alerted recipients, their limit, alerts and
        suspensions, from the decisions, alerts and controls of ``prefix`` (not timed)."""
        photos_out: PhotosOut = Counter()
        controls: list[dict[str, Any]] = []
        read_topic(
            self.base,
            codec,
            prefix + topics.TOPIC_DECISIONS,
            lambda decision: count_allowed([decision], into=photos_out),
        )
        read_topic(self.base, codec, prefix + topics.TOPIC_CONTROLS, controls.append)
        policy = load_policy(POLICY)
        drawn = timeline(
            policy,
            photos_out,
            alerts,
            controls,
            only_alerted=True,
            most=2,
            before_alert_ms=3 * HOUR_MS,
        )
        self.results["detection_timeline"] = {
            "date": self.results["date"],
            "source": "the benchmark's detectors step (the gate's decisions of this run)",
            "timeline": drawn or timeline(policy, photos_out, alerts, controls, most=2),
        }
