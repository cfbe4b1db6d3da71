"""Restart on kept state: how soon a gate killed at N users decides again, vs a full restore.

One run per user count, on fresh topics (``python -m bench.restart --users 1000000,10000000``):

1. N users' consent states (with ``--ledgers`` a recall ledger each too) are written to the
   changelog as :mod:`bench.restore` writes them (user ``i`` on partition ``i % 8``), and photos
   are uploaded for :data:`PROBE_USERS` of them whose requests the SDK routes to that same
   partition.
2. A gate with the ``rocksdb`` store starts on an empty state directory (a full restore: every
   changelog record), and one request per probe user is produced at once. Measured: seconds from
   the process's start to its first decision, and to the last probe's.
3. The gate is SIGKILLed and started again on the same state directory (the kept store: only the
   changelog's tail), and the probes are asked again (new event ids). Measured the same way.
4. Reported: both times, their ratio, the changelog records each start restored (from the gate's
   log), and whether every probe got the same verdict and reason from both starts.

Prints one ``RESULT {json}`` line per user count; timings are wall-clock seconds on this machine,
with whatever else runs on it (``machine_busy`` says how busy it was).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import (
    PARTITIONS,
    create_env,
    drop_prefix,
    ensure_bench_policy,
    env_settings,
    new_prefix,
    say,
)
from bench.processes import machine_busy_seconds, python_env, signing_key, start
from bench.restore import write_changelog
from streams import topics
from streams.core.partitioning import partition_for
from streams.sdk.producer import ConsentinelProducer
from streams.settings import Settings, load_settings

PROBE_USERS = 64
"""Users asked about after each start (8 per partition)."""

RESTORED = re.compile(r"partition (\d+) restored: (\d+) changelog records in ([\d.]+)s")


def probe_users(users: int) -> list[int]:
    """Return user numbers whose requests land on the partition holding their state."""
    chosen: dict[int, list[int]] = {}
    for i in range(users):
        partition = i % PARTITIONS
        wanted = len(chosen.setdefault(partition, [])) < PROBE_USERS // PARTITIONS
        if wanted and partition_for(f"user-{i:08d}", PARTITIONS) == partition:
            chosen[partition].append(i)
        if sum(len(v) for v in chosen.values()) == PROBE_USERS:
            break
    return sorted(n for numbers in chosen.values() for n in numbers)


def upload_photos(producer: ConsentinelProducer, numbers: list[int], now: int) -> None:
    for i in numbers:
        producer.photo_uploaded(
            photo_id=f"bench-ph-{i}",
            owner_id=f"user-{i:08d}",
            content_sha256=f"{i:064x}",
            media_type="image/jpeg",
            size_bytes=1,
            occurred_at=now - 60_000,
        )
    producer.flush()


def ask(producer: ConsentinelProducer, numbers: list[int], now: int) -> dict[str, int]:
    """Produce one share request per probe user; return event id -> user number."""
    asked = {}
    for i in numbers:
        event_id = producer.share_requested(
            photo_id=f"bench-ph-{i}",
            owner_id=f"user-{i:08d}",
            requester="svc",
            recipient_org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=now,
        )
        asked[event_id] = i
    producer.flush()
    return asked


class Decisions:
    """A read_committed reader of the decisions topic, from its end as of creation."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": f"{topic}-bench-restart",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        self.topic = topic
        parts = []
        for p in range(PARTITIONS):
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            parts.append(TopicPartition(topic, p, high))
        self.consumer.assign(parts)

    def wait(
        self, codec: Any, asked: dict[str, int], began: float, timeout_s: float
    ) -> tuple[float, float, dict[int, tuple[str, str]]]:
        """Return (s to the first decision, s to the last probe's, user -> (verdict, reason))."""
        first: float | None = None
        verdicts: dict[int, tuple[str, str]] = {}
        deadline = time.monotonic() + timeout_s
        while len(verdicts) < len(asked):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(verdicts)} of {len(asked)} probes decided")
            message = self.consumer.poll(0.05)
            if message is None or message.error():
                continue
            if first is None:
                first = time.monotonic() - began
            decision = codec.decode(self.topic, message.value())
            user = asked.get(decision["subject_event_id"])
            if user is not None:
                verdicts[user] = (decision["verdict"], decision["reason"])
        assert first is not None
        return first, time.monotonic() - began, verdicts

    def close(self) -> None:
        self.consumer.close()


def restored_records(log: Path, since: int) -> tuple[int, float]:
    """Sum the records and the seconds of the restores logged after byte ``since`` of ``log``."""
    text = log.read_bytes()[since:].decode(errors="replace")
    found = RESTORED.findall(text)
    return sum(int(n) for _, n, _ in found), round(sum(float(s) for _, _, s in found), 2)


def one_start(
    env: dict[str, str],
    log: Path,
    reader: Decisions,
    codec: Any,
    producer: ConsentinelProducer,
    numbers: list[int],
    timeout_s: float,
) -> tuple[subprocess.Popen[bytes], dict[str, Any], dict[int, tuple[str, str]]]:
    size = log.stat().st_size if log.exists() else 0
    busy = machine_busy_seconds()
    began = time.monotonic()
    gate = start([sys.executable, "-m", "streams.cli", "gate", "--policy", str(POLICY)], env, log)
    asked = ask(producer, numbers, int(time.time() * 1000))
    first, last, verdicts = reader.wait(codec, asked, began, timeout_s)
    elapsed = time.monotonic() - began
    records, restore_s = restored_records(log, size)
    return (
        gate,
        {
            "first_decision_s": round(first, 2),
            "all_probes_decided_s": round(last, 2),
            "changelog_records_restored": records,
            "restore_s_logged": restore_s,
            "machine_busy": round((machine_busy_seconds() - busy) / elapsed, 2),
        },
        verdicts,
    )


POLICY = ensure_bench_policy()


def run(
    base: Settings, users: int, work: Path, timeout_s: float, *, ledgers: bool = False
) -> dict[str, Any]:
    admin = AdminClient(base.kafka_config())
    prefix = new_prefix("k")
    try:
        codec = create_env(base, admin, prefix)
        written = write_changelog(base, prefix, users, ledgers=ledgers)
        say(f"restart: {users} users' {written['state']} state written in {written['write_s']}s")
        settings = env_settings(base, prefix)
        producer = ConsentinelProducer(settings, source="bench-restart", codec=codec)
        numbers = probe_users(users)
        upload_photos(producer, numbers, int(time.time() * 1000))
        env = python_env(
            base,
            prefix,
            CONSENTINEL_STATE_STORE="rocksdb",
            CONSENTINEL_INSTANCE_ID="bench-restart",
            CONSENTINEL_STATE_DIR=str(work / f"state-{prefix}"),
            CONSENTINEL_SIGNING_KEY=signing_key(work),
            CONSENTINEL_DECISION_CLOCK="stream",
        )
        log = work / f"restart-{users}.log"
        reader = Decisions(settings, prefix + topics.TOPIC_DECISIONS)
        gate, full, full_verdicts = one_start(env, log, reader, codec, producer, numbers, timeout_s)
        say(f"restart: {users} users, full restore: {full}")
        gate.send_signal(signal.SIGKILL)
        gate.wait(60)
        gate, kept, kept_verdicts = one_start(env, log, reader, codec, producer, numbers, timeout_s)
        say(f"restart: {users} users, kept store: {kept}")
        gate.send_signal(signal.SIGTERM)
        gate.wait(120)
        reader.close()
        differ = sorted(u for u in numbers if full_verdicts.get(u) != kept_verdicts.get(u))
        mix: dict[str, int] = {}
        for verdict, reason in full_verdicts.values():
            mix[f"{verdict}/{reason}"] = mix.get(f"{verdict}/{reason}", 0) + 1
        return {
            "users": users,
            **written,
            "full_restore": full,
            "kept_store": kept,
            "ratio_first_decision": round(
                full["first_decision_s"] / max(kept["first_decision_s"], 0.01), 1
            ),
            "probes": len(numbers),
            "probe_verdicts": mix,
            "probes_decided_differently": len(differ),
        }
    finally:
        drop_prefix(base, admin, prefix)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="1000000", help="comma-separated, e.g. 1000000,10000000")
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument(
        "--ledgers", action="store_true", help="a recall ledger per user too (2 records a user)"
    )
    parser.add_argument("--logs", type=Path, help="keep the gates' logs here (default: dropped)")
    args = parser.parse_args()
    base = load_settings()
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        for users in [int(n) for n in args.users.split(",")]:
            result = run(base, users, Path(tmp), args.timeout_s, ledgers=args.ledgers)
            print("RESULT " + json.dumps(result), flush=True)
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                log = Path(tmp) / f"restart-{users}.log"
                (args.logs / log.name).write_bytes(log.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
