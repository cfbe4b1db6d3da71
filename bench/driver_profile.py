"""``python -m bench.driver_profile``: the gate's hot path in-process, on the bench's input.

The bench's workload (:func:`bench.gen.generate`, a fixed end time so it is reproducible), plus a
few erasures, withdrawals after allowed shares, training reads and requests that arrive before
their upload (so user queues, recall ledgers and alerts are exercised too), is fed to the real
gate on the in-process :class:`~streams.runtime.testing.TopologyDriver` and run to the end.

It prints the CPU per input event (``time.process_time``: compare two runs only within one
sitting; the collector is tuned as the gate's runner tunes it) and, with ``--profile``, the top
of a cProfile of the run. :func:`digests` is what ``tests/unit/test_gate_hot_path.py`` compares
with the golden digests of the code before the hot-path change: every output record, the
changelog's live state and the verdict mix.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import logging
import pstats
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.gen import generate
from streams import topics
from streams.gate.topology import GateTopology
from streams.runtime.gc_tuning import GcTuning
from streams.runtime.options import RuntimeOptions
from streams.runtime.testing import DEFAULT_START_MS, TopologyDriver, sample_record
from streams.testing.topologies import gate_driver, memory_codec

POLICY = Path(__file__).resolve().parent / "policy.yaml"
END_MS = DEFAULT_START_MS - 60_000
HOUR = 3_600_000


def extras(
    driver: TopologyDriver[GateTopology], users: list[str], seed: int = 5
) -> tuple[list[Any], list[Any]]:
    """Return extra events (ts, topic, key, record) that exercise the rarer paths.

    The second list holds late withdrawals (they happened before accesses already allowed):
    append it once the first has been processed, for retroactive alerts.
    """
    rng = random.Random(seed)
    codec = driver.codec
    out: list[Any] = []
    late: list[Any] = []
    serial = 0

    def event(
        topic: str, owner: str, at: int, *, into: list[Any] | None = None, **fields: Any
    ) -> None:
        nonlocal serial
        serial += 1
        owner_field = (
            "user_id"
            if topic
            in (
                topics.TOPIC_CONSENT_CHANGES,
                topics.TOPIC_ERASURE_REQUESTS,
            )
            else "owner_id"
        )
        record = sample_record(
            codec, topic, event_id=f"x-{serial}", occurred_at=at, **{owner_field: owner}, **fields
        )
        (out if into is None else into).append((at, topic, owner.encode(), record))

    for i, user in enumerate(rng.sample(users, min(len(users), 60))):
        at = END_MS - rng.randint(2 * HOUR, 48 * HOUR)
        photo = f"xp-{i}"
        digest = hashlib.sha256(photo.encode()).hexdigest()
        event(
            topics.TOPIC_CONSENT_CHANGES,
            user,
            at - 3 * HOUR,
            granted=True,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            recipient_org=None,
            expires_at=None,
        )
        # the request is appended before its upload (it waits in the user's queue)
        event(
            topics.TOPIC_SHARE_REQUESTS,
            user,
            at + 10,
            share_id=f"xs-{i}",
            photo_id=photo,
            requester="share-svc",
            recipient_org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
        )
        event(topics.TOPIC_PHOTO_UPLOADS, user, at, photo_id=photo, content_sha256=digest)
        event(
            topics.TOPIC_TRAINING_READS,
            user,
            at + 20,
            photo_id=photo,
            job_id=f"j-{i}",
            model_id=f"m-{i}",
            org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
        )
        kind = i % 4
        if kind == 0:  # a withdrawal before the allowed accesses, late: alerts and recalls
            event(
                topics.TOPIC_CONSENT_CHANGES,
                user,
                at + 5,
                into=late,
                granted=False,
                purpose="ML_TRAINING",
                categories=[],
                recipient_org=None,
                expires_at=None,
            )
        elif kind == 1:  # a photo erasure, then a request for it
            event(
                topics.TOPIC_ERASURE_REQUESTS,
                user,
                at + HOUR,
                request_id=f"t-{i}",
                scope="PHOTO",
                photo_id=photo,
                reason="USER_REQUEST",
            )
            event(
                topics.TOPIC_SHARE_REQUESTS,
                user,
                at + 2 * HOUR,
                share_id=f"xs2-{i}",
                photo_id=photo,
                requester="share-svc",
                recipient_org="acme-vision",
                purpose="ML_TRAINING",
                categories=["IMAGE"],
            )
        elif kind == 2:  # an account erasure
            event(
                topics.TOPIC_ERASURE_REQUESTS,
                user,
                at + HOUR,
                request_id=f"t-{i}",
                scope="ACCOUNT",
                photo_id=None,
                reason="USER_REQUEST",
            )
        else:  # a copy of another user's photo, then a request for the copy
            other = users[(users.index(user) + 1) % len(users)]
            event(
                topics.TOPIC_PHOTO_UPLOADS,
                other,
                at + 30,
                photo_id=f"xc-{i}",
                content_sha256=digest,
            )
            event(
                topics.TOPIC_SHARE_REQUESTS,
                other,
                at + HOUR,
                share_id=f"xs3-{i}",
                photo_id=f"xc-{i}",
                requester="share-svc",
                recipient_org="photo-cdn",
                purpose="SERVICE_OPERATION",
                categories=["IMAGE"],
            )
    return out, late


def loaded_driver(
    requests: int, users: int, *, partitions: int = 8, options: RuntimeOptions | None = None
) -> tuple[TopologyDriver[GateTopology], int, list[Any]]:
    """Return a gate driver with the workload appended (nothing processed), its size, and the
    late events to append once it has been processed (:func:`run_all`)."""
    codec = memory_codec()
    driver = gate_driver(POLICY, partitions=partitions, codec=codec, options=options)
    work = generate(codec, "", requests=requests, users=users, end_ms=END_MS)
    events: list[Any] = list(work.events)
    more, late = extras(driver, work.users)
    events += more
    events.sort(key=lambda e: e[0])
    for ts, topic, key, value in events:
        driver.feed(topic, key, value, timestamp_ms=ts)
    return driver, len(events) + len(late), late


def run_all(driver: TopologyDriver[GateTopology], late: list[Any]) -> None:
    """Process the appended workload, then the late events (appended at the end's time)."""
    driver.run()
    for _, topic, key, value in late:
        driver.feed(topic, key, value, timestamp_ms=END_MS)
    driver.run()


def digests(driver: TopologyDriver[GateTopology]) -> dict[str, Any]:
    """Digests of every committed output record, of the changelog's live state, and the mix."""
    out: dict[str, Any] = {}
    spec = driver.spec
    for topic in sorted({*spec.outputs} - {*spec.internal}):
        h = hashlib.sha256()
        for record in driver.records(topic):
            h.update(repr((record.partition, record.key, record.value, record.headers)).encode())
        out[topic] = h.hexdigest()
    h = hashlib.sha256()
    for partition in range(driver.partitions):
        live: dict[bytes, bytes | None] = {}
        for key, value in driver.changelog(partition):
            live[key] = value
        for key in sorted(live):
            if live[key] is not None:
                h.update(repr((partition, key, live[key])).encode())
    out["changelog_live_state"] = h.hexdigest()
    mix = Counter(f"{d['verdict']}/{d['reason']}" for d in driver.outputs(topics.TOPIC_DECISIONS))
    out["verdicts"] = dict(sorted(mix.items()))
    out["dead_letters"] = dict(
        sorted(Counter(d["error_kind"] for d in driver.outputs(topics.TOPIC_DLQ)).items())
    )
    return out


def changelog_records(driver: TopologyDriver[GateTopology]) -> int:
    """How many changelog records the driver's commits wrote, over every partition."""
    return sum(len(driver.changelog(p)) for p in range(driver.partitions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.driver_profile", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    driver, events, late = loaded_driver(args.requests, args.users)
    production_gc = GcTuning(RuntimeOptions())  # the collector as `consentinel gate` sets it
    production_gc.apply()
    production_gc.freeze(force=True)  # the runner freezes what is alive after its restore
    profiler = cProfile.Profile() if args.profile else None
    began = time.process_time()
    if profiler is not None:
        profiler.enable()
    run_all(driver, late)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - began
    print(f"{events} input events, {cpu:.2f} s CPU: {cpu / events * 1e6:.1f} µs per input event")
    print(f"changelog records: {changelog_records(driver)}, commits: {driver.commits}")
    for key, value in digests(driver).items():
        print(f"  {key}: {value}")
    if profiler is not None:
        stream = io.StringIO()
        stats = pstats.Stats(profiler, stream=stream)
        stats.sort_stats(args.sort).print_stats(args.top)
        print(stream.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
