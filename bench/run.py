"""``python -m bench.run --quick|--full``: the benchmarks of issues 6 and 12, one broker and input.

Order of a run (each system gets its own copy of the same pre-encoded input under its own topic
prefix, so consumer groups, outputs and paced traffic never mix):

1. make sure the local stack answers (start it if not), write ``bench/policy.yaml`` (the example
   policy with replay time bounds), generate the input once;
2. gate      -- one ``python -m streams.cli gate`` over the backlog; then, still running, live
                traffic at 2,000 requests/s, at its backlog maximum (-> its live maximum) and at
                half its live maximum; then the commit-interval curve (a fresh gate per
                ``commit_interval_ms`` on a fresh prefix holding the backlog's state);
3. baseline  -- with ``--baseline REF``: the gate as of REF (``git archive``), same input;
4. ceiling   -- transactional passthrough (``bench.ceiling``) over the backlog;
5. faust     -- ``bench.faust_peer`` over the backlog (capped);
6. quix      -- ``bench.quix_peer`` (its own virtualenv) over the backlog (capped);
7. scale-out -- two gate processes over the backlog (own prefix, one consumer group);
8. detectors -- ``consentinel detect`` over N of the gate's decisions, copied to a fresh prefix;
9. profile   -- one gate under pyinstrument over the backlog (own prefix), summarised;
10. restore  -- state restore time and peak RSS for N users (consent state, then consent state
                and recall ledgers), memory and RocksDB stores.

Every decision topic is tallied by verdict/reason and every DLQ by error kind (the verdict mix
beside each rate). Every prefixed topic, consumer group and subject is deleted at the end
(``--keep`` keeps them). Results: ``bench/results/<date>[-<tag>].json``, figures in
``bench/results/figures/`` and ``BENCHMARKS.md`` (see :mod:`bench.report`, :mod:`bench.figures`).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Message, libversion
from confluent_kafka.admin import AdminClient

from bench import report
from bench.common import (
    POLICY,
    REPO,
    OutputMonitor,
    ProcSampler,
    committed_progress,
    copy_topic,
    create_env,
    create_topics,
    drop_prefix,
    ensure_bench_policy,
    machine,
    new_prefix,
    percentiles,
    python_env,
    say,
    start,
    stop,
    wait_consumed,
    wait_group_stable,
)
from bench.gen import PacedSource, Workload, generate, produce_workload, run_paced
from bench.internals import HistogramSnapshot, internals
from bench.quix_peer import quix_version
from bench.restore import parse_result, write_changelog
from streams import topics
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

RESULTS = REPO / "bench" / "results"
OTHER_WORK_LIMIT = 0.25  # cores used by other work above which a throughput run is repeated
CEILING_OUT = "bench.ceiling.out"
FAUST_DECISIONS = "faust.governance.decisions"
FAUST_APPROVED = "faust.photo.share.approved"
QUIX_DECISIONS = "quix.governance.decisions"
QUIX_APPROVED = "quix.photo.share.approved"
LIVE_RPS = 2000.0  # the fixed live rate for p99
HARNESS = 12
"""Version of this harness (issue 12: the runtime gate, replay policy, peers, verdict mixes)."""

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "requests": 100_000,
        "users": 10_000,
        "paced_s": 8,
        "latency_systems": ["gate"],
        "restore_users": [100_000],
        "profile_s": 25,
        "faust_cap_s": 20,
        "quix_cap_s": 30,
        "commit_intervals_ms": [0, 250],
        "detector_decisions": 100_000,
        "repeats": 1,
        "max_repeats": 1,
        "timeout_s": 300,
    },
    "full": {
        "requests": 1_000_000,
        "users": 100_000,
        "paced_s": 60,
        "latency_systems": ["ceiling", "gate", "faust_peer", "scale_out"],
        "restore_users": [1_000_000, 10_000_000],
        "profile_s": 60,
        "faust_cap_s": 300,
        "quix_cap_s": 300,
        "commit_intervals_ms": [0, 50, 100, 250, 500, 1000],
        "detector_decisions": 1_000_000,
        "repeats": 2,
        "max_repeats": 4,
        "timeout_s": 3600,
    },
}


class Bench:
    def __init__(self, mode: str, work_dir: Path, keep: bool, tag: str = "") -> None:
        self.mode = mode
        self.tag = tag
        # bench/results/<date>.json for a full run, <date>-quick.json for a quick one
        day = datetime.date.today().isoformat()
        self.name = day + ("-quick" if mode == "quick" else "") + (f"-{tag}" if tag else "")
        self.conf = MODES[mode]
        self.work_dir = work_dir
        self.keep = keep
        self.base = load_settings()
        self.admin = AdminClient(self.base.kafka_config())
        self.prefixes: list[str] = []
        self.results: dict[str, Any] = {
            "date": datetime.date.today().isoformat(),
            "started_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "mode": mode,
            "harness": HARNESS,
            "machine": machine(),
            "versions": versions(self.base),
            "config": {k: v for k, v in self.conf.items() if k != "timeout_s"},
            "runs": {},
            "latency": {},
            "restore": [],
            "errors": [],
        }
        self.work: Workload | None = None
        self.running: list[subprocess.Popen[bytes]] = []
        self.codec: AvroCodec | None = None
        self.decisions_prefix: str | None = None
        self.baseline_ref = ""

    # -- environments ---------------------------------------------------------------------------
    def env(self, tag: str) -> tuple[str, AvroCodec]:
        """A fresh prefix with the contract's topics, schemas and the backlog already in it."""
        prefix = new_prefix(tag)
        self.prefixes.append(prefix)
        codec = create_env(self.base, self.admin, prefix)
        if self.work is None:
            started = time.monotonic()
            self.work = generate(
                codec, prefix, requests=self.conf["requests"], users=self.conf["users"]
            )
            self.codec = codec
            self.results["workload"] = {
                "requests": self.work.requests,
                "users": len(self.work.users),
                "events": self.work.total,
                "by_topic": dict(self.work.counts),
                "partitions": 8,
                "generate_s": round(time.monotonic() - started, 1),
            }
            say(f"generated {self.work.total} events ({dict(self.work.counts)})")
        return prefix, codec

    def produce_backlog(self, prefix: str, codec: AvroCodec | None) -> None:
        assert self.work is not None and codec is not None
        seconds = produce_workload(self.base, codec, prefix, self.work)
        self.results["workload"].setdefault("produce_s", round(seconds, 1))
        say(f"{prefix}: backlog of {self.work.total} events written in {seconds:.1f}s")

    def cleanup(self) -> None:
        if self.keep:
            say(f"keeping prefixes {self.prefixes}")
            return
        for prefix in self.prefixes:
            count = drop_prefix(self.base, self.admin, prefix)
            say(f"{prefix}: deleted {count} topics, its consumer groups and subjects")

    # -- one backlog run ------------------------------------------------------------------------
    def backlog(
        self,
        name: str,
        prefix: str,
        commands: list[tuple[list[str], dict[str, str]]],
        outputs: list[str],
        expected: int,
        *,
        keep_running: bool = False,
        cap_s: float | None = None,
        ready_group: str | None = None,
        codec: AvroCodec | None = None,
        cwd: Path = REPO,
    ) -> tuple[dict[str, Any], list[subprocess.Popen[bytes]]]:
        """Run ``commands`` over the backlog until ``expected`` outputs are visible.

        With ``cap_s``, stop measuring ``cap_s`` seconds after the first output (the rate of a
        slow system is then measured on the first part of the same input). With
        ``ready_group``, the processes start on empty input topics and the backlog is written
        once that consumer group is stable with all of them (so that no rebalance falls inside
        the measurement); otherwise the backlog is written before they start.
        """
        assert self.work is not None
        monitor = OutputMonitor(self.base, outputs, group=f"{prefix}bench-monitor-{name}")
        monitor.start()
        if ready_group is None:
            self.produce_backlog(prefix, codec)
        launched = time.time()
        procs = [
            start(argv, env, self.work_dir / f"{name}-{i}.log", cwd=cwd)
            for i, (argv, env) in enumerate(commands)
        ]
        if ready_group is not None:
            try:
                waited = wait_group_stable(self.admin, ready_group, len(procs), 8)
                time.sleep(2.0)  # state restore (empty) and the controls read follow assignment
                say(f"{name}: group stable after {waited:.1f}s; writing the backlog")
                self.produce_backlog(prefix, codec)
            except BaseException:
                monitor.stop()
                stop(procs)
                raise
        sampler = ProcSampler([p.pid for p in procs])
        sampler.start()
        say(f"{name}: started pid(s) {[p.pid for p in procs]}, waiting for {expected} outputs")
        try:
            deadline = time.monotonic() + self.conf["timeout_s"]
            while True:

                def alive() -> bool:
                    return all(p.poll() is None for p in procs)

                ok = monitor.wait_for(expected, 1.0, alive=alive)
                first = monitor.arrivals.first
                if ok or not alive() or time.monotonic() > deadline:
                    break
                if cap_s is not None and first is not None and time.time() - first > cap_s:
                    ok = True
                    break
            sampler.sample()
            arrivals = monitor.arrivals
            monitor.stop()
            if not ok or arrivals.first is None or arrivals.last is None:
                codes = [p.poll() for p in procs]
                raise RuntimeError(
                    f"{name}: only {arrivals.count}/{expected} outputs (exit codes {codes});"
                    f" logs in {self.work_dir}"
                )
        except BaseException:
            monitor.stop()
            stop(procs)
            raise
        finally:
            sampler.stop()
        if not keep_running:
            stop(procs)
        wall = arrivals.last - arrivals.first
        timed = arrivals.count - arrivals.first_batch
        share = timed / expected  # fraction of the input processed within [first, last]
        events = self.work.total * share
        cpu = sampler.cpu_at(arrivals.last) - sampler.cpu_at(arrivals.first)
        result = {
            "processes": len(procs),
            "outputs": arrivals.count,
            "wall_s": round(wall, 2),
            "startup_s": round(arrivals.first - launched, 2),
            "events_per_s": round(events / wall, 1),
            "requests_per_s": round(self.work.requests * share / wall, 1),
            "cpu_s": round(cpu, 2),
            "cpu_s_per_million_events": round(cpu / events * 1e6, 1),
            "cpu_utilisation": round(cpu / wall, 2),
            "peak_rss_mb": [round(kb / 1024, 1) for kb in sampler.hwm_kb.values()],
            "complete": arrivals.count >= expected,
            **sampler.window(arrivals.first, arrivals.last),
        }
        say(f"{name}: {result}")
        return result, procs

    # -- paced latency --------------------------------------------------------------------------
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
    def gate_command(self, prefix: str, instance: str, profile: Path | None = None) -> Any:
        argv = [sys.executable, "-m", "streams.cli", "gate", "--policy", str(POLICY)]
        if profile is not None:
            argv = [
                sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(profile),
                "-m", "streams.cli", "gate", "--policy", str(POLICY),
            ]  # fmt: skip
        env = python_env(
            self.base,
            prefix,
            CONSENTINEL_INSTANCE_ID=instance,
            CONSENTINEL_STATE_DIR=str(self.work_dir / "state" / prefix),
            # decided_at = the stream's event time, so the detectors' windows see the backlog's
            # week and not a pile-up of one minute (see run_detectors)
            CONSENTINEL_DECISION_CLOCK="stream",
            # its runtime histograms (commit time, GC pauses) are read around latency phases
            METRICS_PORT=str(free_port()),
        )
        return argv, env

    def repeated(
        self,
        name: str,
        tag: str,
        launch: Any,
    ) -> tuple[dict[str, Any], str, AvroCodec, list[subprocess.Popen[bytes]]]:
        """Run a backlog measurement ``repeats`` times, each on fresh topics; keep the best.

        Work by others on the machine only ever slows a run down, so the fastest of several runs
        is the best estimate of what the system can do; every sample is kept in the result.
        While every sample so far ran beside other work using more than ``OTHER_WORK_LIMIT``
        cores, it tries again, up to ``max_repeats`` runs. The last run's processes are left
        running (for the latency runs).
        """
        samples: list[dict[str, Any]] = []
        procs: list[subprocess.Popen[bytes]] = []
        i = 0
        while True:
            prefix, codec = self.env(tag)
            result, procs = launch(prefix, codec)
            samples.append(result)
            if i == 0 and name in ("gate", "scale_out", "gate_baseline"):
                result["verdicts"] = tally(self.base, codec, prefix + topics.TOPIC_DECISIONS)
                result["dead_letters"] = tally(
                    self.base, codec, prefix + topics.TOPIC_DLQ, fields=("error_kind",)
                )
            i += 1
            disturbed = all(r.get("cores_other_work", 0) > OTHER_WORK_LIMIT for r in samples)
            if i >= self.conf["max_repeats"] or (i >= self.conf["repeats"] and not disturbed):
                break
            stop(procs)
        best = dict(max(samples, key=lambda r: r["events_per_s"]))
        best["verdicts"] = samples[0].get("verdicts")
        best["dead_letters"] = samples[0].get("dead_letters")
        best["samples_events_per_s"] = [r["events_per_s"] for r in samples]
        best["samples_cores_other_work"] = [r.get("cores_other_work") for r in samples]
        self.results["runs"][name] = best
        return best, prefix, codec, procs

    def run_baseline(self) -> None:
        """The gate as of ``--baseline REF`` (``git archive``, run from a copy), same input: the
        "before" of a change, measured in the same run as the "after"."""
        if not self.baseline_ref:
            return
        code = self.work_dir / "baseline"
        code.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", self.baseline_ref, "streams", "schemas"],
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)

        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            argv, env = self.gate_command(prefix, "bench-base")
            env["PYTHONPATH"] = str(code)
            return self.backlog(
                "gate_baseline",
                prefix,
                [(argv, env)],
                [prefix + topics.TOPIC_DECISIONS],
                self.work.requests,
                codec=codec,
                cwd=code,
            )

        result, _, _, _ = self.repeated("gate_baseline", "b", launch)
        resolved = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", self.baseline_ref],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        result["ref"] = f"{self.baseline_ref} = {resolved}" if resolved else self.baseline_ref

    def run_ceiling(self) -> None:
        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            create_topics(self.admin, [prefix + CEILING_OUT])
            argv = [sys.executable, "-m", "bench.ceiling", prefix + CEILING_OUT]
            return self.backlog(
                "ceiling",
                prefix,
                [(argv, python_env(self.base, prefix))],
                [prefix + CEILING_OUT],
                self.work.total,
                keep_running=True,
                codec=codec,
            )

        _, prefix, codec, procs = self.repeated("ceiling", "c", launch)
        self.running = procs
        try:
            if "ceiling" in self.conf["latency_systems"] and "gate" in self.results["runs"]:
                # full load: the gate's maximum (the paced producer cannot offer the ceiling's)
                self.latency("ceiling", prefix, codec, [prefix + CEILING_OUT], kafka_time, "event")
        finally:
            stop(procs)

    def run_gate(self) -> None:
        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            command = self.gate_command(prefix, "bench-1")
            ports.append(int(command[1]["METRICS_PORT"]))
            return self.backlog(
                "gate",
                prefix,
                [command],
                [prefix + topics.TOPIC_DECISIONS],
                self.work.requests,
                keep_running=True,
                codec=codec,
            )

        ports: list[int] = []
        _, prefix, codec, procs = self.repeated("gate", "g", launch)
        self.running = procs
        try:
            if "gate" in self.conf["latency_systems"]:
                decisions = [prefix + topics.TOPIC_DECISIONS]
                gate_max = self.results["runs"]["gate"]["requests_per_s"]
                rates = [("live_2000", LIVE_RPS), ("full_load", gate_max)]
                self.latency(
                    "gate",
                    prefix,
                    codec,
                    decisions,
                    decision_time(codec),
                    "request",
                    rates=rates,
                    metrics_port=ports[-1],
                )
        finally:
            stop(procs)
        self.decisions_prefix = prefix
        if self.conf.get("commit_intervals_ms") and "gate" in self.conf["latency_systems"]:
            self.commit_curve()

    def faust_env(self, tag: str) -> tuple[str, AvroCodec, AvroCodec, Any]:
        prefix, codec = self.env(tag)
        create_topics(self.admin, [prefix + FAUST_DECISIONS, prefix + FAUST_APPROVED])
        faust_codec = AvroCodec(codec._source, codec.catalog.with_topics(
            {prefix + FAUST_DECISIONS: "Decision"}
        ))  # fmt: skip
        argv = [sys.executable, "-m", "bench.faust_peer", "worker", "-l", "warn"]
        return prefix, codec, faust_codec, (argv, python_env(self.base, prefix))

    def run_faust(self) -> None:
        prefix, codec, faust_codec, command = self.faust_env("f")
        assert self.work is not None
        result, procs = self.backlog(
            "faust_peer",
            prefix,
            [command],
            [prefix + FAUST_DECISIONS],
            self.work.requests,
            keep_running=True,
            cap_s=self.conf["faust_cap_s"],
            codec=codec,
        )
        self.results["runs"]["faust_peer"] = result
        stop(procs)
        result["verdicts"] = tally(self.base, faust_codec, prefix + FAUST_DECISIONS)
        if "faust_peer" not in self.conf["latency_systems"]:
            return
        # Latency on a fresh peer whose state (uploads and consents of the backlog) is loaded
        # first: the peer is too slow to get through the whole backlog in a benchmark's time.
        own = result["requests_per_s"]
        prefix, codec, faust_codec, command = self.faust_env("fl")
        produce_workload(self.base, codec, prefix, self.work, requests=False)
        group = prefix + "faust-peer"
        procs = [start(command[0], command[1], self.work_dir / "faust_peer-latency.log")]
        self.running = procs
        try:
            waited = wait_consumed(self.base, self.admin, group, prefix, self.conf["timeout_s"])
            say(f"faust_peer: state of {len(self.work.users)} users loaded in {waited:.0f}s")
            gate_half = self.results["runs"]["gate"]["requests_per_s"] * 0.5
            rates = [("half_own_max", own * 0.5), ("full_load", own)]
            if gate_half <= own:
                rates.insert(0, ("half_gate_max", gate_half))
            self.latency(
                "faust_peer",
                prefix,
                codec,
                [prefix + FAUST_DECISIONS],
                decision_time(faust_codec),
                "request",
                rates=rates,
            )
            if gate_half > own:
                self.results["latency"]["faust_peer"]["half_gate_max"] = {
                    "offered_requests_per_s": round(gate_half, 1),
                    "kept_up": False,
                    "not_run": f"above the peer's maximum ({own:.0f} requests/s): the backlog"
                    " and the latency grow without bound",
                }
        finally:
            stop(procs)

    def run_quix(self) -> None:
        from bench.quix_peer import ensure_venv

        python = ensure_venv()
        prefix, codec = self.env("q")
        assert self.work is not None
        create_topics(self.admin, [prefix + QUIX_DECISIONS, prefix + QUIX_APPROVED])
        # Quix aligns concatenated topics by the Kafka timestamp, never by a field of the value:
        # its input topics are CreateTime, stamped with occurred_at by the backlog's producer
        # (the gate's stay LogAppendTime and it merges by the decoded occurred_at).
        set_create_time(self.admin, [prefix + t for t in gen_inputs()])
        quix_codec = AvroCodec(codec._source, codec.catalog.with_topics(
            {prefix + QUIX_DECISIONS: "Decision"}
        ))  # fmt: skip
        env = python_env(
            self.base, prefix, CONSENTINEL_STATE_DIR=str(self.work_dir / "state" / prefix)
        )
        env.pop("VIRTUAL_ENV", None)
        result, _ = self.backlog(
            "quix_peer",
            prefix,
            [([str(python), "-m", "bench.quix_peer"], env)],
            [prefix + QUIX_DECISIONS],
            self.work.requests,
            keep_running=False,
            cap_s=self.conf["quix_cap_s"],
            codec=codec,
        )
        result["verdicts"] = tally(self.base, quix_codec, prefix + QUIX_DECISIONS)
        result["dead_letters"] = {}  # the peer has no dead-letter topic (it logs and counts)
        self.results["runs"]["quix_peer"] = result

    def run_detectors(self) -> None:
        """Both detector stages over N decisions: from start until all are consumed, committed.

        The decisions are the gate's from this run (decided with ``CONSENTINEL_DECISION_CLOCK=
        stream``, so ``decided_at`` follows the backlog's event time), copied to a fresh prefix.
        """
        source = self.decisions_prefix
        if source is None:
            raise RuntimeError("the detectors step needs the gate's decisions (run the gate first)")
        prefix, codec = self.env("d")
        copied = copy_topic(
            self.base,
            source + topics.TOPIC_DECISIONS,
            prefix + topics.TOPIC_DECISIONS,
            limit=self.conf["detector_decisions"],
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
        alerts = tally(self.base, codec, prefix + topics.TOPIC_ALERTS, fields=("kind",))
        dead = tally(self.base, codec, prefix + topics.TOPIC_DLQ, fields=("error_kind",))
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
            "alerts": alerts,
            "dead_letters": dead,
            **sampler.window(first, done),
        }
        say(f"detectors: {result}")
        self.results["runs"]["detectors"] = result

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

    def run_scale_out(self) -> None:
        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            return self.backlog(
                "scale_out",
                prefix,
                [self.gate_command(prefix, "bench-1"), self.gate_command(prefix, "bench-2")],
                [prefix + topics.TOPIC_DECISIONS],
                self.work.requests,
                keep_running=True,
                ready_group=prefix + "consentinel-gate",
                codec=codec,
            )

        result, prefix, codec, procs = self.repeated("scale_out", "s", launch)
        self.running = procs
        try:
            if "scale_out" in self.conf["latency_systems"]:
                self.latency(
                    "scale_out",
                    prefix,
                    codec,
                    [prefix + topics.TOPIC_DECISIONS],
                    decision_time(codec),
                    "request",
                    own_max_rps=result["requests_per_s"],
                )
        finally:
            stop(procs)

    def run_profile(self) -> None:
        prefix, codec = self.env("p")
        assert self.work is not None
        self.produce_backlog(prefix, codec)
        session = self.work_dir / "gate.pyisession"
        argv, env = self.gate_command(prefix, "bench-prof", profile=session)
        monitor = OutputMonitor(
            self.base, [prefix + topics.TOPIC_DECISIONS], group=f"{prefix}bench-monitor-prof"
        )
        monitor.start()
        proc = start(argv, env, self.work_dir / "profile.log")
        monitor.wait_for(self.work.requests, self.conf["profile_s"])
        decided = monitor.arrivals.count
        monitor.stop()
        stop([proc], grace_s=120)
        text_out = RESULTS / f"{self.name}-gate-profile.txt"
        pstats_out = self.work_dir / "gate.pstats"
        for renderer, out in (("text", text_out), ("pstats", pstats_out)):
            subprocess.run(
                [sys.executable, "-m", "pyinstrument", "--load", str(session), "-r", renderer,
                 "-o", str(out)],
                check=True,
            )  # fmt: skip
        self.results["profile"] = {
            "decisions_profiled": decided,
            "text_report": str(text_out.relative_to(REPO)),
            **report.profile_summary(pstats_out),
        }
        say(f"profile: {decided} decisions profiled, report in {text_out}")

    def run_restore(self) -> None:
        cases = [(u, False) for u in self.conf["restore_users"]]
        cases += [(u, True) for u in self.conf["restore_users"]]
        for users, ledgers in cases:
            prefix = new_prefix("r")
            self.prefixes.append(prefix)
            create_env(self.base, self.admin, prefix)
            written = write_changelog(self.base, prefix, users, ledgers=ledgers)
            say(
                f"restore: {users} users' {written['state']} state written in {written['write_s']}s"
            )
            for store in ("memory", "rocksdb"):
                skipped = memory_store_skipped(store, written["records"])
                if skipped:
                    entry = {"users": users, **written, "store": store, "skipped": skipped}
                    self.results["restore"].append(entry)
                    say(f"restore: {entry}")
                    continue
                log = self.work_dir / f"restore-{users}-{written['state']}-{store}.log"
                env = python_env(
                    self.base,
                    prefix,
                    CONSENTINEL_STATE_STORE=store,
                    CONSENTINEL_INSTANCE_ID="bench-restore",
                    CONSENTINEL_STATE_DIR=str(self.work_dir / "restore-state"),
                )
                began = time.time()
                proc = start([sys.executable, "-m", "bench.restore"], env, log)
                sampler = ProcSampler([proc.pid], interval=0.5)
                sampler.start()
                proc.wait(self.conf["timeout_s"])
                sampler.stop()
                result = parse_result(log)
                if result is None:
                    raise RuntimeError(f"restore of {users} users ({store}) failed; see {log}")
                entry = {"users": users, **written, **result, **sampler.window(began, time.time())}
                self.results["restore"].append(entry)
                say(f"restore: {entry}")
            drop_prefix(self.base, self.admin, prefix)
            self.prefixes.remove(prefix)

    def run(self, only: list[str] | None) -> dict[str, Any]:
        # The gate goes first: the paced latency runs of the others offer its measured rates.
        steps = [
            ("gate", self.run_gate),
            ("baseline", self.run_baseline),
            ("ceiling", self.run_ceiling),
            ("faust_peer", self.run_faust),
            ("quix_peer", self.run_quix),
            ("scale_out", self.run_scale_out),
            ("detectors", self.run_detectors),
            ("profile", self.run_profile),
            ("restore", self.run_restore),
        ]
        started = time.monotonic()
        try:
            for name, step in steps:
                if only and name not in only:
                    continue
                try:
                    step()
                except Exception as exc:
                    traceback.print_exc()
                    self.results["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            self.cleanup()
        self.results["elapsed_s"] = round(time.monotonic() - started, 1)
        report.check_mixes(self.results)
        self.results["ratios"] = report.ratios(self.results)
        return self.results


MEMORY_STORE_BYTES_PER_RECORD = 1_100
"""What the memory store holds per changelog record restored (measured: 10 M users' consent
states peaked at 8.1 GB; 100 k users with recall ledgers at 2.2 kB per user, two records each)."""


def memory_store_skipped(store: str, records: int) -> str | None:
    """Why a memory-store restore of ``records`` records is not run here (None: it is run).

    It is skipped when its estimated footprint exceeds 60% of the memory available now: the
    kernel would kill the broker (or the benchmark) first. RocksDB is the store for that size.
    """
    if store != "memory":
        return None
    need_mb = records * MEMORY_STORE_BYTES_PER_RECORD / 2**20
    available_mb = proc_meminfo_kb("MemAvailable") / 1024
    if need_mb <= 0.6 * available_mb:
        return None
    return (
        f"not run: the memory store would need about {need_mb / 1024:.0f} GB"
        f" ({MEMORY_STORE_BYTES_PER_RECORD} bytes per record measured) and"
        f" {available_mb / 1024:.0f} GB are available; RocksDB holds this state on disk"
    )


def proc_meminfo_kb(field: str) -> int:
    """Return one field of ``/proc/meminfo`` in kB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(f"/proc/meminfo has no {field}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float, alive: subprocess.Popen[bytes]) -> float:
    """Wait until a process's ``/ready`` answers 200 (state restored, tables read)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if alive.poll() is not None:
            raise RuntimeError(f"the process serving :{port} exited before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"not ready on :{port} within {timeout_s}s")


def gen_inputs() -> tuple[str, ...]:
    from bench.gen import INPUT_TOPICS

    return INPUT_TOPICS


def set_create_time(admin: AdminClient, names: list[str]) -> None:
    """Switch topics to ``message.timestamp.type=CreateTime`` (the producer's timestamps)."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(
                    "message.timestamp.type",
                    "CreateTime",
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for name in names
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


def decision_time(codec: AvroCodec) -> Any:
    def occurred(message: Message) -> int:
        return int(codec.decode(message.topic() or "", message.value())["occurred_at"])

    return occurred


def kafka_time(message: Message) -> int:
    return int(message.timestamp()[1])


def tally(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    fields: tuple[str, ...] = ("verdict", "reason"),
) -> dict[str, int]:
    """Count the records of ``topic`` by ``fields`` (verdict/reason for decisions, error_kind for
    dead letters), after the run, not timed."""
    counts: dict[str, int] = {}

    def see(message: Message) -> int:
        record = codec.decode(topic, message.value())
        key = "/".join(str(record[f]) for f in fields)
        counts[key] = counts.get(key, 0) + 1
        return 0

    monitor = OutputMonitor(settings, [topic], group=topic + "-tally", occurred_ms=see)
    monitor.latency_from_ms = 1  # never times anything: ``see`` returns 0
    monitor.start()
    last, still = -1, 0
    deadline = time.monotonic() + 300
    while still < 4 and time.monotonic() < deadline:  # until the count stops growing for 2 s
        time.sleep(0.5)
        now = monitor.arrivals.count
        still = still + 1 if now == last else 0
        last = now
    monitor.stop()
    return dict(sorted(counts.items()))


def versions(settings: Settings) -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    kafka = "unknown"
    registry = "unknown"
    home = settings.stack_home.expanduser()
    for jar in sorted((home / "lib").glob("kafka-clients-*.jar")):
        kafka = jar.stem.removeprefix("kafka-clients-") + " (local stack, KRaft, 1 node)"
    for jar in sorted((home / "registry" / "app").glob("apicurio-registry-app-*.jar")):
        registry = "Apicurio Registry " + jar.stem.removeprefix("apicurio-registry-app-")
    return {
        "python": platform.python_version(),
        "confluent_kafka": dist("confluent-kafka"),
        "librdkafka": libversion()[0],
        "kafka": kafka,
        "registry": registry,
        "faust_streaming": dist("faust-streaming"),
        "aiokafka": dist("aiokafka"),
        "fastavro": dist("fastavro"),
        "rocksdict": dist("rocksdict"),
        "pyinstrument": dist("pyinstrument"),
        "quixstreams (own venv)": quix_version(),
        "matplotlib": dist("matplotlib"),
    }


def _answers(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False


def ensure_stack() -> None:
    """Start the local stack unless Kafka and the registry already answer."""
    settings = load_settings()
    kafka_ok = all(_answers(b) for b in settings.kafka_bootstrap_servers.split(","))
    registry_ok = False
    if kafka_ok:
        try:
            url = settings.schema_registry_url + "/subjects"
            registry_ok = httpx.get(url, timeout=5).is_success
        except Exception:
            registry_ok = False
    if kafka_ok and registry_ok:
        say("stack: Kafka and the registry answer")
        return
    from streams.stack.local import LocalStack

    say("stack: not running, starting the local stack")
    LocalStack(settings.stack_home).up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_true", help="100k requests, under 10 minutes")
    group.add_argument("--full", action="store_true", help="1M requests, 10M users' restore")
    parser.add_argument("--only", default="", help="comma-separated subset of the steps")
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--keep", action="store_true", help="keep the prefixed topics")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument("--requests", type=int, help="override the mode's request count")
    parser.add_argument("--users", type=int, help="override the mode's user count")
    parser.add_argument("--restore-users", help="override, e.g. 1000000,10000000")
    parser.add_argument("--paced-s", type=float, help="override the latency runs' duration")
    parser.add_argument("--note", default="", help="why a partial (--only) re-run was made")
    parser.add_argument(
        "--baseline",
        default="",
        help="git ref of a gate to measure on the same input in the same run (before/after)",
    )
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    if args.requests:
        MODES[mode]["requests"] = args.requests
    if args.users:
        MODES[mode]["users"] = args.users
    if args.paced_s:
        MODES[mode]["paced_s"] = args.paced_s
    if args.restore_users:
        MODES[mode]["restore_users"] = [int(n) for n in args.restore_users.split(",")]
    started = time.monotonic()

    def _terminated(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup

    signal.signal(signal.SIGTERM, _terminated)
    ensure_stack()
    ensure_bench_policy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix=f"consentinel-bench-{mode}-"))
    say(f"{mode} run; logs in {work_dir}")
    bench = Bench(mode, work_dir, args.keep, args.tag)
    bench.baseline_ref = args.baseline
    only = [s for s in args.only.split(",") if s]
    results = bench.run(only or None)
    results["total_s"] = round(time.monotonic() - started, 1)
    out = RESULTS / f"{bench.name}.json"
    if only and out.exists():
        # A partial re-run (--only) updates the day's results for the steps it ran and says so.
        merged = json.loads(out.read_text())
        for key in ("runs", "latency"):
            merged.setdefault(key, {}).update(results[key])
        if "restore" in only:
            merged["restore"] = results["restore"]
        if "profile" in only and "profile" in results:
            merged["profile"] = results["profile"]
        merged["errors"] = [*merged.get("errors", []), *results["errors"]]
        merged.setdefault("reruns", []).append(
            {
                "steps": only,
                "at": results["started_at"],
                "note": args.note,
                "versions": results["versions"],
            }
        )
        for key in ("commit_curve",):
            if key in results:
                merged[key] = results[key]
        report.check_mixes(merged)
        merged["ratios"] = report.ratios(merged)
        results = merged
    out.write_text(json.dumps(results, indent=2) + "\n")
    say(f"results in {out} ({results['total_s']}s)")
    try:
        from bench.figures import draw

        results["figures"] = draw(results, RESULTS)
        out.write_text(json.dumps(results, indent=2) + "\n")
        say(f"figures: {results['figures']}")
    except ImportError as exc:  # matplotlib is in the `bench` extra
        say(f"figures not drawn: {exc}")
    if not args.no_report:
        report.write(REPO / "BENCHMARKS.md", RESULTS)
        say("BENCHMARKS.md rewritten")
    shutil.rmtree(work_dir / "state", ignore_errors=True)
    for line in report.summary_lines(results):
        print(line)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
