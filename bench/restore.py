"""State restore: how long a gate takes to rebuild N users' consent state from its changelog.

With ``ledgers=True`` (the ``recall`` run) every user also has a recall ledger (``l:<user id>``:
what left for whom, one to eight transfers, 64 templates built with the real
:class:`~streams.core.recall.RecallLedger`), so the restore replays two records per user.

The parent writes the changelog directly: ``u:<user id>`` -> :meth:`UserState.to_bytes` of a
realistic state (one to three consent records, up to four allowed accesses; 64 templates built
with the real :class:`UserState`, the user id substituted), spread evenly over the 8 partitions of
``<prefix>consentinel.gate.state-changelog``. A child process (``python -m bench.restore``) then
builds a gate exactly as ``consentinel gate`` does and calls
:meth:`~streams.runtime.runner.StreamRunner.restore_partition` for partitions 0..7 in turn (what the
gate does when it is assigned all of them), and prints a JSON line: seconds per partition, total,
records, and the process's peak RSS (VmHWM) -- the state of all 8 partitions lives in that one
process, as it would in one gate.

How long a gate restarted on its kept RocksDB state takes to decide again, against a full restore
of the same state, is :mod:`bench.restart` (``make bench-restart``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.common import CHANGELOG, PARTITIONS, POLICY
from bench.processes import proc_status_kb
from streams.core.consent import AllowedAccess, UserState
from streams.core.model import ConsentRecord, DataCategory, Purpose
from streams.settings import Settings

TEMPLATE_USER = "user-00000000"


def templates(count: int = 64, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for _ in range(count):
        state = UserState(TEMPLATE_USER)
        grants = []
        for purpose in rng.sample(
            [Purpose.ML_TRAINING, Purpose.PARTNER_SHARING, Purpose.ADVERTISING], rng.randint(1, 3)
        ):
            record = ConsentRecord(
                event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                user_id=TEMPLATE_USER,
                occurred_at_ms=now - rng.randint(1, 300) * 86_400_000,
                purpose=purpose,
                recipient_org=rng.choice([None, "acme-vision", "lovebird-partners"]),
                categories=frozenset({DataCategory.IMAGE}),
                granted=rng.random() < 0.85,
                notice_version="2026-11",
            )
            state.apply_consent(record)
            grants.append(record)
        for _ in range(rng.randint(0, 4)):
            grant = rng.choice(grants)
            state.record_allowed(
                AllowedAccess(
                    decision_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    subject_event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    occurred_at_ms=grant.occurred_at_ms + rng.randint(1, 10**9),
                    purpose=grant.purpose,
                    recipient_org=grant.recipient_org or "acme-vision",
                    consent_event_id=grant.event_id,
                )
            )
        out.append(state.to_bytes())
    return out


def ledger_templates(count: int = 64, seed: int = 13) -> list[bytes]:
    """Recall ledgers of :data:`TEMPLATE_USER` with one to eight transfers each."""
    from streams.core.recall import RecallLedger, Transfer

    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for _ in range(count):
        ledger = RecallLedger(TEMPLATE_USER)
        for _ in range(rng.randint(1, 8)):
            org, purpose = rng.choice(
                [("acme-vision", "ML_TRAINING"), ("lovebird-partners", "PARTNER_SHARING")]
            )
            ledger.record(
                Transfer(
                    decision_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    photo_id=f"ph-{rng.getrandbits(30):09d}",
                    recipient_org=org,
                    purpose=purpose,
                    allowed=True,
                    consent_event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    at_ms=now - rng.randint(1, 10**9),
                )
            )
        out.append(ledger.to_bytes())
    return out


def write_changelog(
    settings: Settings, prefix: str, users: int, *, ledgers: bool = False
) -> dict[str, Any]:
    """Write ``users`` user states (and recall ledgers) to the prefixed changelog; return what
    was written."""
    values = templates()
    ledger_values = ledger_templates() if ledgers else []
    placeholder = TEMPLATE_USER.encode()
    producer = Producer(
        {
            **settings.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 100,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
        }
    )
    topic = prefix + CHANGELOG
    started = time.monotonic()
    total_bytes = 0
    produce = producer.produce
    for i in range(users):
        uid = b"user-%08d" % i
        value = values[i & 63].replace(placeholder, uid)
        total_bytes += len(value)
        records = [(b"u:" + uid, value)]
        if ledgers:
            ledger = ledger_values[(i * 7) & 63].replace(placeholder, uid)
            total_bytes += len(ledger)
            records.append((b"l:" + uid, ledger))
        for key, record in records:
            while True:
                try:
                    produce(topic, record, key, partition=i % PARTITIONS)
                    break
                except BufferError:
                    producer.poll(0.1)
    if producer.flush(600):
        raise RuntimeError("changelog records not delivered")
    return {
        "users": users,
        "state": "consent+recall" if ledgers else "consent",
        "records": users * (2 if ledgers else 1),
        "value_bytes_avg": round(total_bytes / max(users, 1), 1),
        "write_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    from streams.gate.app import build_runner
    from streams.settings import load_settings

    settings = load_settings()
    baseline_kb = proc_status_kb(os.getpid(), "VmRSS") or 0
    runner = build_runner(settings, POLICY)
    per_partition = []
    rss_after = []
    records = 0
    started = time.monotonic()
    for partition in range(PARTITIONS):
        t0 = time.monotonic()
        if hasattr(runner, "restore_partition"):
            records += runner.restore_partition(partition)
        else:  # a gate from before the public wrapper: count what the store holds
            runner._restore(partition)
            records += len(runner.tasks[partition].state.store)
        per_partition.append(round(time.monotonic() - t0, 2))
        rss_after.append(round((proc_status_kb(os.getpid(), "VmRSS") or 0) / 1024))
    total = time.monotonic() - started
    result = {
        "store": settings.state_store,
        "records": records,
        "total_s": round(total, 2),
        "per_partition_s": per_partition,
        "rss_mb_after_each_partition": rss_after,
        "records_per_s": round(records / total) if total else None,
        "peak_rss_mb": round((proc_status_kb(os.getpid(), "VmHWM") or 0) / 1024, 1),
        "rss_mb": round((proc_status_kb(os.getpid(), "VmRSS") or 0) / 1024, 1),
        "baseline_rss_mb": round(baseline_kb / 1024, 1),
    }
    print("RESULT " + json.dumps(result), flush=True)
    for state in [t.state for t in runner.tasks.values()]:  # release RocksDB files
        state.close()
    # RocksDB state is kept across restarts now: drop it, so that the next case's timed restore
    # does not delete this one's files first
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    return 0


def parse_result(log: Path) -> dict[str, Any] | None:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    return None


if __name__ == "__main__":
    sys.exit(main())
