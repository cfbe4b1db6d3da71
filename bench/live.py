"""Live traffic against a running system: p50/p99 at paced rates, and the commit-interval curve."""

from __future__ import annotations

import time
from typing import Any

from bench.common import say
from bench.consumer_groups import wait_consumed
from bench.gen import PacedSource, produce_workload, run_paced
from bench.internals import HistogramSnapshot, internals
from bench.modes import LIVE_RPS
from bench.observe import decision_time, free_port, wait_ready
from bench.output_monitor import OutputMonitor, percentiles
from bench.processes import ProcSampler, start, stop
from streams import topics
from streams.serde.wire import AvroCodec


class LiveRuns:
    """The paced latency steps of :class:`bench.run.Bench` (a mixin: it uses the bench's state)."""

    def latency(
        self,
        name: str,
        prefix: str,
        codec: AvroCodec,
        outputs: list[str],
        occurred: Any,
        per_output: str,
        own_max_rps: float | None = None,
        rates: list[tuple[str, float]] | None = None,
        follow_half: bool = True,
        metrics_port: int | None = None,
    ) -> None:
        """Paced live traffic at half the gate's maximum, then at ``own_max_rps`` (full load).

        With ``metrics_port`` (a gate's), each phase also reports what the gate's own histograms
        saw meanwhile: commit times and garbage-collection pauses (:mod:`bench.internals`).
        """
        assert self.work is not None
        gate_max = self.results["runs"]["gate"]["requests_per_s"]
        if rates is None:
            rates = [("half_gate_max", gate_max * 0.5), ("full_load", own_max_rps or gate_max)]
        runs: dict[str, Any] = {}
        queue = list(rates)
        while queue:
            label, rate = queue.pop(0)
            warm_ms = int(time.time() * 1000) + 1000
            monitor = OutputMonitor(
                self.base,
                outputs,
                group=f"{prefix}bench-latency-{label}",
                from_end=True,
                occurred_ms=occurred,
                latency_from_ms=warm_ms,
            )
            monitor.start()
            sampler = ProcSampler([p.pid for p in self.running])
            sampler.start()
            source = PacedSource(self.work, codec, prefix, seed=len(label))
            before = HistogramSnapshot.scrape(metrics_port) if metrics_port else None
            began = time.time()
            sent = run_paced(
                self.base, source, requests_per_s=rate, duration_s=self.conf["paced_s"]
            )
            sent_at = time.time()
            expected = sent["requests"] if per_output == "request" else sent["events"]
            caught_up = monitor.wait_for(expected, max(60.0, 2 * self.conf["paced_s"]))
            after = HistogramSnapshot.scrape(metrics_port) if metrics_port else None
            sampler.stop()
            monitor.stop()
            arrivals = monitor.arrivals
            runs[label] = {
                "offered_requests_per_s": round(rate, 1),
                **sent,
                "outputs": arrivals.count,
                "kept_up": caught_up,
                "drained_s_after_last_send": round((arrivals.last or sent_at) - sent_at, 2),
                **percentiles(arrivals.latencies_ms),
                **sampler.window(began, sent_at),
            }
            if arrivals.until_produced_ms:
                runs[label]["split"] = {
                    "until_produced": percentiles(arrivals.until_produced_ms),
                    "produced_to_visible": percentiles(arrivals.produced_to_visible_ms),
                }
            seen_inside = internals(before, after)
            if seen_inside:
                runs[label]["gate_internals"] = seen_inside
            say(f"{name} latency at {label}: {runs[label]}")
            if label == "full_load" and per_output == "request":
                # What the system sustains live (the broker now also ingests the traffic, on the
                # same cores): decisions over the time until the last one was visible.
                span = (arrivals.last or sent_at) - began
                live_max = arrivals.count / span if span > 0 else 0.0
                runs[label]["live_max_requests_per_s"] = round(live_max, 1)
                if follow_half and live_max > 0 and "half_live_max" not in runs:
                    queue.append(("half_live_max", live_max * 0.5))
        self.results["latency"][name] = runs

    # -- the systems ----------------------------------------------------------------------------

    def commit_curve(self) -> None:
        """p99 and the live maximum against the runtime's ``commit_interval_ms``: per interval a
        fresh prefix with the backlog's uploads and consents (no requests), a gate that has
        consumed them, then live traffic."""
        assert self.work is not None
        curve = []
        for interval in self.conf["commit_intervals_ms"]:
            prefix, codec = self.env(f"i{interval}")
            produce_workload(self.base, codec, prefix, self.work, requests=False)
            argv, env = self.gate_command(prefix, "bench-1")
            env["CONSENTINEL_COMMIT_INTERVAL_MS"] = str(interval)
            port = free_port()
            env["METRICS_PORT"] = str(port)
            proc = start(argv, env, self.work_dir / f"gate-commit-{interval}.log")
            self.running = [proc]
            try:
                waited = wait_ready(port, self.conf["timeout_s"], alive=proc)
                group = prefix + "consentinel-gate"
                waited += wait_consumed(self.base, self.admin, group, prefix, 300)
                say(f"gate (commit_interval_ms={interval}): state loaded after {waited:.1f}s")
                time.sleep(1.0)
                decisions = [prefix + topics.TOPIC_DECISIONS]
                self.latency(
                    f"gate_commit_{interval}ms",
                    prefix,
                    codec,
                    decisions,
                    decision_time(codec),
                    "request",
                    rates=[("live_2000", LIVE_RPS), ("full_load", self.gate_live_rps())],
                    follow_half=False,
                    metrics_port=port,
                )
                runs = self.results["latency"].pop(f"gate_commit_{interval}ms")
                curve.append(
                    {
                        "commit_interval_ms": interval,
                        "p50_ms_at_2000": runs["live_2000"].get("p50_ms"),
                        "p99_ms_at_2000": runs["live_2000"].get("p99_ms"),
                        "live_max_requests_per_s": runs["full_load"].get("live_max_requests_per_s"),
                        "p99_ms_at_full_load": runs["full_load"].get("p99_ms"),
                        "cores_other_work": runs["live_2000"].get("cores_other_work"),
                        "gate_internals_at_2000": runs["live_2000"].get("gate_internals"),
                    }
                )
            finally:
                stop([proc])
        self.results["commit_curve"] = curve

    def gate_live_rps(self) -> float:
        live = self.results["latency"].get("gate", {}).get("full_load", {})
        rate = live.get("live_max_requests_per_s") or self.results["runs"]["gate"]["requests_per_s"]
        return float(rate) * 1.2  # offer more than it sustained, to find its maximum again
