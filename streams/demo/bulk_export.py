"""The demo's second act: a 2014-style bulk export, stopped by the detector and the gate."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from streams import topics
from streams.admin.controls import resume_recipient
from streams.core.policy import load_policy
from streams.core.times import iso_moment
from streams.demo.script import (
    BURST_CONSENTING,
    BURST_MINUTES,
    BURST_PHOTOS,
    BURST_USERS,
    HOUR,
    MINUTE,
    MODEL,
    VENDOR,
)
from streams.demo.tail import Tail, decisions_for
from streams.gate.topology import GateTopology
from streams.runtime.runner import StreamRunner
from streams.sdk import ConsentinelProducer
from streams.settings import Settings


def _write_burst(p: ConsentinelProducer, tag: str, start: int) -> tuple[str, list[str], set[str]]:
    """Write the burst; return the job id, the consenting users and the reads' event ids."""
    job = f"bulk-2014-{tag}"
    consenting: list[str] = []
    reads: list[tuple[str, str]] = []
    for i in range(BURST_USERS):
        owner = f"burst{i:04d}-{tag}"
        for k in range(BURST_PHOTOS):
            photo = f"burst{i:04d}-{k}-{tag}"
            p.photo_uploaded(
                photo_id=photo,
                owner_id=owner,
                content_sha256=hashlib.sha256(photo.encode()).hexdigest(),
                media_type="image/jpeg",
                size_bytes=150_000,
                occurred_at=start - 2 * HOUR,
            )
            reads.append((owner, photo))
        if i % 10 < BURST_CONSENTING * 10:
            p.consent_changed(
                user_id=owner,
                purpose="ML_TRAINING",
                granted=True,
                recipient_org=VENDOR,
                categories=["IMAGE"],
                notice_version="2026-11",
                occurred_at=start - HOUR,
            )
            consenting.append(owner)
    # photo k of every user, then photo k+1: the job sweeps the whole user base
    reads.sort(key=lambda r: r[1].rsplit("-", 2)[1])
    step = BURST_MINUTES * MINUTE / len(reads)
    ids = set()
    for n, (owner, photo) in enumerate(reads):
        event_id = p.training_read(
            job_id=job,
            model_id=MODEL,
            org=VENDOR,
            photo_id=photo,
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=start + int(n * step),
        )
        ids.add(event_id)
    p.flush()
    return job, consenting, ids


def _follow_ups(
    p: ConsentinelProducer, job: str, tag: str, owners: list[str], at: int
) -> dict[str, str]:
    """Write the job's next reads (consenting users' photos); return event id -> owner."""
    ids = {}
    for n, owner in enumerate(owners):
        event_id = p.training_read(
            job_id=job,
            model_id=MODEL,
            org=VENDOR,
            photo_id=owner.replace("-", "-0-", 1),
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=at + n,
        )
        ids[event_id] = owner
    p.flush()
    return ids


def _wait_gate(runner: StreamRunner[GateTopology], suspended: bool, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (runner.topology.processor.suspensions.suspension(VENDOR) is not None) == suspended:
            return True
        time.sleep(0.2)
    return False


def bulk_export_story(
    settings: Settings,
    policy_path: Path,
    runner: StreamRunner[GateTopology],
    alerts: Tail,
    tag: str,
) -> bool:
    """Let a bulk export cross the limit; return True if the detector and the gate stopped it."""
    limit_spec = load_policy(policy_path).recipients[VENDOR].bulk_export
    limit = f"{limit_spec.max_photos_per_hour:,}" if limit_spec else "no"
    start = int(time.time() * 1000)
    controls = Tail(settings, topics.TOPIC_CONTROLS)
    decisions = Tail(settings, topics.TOPIC_DECISIONS)
    try:
        with ConsentinelProducer(settings, source="consentinel-demo") as producer:
            reads = BURST_USERS * BURST_PHOTOS
            print(
                f"== 2014 again, at scale: training job bulk-2014-{tag} reads {reads:,} photos of"
                f" {BURST_USERS:,} users for {VENDOR} within {BURST_MINUTES} minutes (event time"
                f" from {iso_moment(start)}); {VENDOR}'s limit is {limit} photos per hour."
            )
            job, consenting, read_ids = _write_burst(producer, tag, start)

            def ours(alert: dict[str, Any]) -> bool:
                samples = set(alert["sample_event_ids"])
                return alert["kind"] == "BULK_EXPORT" and bool(samples & read_ids)

            def bulk(records: list[dict[str, Any]]) -> bool:
                return any(ours(a) for a in records)

            raised = alerts.until(bulk, timeout_s=120)
            alert = next((a for a in raised if ours(a)), None)
            if alert is None:
                print("!! no BULK_EXPORT alert within 120 s")
                return False
            crossed = (alert["raised_at"] - start) / 1000
            late = (
                ", after the job's last read: the gate judges at its partitions' stream time,"
                " which an earlier run of the demo left ahead"
                if crossed > BURST_MINUTES * 60
                else ""
            )
            print(
                f"\n * the detector's alert ({crossed:.0f} s into the job, event time{late})\n"
                f"   {alert['severity']} {alert['kind']} {alert['subject']}: {alert['summary']}\n"
            )
            suspended = controls.until(lambda r: bool(r), timeout_s=30)
            for control in suspended:
                print(
                    f" * the control it wrote to governance.controls\n"
                    f"   {control['kind']} {control['recipient_org']} by {control['actor']}:"
                    f" {control['reason']}\n"
                )
            latest: dict[str, dict[str, Any]] = {}
            for other in raised + alerts.until(lambda _: False, timeout_s=1):
                if other["kind"] == "UNCONSENTED_TRAINING":  # updated as the count grows
                    latest[other["alert_id"]] = other
            jobs = {job: "the same job", f"facerec-2014-{tag}": "the story's 2014-style job"}
            for other in latest.values():
                if other["subject"] in jobs:
                    print(
                        f" * and, about {jobs[other['subject']]}\n"
                        f"   {other['severity']} {other['kind']}: {other['summary']}\n"
                    )
            if not _wait_gate(runner, suspended=True):
                print("!! the gate did not apply the suspension within 30 s")
                return False
            after = start + (BURST_MINUTES + 1) * MINUTE
            held_ids = _follow_ups(producer, job, tag, consenting[:3], after)
            held = decisions_for(decisions, held_ids)
            print(" * the job's next reads (users who did consent), as the gate decides them")
            for d in held:
                print(f"   {d['verdict']:5} {d['reason']}: {d['explanation']}")
            topic, _ = resume_recipient(
                VENDOR,
                f"demo run {tag}: checked the alert, resuming so that reruns start clean",
                actor="operator:demo",
                producer=producer,
            )
            print(f"\n== an operator resumes {VENDOR} (RESUME_RECIPIENT to {topic})")
            if not _wait_gate(runner, suspended=False):
                print("!! the gate did not lift the suspension within 30 s")
                return False
            again_ids = _follow_ups(producer, job, tag, consenting[3:4], after + MINUTE)
            for d in decisions_for(decisions, again_ids):
                print(f"   {d['verdict']:5} {d['reason']}: {d['explanation']}")
        ok = len(held) == 3 and all(d["verdict"] == "HOLD" for d in held)
        print(
            f"\n== the bulk export was stopped: one {alert['kind']} alert, {VENDOR} suspended,"
            f" its next {len(held)} reads held; resumed afterwards."
            if ok
            else "\n!! the follow-up reads were not all held"
        )
        return ok
    finally:
        controls.close()
        decisions.close()
