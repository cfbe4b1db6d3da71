"""``python -m bench.burst`` (``make bench-burst``): the live burst of issue #19, hop by hop.

On the local stack, under a fresh topic prefix: a real gate and a real detector as processes
(``consentinel gate`` / ``consentinel detect``), a policy in which each run's recipient may take
``--limit`` photos an hour (``auto_suspend: true``), 64 consenting users. A warm-up burst to a
recipient with a limit of 50 goes first (the processes' first alert and control, schema
look-ups included), then ``--runs`` runs, each a burst of ``--requests`` share requests at
``--rate`` per second to a recipient of its own. Beside them a ``read_committed`` observer and a
poller of the detector's committed offsets (:mod:`bench.burst_watch`); per run the timeline of
the crossing request (:mod:`bench.burst_hops`): sent → on the broker → decided → decision
visible → detector committed past it → (repartition) → alert produced → alert visible →
``SUSPEND_RECIPIENT`` visible → first ``HOLD`` decided → visible.

Results: ``bench/results/burst-<date>[-<tag>].json`` and a table on stdout. ``--gate-env`` and
``--detector-env`` (``NAME=VALUE``, repeatable) set a process's environment, to compare settings
on the same machine in one sitting. It does not touch ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench.burst_hops import HOPS, Seen, markdown, summarize, timeline
from bench.burst_watch import CommitPoller, Observer, ProcessProbe, Raw, send_burst, usage
from bench.common import (
    EXAMPLE_POLICY,
    REPO,
    create_env,
    drop_prefix,
    env_settings,
    new_prefix,
    say,
)
from bench.consumer_groups import wait_consumed
from bench.modes import RESULTS
from bench.observe import ensure_stack, free_port, wait_ready
from bench.processes import machine_busy_seconds, python_env, signing_key, start, stop
from streams import topics
from streams.sdk.producer import ConsentinelProducer
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

USERS = 64
WARMUP = "burst-warmup"
WARMUP_LIMIT = 50


def recipient(run: int) -> str:
    return f"burst-vendor-{run}"


def write_policy(path: Path, runs: int, limit: int) -> Path:
    """Write the example policy (live time bounds) with one burst recipient per run."""
    text = EXAMPLE_POLICY.read_text()
    block = "".join(
        f"  {name}:\n"
        '    agreement: {id: DPA-BENCH-BURST, expires: "2099-12-31"}\n'
        "    purposes: [ML_TRAINING]\n"
        f"    bulk_export: {{max_photos_per_hour: {cap}, auto_suspend: true}}\n"
        for name, cap in [(WARMUP, WARMUP_LIMIT), *((recipient(i), limit) for i in range(runs))]
    )
    if "\nrecipients:\n" not in text:
        raise RuntimeError(f"{EXAMPLE_POLICY}: no top-level `recipients:`; update bench.burst")
    path.write_text(text.replace("\nrecipients:\n", "\nrecipients:\n" + block, 1))
    return path


def seed(producer: ConsentinelProducer, tag: str) -> list[tuple[str, str]]:
    """Upload one photo per user and grant ML_TRAINING to any recipient; return the pairs."""
    now = int(time.time() * 1000)
    pairs = [(f"u{i}-{tag}", f"p{i}-{tag}") for i in range(USERS)]
    for owner, photo in pairs:
        producer.photo_uploaded(
            photo_id=photo,
            owner_id=owner,
            content_sha256=hashlib.sha256(photo.encode()).hexdigest(),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=now - 60_000,
        )
        producer.consent_changed(
            user_id=owner,
            purpose="ML_TRAINING",
            granted=True,
            notice_version="bench",
            categories=["IMAGE"],
            occurred_at=now - 50_000,
        )
    producer.flush()
    return pairs


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


class BurstBench:
    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args = args
        self.work_dir = work_dir
        self.base = load_settings()
        self.admin = AdminClient(self.base.kafka_config())
        self.prefix = new_prefix("burst")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.settings: Settings | None = None
        self.codec: AvroCodec | None = None
        self.probes: list[ProcessProbe] = []
        self._decoded: dict[tuple[str, int, int], Seen] = {}

    def topic(self, name: str) -> str:
        return self.prefix + name

    def process(self, what: str, policy: Path, extra: dict[str, str]) -> ProcessProbe:
        port = free_port()
        argv = [sys.executable, "-m", "streams.cli", what, "--policy", str(policy)]
        env = python_env(
            self.base,
            self.prefix,
            CONSENTINEL_INSTANCE_ID=f"burst-{what}",
            CONSENTINEL_STATE_DIR=str(self.work_dir / "state"),
            CONSENTINEL_SIGNING_KEY=signing_key(self.work_dir),
            METRICS_PORT=str(port),
            **extra,
        )
        proc = start(argv, env, self.work_dir / f"{what}.log")
        self.procs.append(proc)
        wait_ready(port, 180, alive=proc)
        metrics = "consentinel_gate" if what == "gate" else "consentinel_detector"
        return ProcessProbe(what, proc.pid, port, metrics)

    def observe(self, run: str) -> Observer:
        by_recipient, _, _ = topics.detector_topics()
        names = [
            topics.TOPIC_SHARE_REQUESTS,
            topics.TOPIC_DECISIONS,
            topics.TOPIC_ALERTS,
            topics.TOPIC_CONTROLS,
            by_recipient,
        ]
        observer = Observer(
            self.base.kafka_config(),
            f"{self.prefix}burst-observer-{run}",
            [self.topic(n) for n in names],
        )
        observer.start()
        return observer

    def decode(self, raws: list[Raw], json_payload: bool = False) -> list[Seen]:
        """Decode what the observer saw (each record once: the wait loop asks again and again)."""
        assert self.codec is not None
        out = []
        for r in raws:
            key = (r.topic, r.partition, r.offset)
            seen = self._decoded.get(key)
            if seen is None:
                value = (
                    json.loads(r.value or b"{}")
                    if json_payload
                    else self.codec.decode(r.topic, r.value)
                )
                seen = self._decoded[key] = Seen(
                    r.seen_ms, r.timestamp_ms, r.partition, r.offset, value
                )
            out.append(seen)
        return out

    def one_run(
        self,
        producer: ConsentinelProducer,
        owners: list[tuple[str, str]],
        name: str,
        to: str,
        count: int,
        limit: int,
    ) -> dict[str, Any]:
        observer = self.observe(name)
        poller = CommitPoller(self.admin, self.prefix + topics.DETECTOR_APP)
        poller.start()
        time.sleep(1.0)  # the observer has fetched once; the poller knows the offsets before
        before = [p.read() for p in self.probes]
        busy = machine_busy_seconds()
        began = time.monotonic()
        burst = send_burst(
            producer, owners, recipient=to, requester=f"svc-{name}", count=count,
            per_second=self.args.rate,
        )  # fmt: skip
        deadline = time.monotonic() + self.args.settle_s
        decisions: list[Seen] = []
        while time.monotonic() < deadline:
            time.sleep(0.5)
            decisions = self.decode(observer.of(self.topic(topics.TOPIC_DECISIONS)))
            mine = sum(1 for d in decisions if d.value.get("recipient_org") == to)
            controls = self.decode(observer.of(self.topic(topics.TOPIC_CONTROLS)))
            suspended = any(c.value.get("recipient_org") == to for c in controls)
            if mine >= count and suspended:
                time.sleep(1.0)  # the alert is in the control's transaction; let the poller see
                break
        wall = time.monotonic() - began
        machine = (machine_busy_seconds() - busy) / wall
        after = [p.read() for p in self.probes]
        observer.stop()
        poller.stop()
        by_recipient, _, _ = topics.detector_topics()
        requests = self.decode(observer.of(self.topic(topics.TOPIC_SHARE_REQUESTS)))
        result = timeline(
            recipient=to,
            limit=limit,
            sent_ms=burst.sent_ms,
            requests={str(r.value["event_id"]): r for r in requests},
            decisions=self.decode(observer.of(self.topic(topics.TOPIC_DECISIONS))),
            alerts=self.decode(observer.of(self.topic(topics.TOPIC_ALERTS))),
            controls=self.decode(observer.of(self.topic(topics.TOPIC_CONTROLS))),
            forwarded=self.decode(observer.of(self.topic(by_recipient)), json_payload=True),
            commits=poller.changes,
            decisions_topic=self.topic(topics.TOPIC_DECISIONS),
        )
        result["send_loop_behind_max_s"] = round(burst.behind_max_s, 3)
        result["window_s"] = round(wall, 1)
        result["machine_cores_busy"] = round(machine, 2)
        for probe, b, a in zip(self.probes, before, after, strict=True):
            result[probe.name] = usage(b, a, wall)
        return result

    def run(self) -> dict[str, Any]:
        args = self.args
        ensure_stack()
        say(f"prefix {self.prefix}; logs in {self.work_dir}")
        self.codec = create_env(self.base, self.admin, self.prefix)
        self.settings = env_settings(self.base, self.prefix)
        policy = write_policy(self.work_dir / "policy.yaml", args.runs, args.limit)
        producer = ConsentinelProducer(self.settings, codec=self.codec, source="bench-burst")
        owners = seed(producer, self.prefix.rstrip("."))
        self.probes.append(self.process("gate", policy, parse_env(args.gate_env)))
        wait_consumed(self.base, self.admin, self.prefix + "consentinel-gate", self.prefix, 120)
        self.probes.append(self.process("detect", policy, parse_env(args.detector_env)))
        say("gate and detector ready")
        warm: dict[str, Any] = {}
        if args.warmup:  # else the first run meets the processes cold (first alert, look-ups)
            warm = self.one_run(producer, owners, "warmup", WARMUP, 4 * WARMUP_LIMIT, WARMUP_LIMIT)
            say(f"warm-up: alert visible {warm.get('hops_ms', {}).get('alert_visible')} ms")
        runs = []
        for i in range(args.runs):
            if i or args.warmup:
                time.sleep(args.pause_s)
            one = self.one_run(producer, owners, f"r{i}", recipient(i), args.requests, args.limit)
            runs.append(one)
            hops = one.get("hops_ms", {})
            say(
                f"run {i + 1}/{args.runs}: alert visible {hops.get('alert_visible')} ms,"
                f" first HOLD {hops.get('first_hold_decided')} ms, held {one.get('held')},"
                f" {one.get('verdicts')} gate {one.get('gate')} detector {one.get('detect')}"
                f" machine {one.get('machine_cores_busy')} cores {one.get('error', '')}"
            )
        return {
            "date": datetime.date.today().isoformat(),
            "started_at": datetime.datetime.now().isoformat(timespec="seconds"),
            "tag": args.tag,
            "commit": _head(),
            "config": {
                "rate_per_s": args.rate,
                "requests": args.requests,
                "limit_per_hour": args.limit,
                "runs": args.runs,
                "warmup": args.warmup,
                "gate_env": parse_env(args.gate_env),
                "detector_env": parse_env(args.detector_env),
            },
            "hops": [{"key": k, "what": w} for k, w in HOPS],
            "warmup": warm,
            "runs": runs,
            "summary": summarize(runs),
        }

    def close(self) -> None:
        stop(self.procs)
        if not self.args.keep:
            drop_prefix(self.base, self.admin, self.prefix)


def _head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "streams"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=400.0, help="requests per second")
    parser.add_argument("--limit", type=int, default=1000, help="the recipient's photos per hour")
    parser.add_argument("--pause-s", type=float, default=3.0, help="idle time before each run")
    parser.add_argument("--settle-s", type=float, default=60.0, help="wait after a burst at most")
    parser.add_argument("--gate-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--detector-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a warm-up burst first (--no-warmup: the first run starts as soon as both are ready)",
    )
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--keep", action="store_true", help="keep the prefixed topics")
    args = parser.parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="consentinel-bench-burst-"))
    bench = BurstBench(args, work_dir)
    try:
        results = bench.run()
    finally:
        bench.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"burst-{results['date']}" + (f"-{args.tag}" if args.tag else "")
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown({args.tag or "this run": results["summary"]}))
    print(f"alert visible (ms): {results['summary']['alert_visible_ms']}")
    print(f"held per run: {results['summary']['held_per_run']}")
    print(f"verdicts: {results['summary']['verdicts']}")
    say(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
