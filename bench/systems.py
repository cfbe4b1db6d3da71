"""Each system under test over the backlog: the gate, its peers, the ceiling, detectors, restore."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.common import (
    REPO,
    create_env,
    create_topics,
    drop_prefix,
    new_prefix,
    partition_ends,
    say,
)
from bench.consumer_groups import wait_consumed
from bench.detectors_step import DetectorRuns
from bench.gen import produce_workload
from bench.live import LiveRuns
from bench.modes import (
    CEILING_OUT,
    FAUST_APPROVED,
    FAUST_DECISIONS,
    LIVE_RPS,
    QUIX_APPROVED,
    QUIX_DECISIONS,
    RESULTS,
)
from bench.observe import (
    decision_time,
    gen_inputs,
    kafka_time,
    memory_store_skipped,
    set_create_time,
    tally,
)
from bench.output_monitor import OutputMonitor
from bench.processes import ProcSampler, python_env, signing_key, start, stop
from bench.restore import parse_result, write_changelog
from streams import topics
from streams.serde.catalog import TOPIC_RECORDS, Catalog, default_catalog
from streams.serde.registry import register_all
from streams.serde.wire import AvroCodec


class SystemRuns(LiveRuns, DetectorRuns):
    """The throughput steps of :class:`bench.run.Bench` (a mixin: it uses the bench's state)."""

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
        changed = sorted(
            path.name
            for path in (REPO / "schemas").glob("*.avsc")
            if not (code / "schemas" / path.name).is_file()
            or (code / "schemas" / path.name).read_bytes() != path.read_bytes()
        )
        if changed:
            say(f"baseline {self.baseline_ref}: its own {', '.join(changed)} go on its topics")

        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            # its gate refuses subjects whose latest schema is not its own: register its
            # versions of what differs on its prefix (the input records are this run's)
            register_baseline_schemas(self.base.schema_registry_url, code / "schemas", prefix)
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
        named = resolved and resolved != self.baseline_ref
        result["ref"] = f"{self.baseline_ref} = {resolved}" if named else self.baseline_ref

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
        # where the backlog's decisions end: the detectors step copies those, not the latency
        # phases' live traffic (decided at "now", a spike after the week)
        self.backlog_decision_ends = partition_ends(self.base, prefix + topics.TOPIC_DECISIONS)
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

    def run_scale_out(self) -> None:
        """Two gates in one group over the same backlog as the one gate, written before either
        starts: their decisions are compared request by request with the one gate's.

        The backlog is whole before they read it, as for the one gate. A gate that reads a
        backlog while it is being written decides by what has landed, and the producer writes
        a week of event time in seconds: one gate reading it so differed from one gate reading
        it whole on 1,214 of 400,000 requests (2026-12-06), which says nothing about scaling
        out. The second gate joins while the first works, so the measurement includes that
        rebalance (partitions revoked, committed and restored) and its decisions must not show it.
        """

        def launch(prefix: str, codec: AvroCodec) -> Any:
            assert self.work is not None
            return self.backlog(
                "scale_out",
                prefix,
                [self.gate_command(prefix, "bench-1"), self.gate_command(prefix, "bench-2")],
                [prefix + topics.TOPIC_DECISIONS],
                self.work.requests,
                keep_running=True,
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
                    CONSENTINEL_SIGNING_KEY=signing_key(self.work_dir),
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


def register_baseline_schemas(registry_url: str, schemas: Path, prefix: str) -> list[str]:
    """Register, under ``prefix``, the schemas of a baseline checkout that differ from ours.

    Each becomes the latest version of its ``<prefix><topic>-value`` subject (a field removed
    with its default is ``FULL_TRANSITIVE``-compatible), so a gate of that checkout finds its
    own schemas registered. Returns the subjects it registered under.
    """
    ours, theirs = default_catalog(), Catalog.load(schemas)
    differing = [
        topic
        for topic, record in TOPIC_RECORDS.items()
        if theirs.record(record).schema_str != ours.record(record).schema_str
    ]
    catalog = theirs.with_topics({prefix + t: TOPIC_RECORDS[t] for t in differing})
    registered = register_all(registry_url, catalog, topics=[prefix + t for t in differing])
    return [entry.subject for entry in registered]
