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
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench import report
from bench.common import POLICY, REPO, create_env, drop_prefix, ensure_bench_policy, new_prefix, say
from bench.gen import Workload, generate, produce_workload
from bench.modes import HARNESS, MODES, OTHER_WORK_LIMIT, RESULTS
from bench.observe import ensure_stack, free_port, tally, verdicts_by_request, versions
from bench.output_monitor import OutputMonitor
from bench.processes import ProcSampler, machine, python_env, signing_key, start, stop
from bench.systems import SystemRuns
from streams import topics
from streams.serde.wire import AvroCodec
from streams.settings import load_settings


class Bench(SystemRuns):
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
        self.backlog_decision_ends: dict[int, int] | None = None
        self.baseline_ref = ""
        self.by_request: dict[str, dict[str, str]] = {}
        """Run name → each request's ``verdict/reason`` (the gate's own runs, first sample)."""

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
        codec: AvroCodec | None = None,
        cwd: Path = REPO,
    ) -> tuple[dict[str, Any], list[subprocess.Popen[bytes]]]:
        """Run ``commands`` over the backlog until ``expected`` outputs are visible.

        With ``cap_s``, stop measuring ``cap_s`` seconds after the first output (the rate of a
        slow system is then measured on the first part of the same input). The backlog is
        written before they start.
        """
        assert self.work is not None
        monitor = OutputMonitor(self.base, outputs, group=f"{prefix}bench-monitor-{name}")
        monitor.start()
        self.produce_backlog(prefix, codec)
        launched = time.time()
        procs = [
            start(argv, env, self.work_dir / f"{name}-{i}.log", cwd=cwd)
            for i, (argv, env) in enumerate(commands)
        ]
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
            # the gate refuses to start keyless; a key in the environment (not --unsigned) also
            # suits a --baseline gate that predates the flag
            CONSENTINEL_SIGNING_KEY=signing_key(self.work_dir),
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
                decided = verdicts_by_request(self.base, codec, prefix + topics.TOPIC_DECISIONS)
                self.by_request[name] = decided
                result["verdicts"] = dict(sorted(Counter(decided.values()).items()))
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
        reference = self.by_request.get("gate")
        if reference is not None and "scale_out" in self.by_request:
            # same code, same whole input: every request must be decided as one gate decided it
            same = report.same_decisions(reference, self.by_request["scale_out"])
            self.results["runs"]["scale_out"]["same_decisions"] = same
            say(f"scale_out vs gate, request by request: {same}")
        report.check_mixes(self.results)
        self.results["ratios"] = report.ratios(self.results)
        return self.results


def draw_figures(results: dict[str, Any], out: Path) -> None:
    """Draw the page's figures from ``results`` and record them in ``out``; never raise."""
    try:
        from bench.figures import draw

        results["figures"] = draw(results, RESULTS)
        out.write_text(json.dumps(results, indent=2) + "\n")
        say(f"figures: {results['figures']}")
    except ImportError as exc:  # matplotlib is in the `bench` extra
        say(f"figures not drawn: {exc}")
    except Exception as exc:  # a figure must not cost the run its report
        traceback.print_exc()
        say(f"figures not drawn: {type(exc).__name__}: {exc}")


def code_version() -> str:
    """Return the commit the benchmarked code is at (``+changes`` if the tree differs from it)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


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
        "--no-latency",
        action="store_true",
        help="skip the paced latency phases and the commit-interval curve (throughput and "
        "decisions only)",
    )
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
    if args.no_latency:
        MODES[mode]["latency_systems"] = []
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
    code = code_version()  # before the run writes its results into the tree
    results = bench.run(only or None)
    results["total_s"] = round(time.monotonic() - started, 1)
    results["code"] = code
    if only:
        # a partial run is never the page's headline (bench.benchmarks_md), but its detection
        # timeline may be drawn (bench.figures.detection_source)
        results["partial_steps"] = only
        results["note"] = args.note
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
    if not args.no_report:  # the figures are the page's: a run that leaves it leaves them too
        draw_figures(results, out)
        report.write(REPO / "BENCHMARKS.md", RESULTS)
        say("BENCHMARKS.md rewritten")
    shutil.rmtree(work_dir / "state", ignore_errors=True)
    for line in report.summary_lines(results):
        print(line)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
