"""Injectable scenarios: the incidents the detectors exist for, with their ground truth.

A scenario is written ``NAME`` or ``NAME@OFFSET`` (``OFFSET`` from the simulation's start in event
time, e.g. ``90s``, ``30m``, ``4d10h``); without an offset the scenarios are spread evenly over
the run. Each records, when it ends (or the run does), one :class:`~.engine.GroundTruth` line per
alert it should cause, with the crossing time where the contract defines one:

``bulk-2014``
    A training job reads the photos of (nearly) every user for the AI vendor within
    ``minutes`` (default 30), most without consent. Expected: ``UNCONSENTED_TRAINING`` for the job
    (crossing: its first read not allowed) and ``BULK_EXPORT`` for the vendor (crossing: the
    allowed reads in the sliding hour exceed the policy limit; null if they never do, then only
    the learned baseline can catch it).
``slow-drip``
    Steady allowed exports to a recipient with a limit -- ``per_hour`` (default 20% of the limit)
    for ``hours`` (default 4): under the hourly limit, far above normal at a quiet hour. Expected:
    ``BULK_EXPORT`` from the learned baseline (no crossing time: it depends on what was learned;
    needs ``warmup_days`` of history first).
``probe``
    One unknown requester asks to share random users' photos with a partner, ``per_second``
    (default 4) for ``minutes`` (default 3); most are denied. Expected: ``DENIED_BURST`` for the
    requester (and for the partner if its own denials cross too).
``revoke-after-training``
    A job reads a consenting user's photos (allowed); minutes later a withdrawal arrives whose
    ``occurred_at`` is before those reads. Expected: ``RETROACTIVE_VIOLATION`` for the vendor
    (crossing: when the withdrawal is produced); lineage lists the job's model for the user.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.core.model import Purpose
from streams.errors import ConfigError
from streams.simulate.engine import Engine, GroundTruth, Process, SimEvent
from streams.simulate.population import ALLOW

MINUTE = 60_000
HOUR = 3_600_000
_UNITS = {"d": 86_400_000, "h": HOUR, "m": MINUTE, "s": 1000}
_OFFSET = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """A scenario to inject: its name, start offset from the run's start, and parameters."""

    name: str
    offset_ms: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


def parse_offset(text: str) -> int:
    """Parse ``4d10h``, ``30m``, ``90s`` (or a bare number of seconds) into milliseconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1000)
    parts = _OFFSET.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"bad scenario offset {text!r}", hint="write e.g. 90s, 30m, 2h, 4d10h")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def parse_scenarios(texts: Sequence[str], duration_ms: int) -> list[ScenarioSpec]:
    """Parse ``NAME[@OFFSET]`` items; spread those without an offset evenly over the run."""
    specs = []
    for i, text in enumerate(texts):
        name, _, offset = text.partition("@")
        if name not in SCENARIOS:
            raise ConfigError(
                f"unknown scenario {name!r}", hint="one of: " + ", ".join(sorted(SCENARIOS))
            )
        at = parse_offset(offset) if offset else duration_ms * (i + 1) // (len(texts) + 1)
        specs.append(ScenarioSpec(name, at))
    return specs


# ------------------------------------------------------------------ helpers


def _vendor(engine: Engine, purpose: str, params: dict[str, Any]) -> str | None:
    """Return the recipient to target: ``params['recipient']``, else one allowed ``purpose``.

    Prefers a recipient with a ``bulk_export`` limit, then an external one.
    """
    if params.get("recipient"):
        return str(params["recipient"])
    options = [r for r in engine.policy.recipients.values() if Purpose(purpose) in r.purposes]
    options.sort(key=lambda r: (r.bulk_export is None, r.internal, r.org))
    return options[0].org if options else None


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(24):06x}"


# ------------------------------------------------------------------ the scenarios


def bulk_2014(engine: Engine, spec: ScenarioSpec, start: int, rng: random.Random) -> Process:
    """Photos of many users to one AI vendor for training, most without consent."""
    params = spec.params
    vendor = _vendor(engine, "ML_TRAINING", params)
    job = f"bulk-2014-{_hex(rng)}"
    model = str(params.get("model", "faceprint-2014"))
    categories = tuple(params.get("categories", ("IMAGE",)))
    yield start
    photos = [(u, p) for u in engine.users for p in u.photos]
    rng.shuffle(photos)
    photos = photos[: int(params.get("photos", len(photos)))]
    span = float(params.get("minutes", 30)) * MINUTE
    step = span / max(1, len(photos))
    last = start
    allowed = 0
    try:
        if vendor is None:
            return
        for i, (user, photo) in enumerate(photos):
            event = engine.training_read(
                user,
                photo,
                rng,
                job_id=job,
                model_id=model,
                org=vendor,
                categories=categories,
                scenario=spec.name,
            )
            allowed += event.verdict == ALLOW
            last = engine.now
            yield event
            yield start + int((i + 1) * step)
    finally:
        end = last
        details = {
            "job_id": job,
            "model_id": model,
            "org": vendor,
            "reads": len(photos),
            "predicted_allowed": allowed,
        }
        engine.ground_truth.append(
            GroundTruth(
                spec.name,
                "UNCONSENTED_TRAINING",
                job,
                start,
                end,
                engine.first_crossing("UNCONSENTED_TRAINING", job, start, end),
                details,
            )
        )
        engine.ground_truth.append(
            GroundTruth(
                spec.name,
                "BULK_EXPORT",
                vendor or "",
                start,
                end,
                engine.first_crossing("BULK_EXPORT", vendor or "", start, end),
                details,
            )
        )


def slow_drip(engine: Engine, spec: ScenarioSpec, start: int, rng: random.Random) -> Process:
    """Export, allowed, under the hourly limit but far above the recipient's usual volume."""
    params = spec.params
    org = _vendor(engine, "ML_TRAINING", params)
    recipient = engine.policy.recipient(org) if org else None
    limit = recipient.bulk_export.max_photos_per_hour if recipient and recipient.bulk_export else 0
    per_hour = float(params.get("per_hour", 0.2 * limit if limit else 500))
    hours = float(params.get("hours", 4))
    job = f"drip-{_hex(rng)}"
    model = str(params.get("model", "scene-v3"))
    categories = ("IMAGE",)
    yield start
    end_at = start + int(hours * HOUR)
    t = float(start)
    sent = 0
    last = start
    try:
        while org is not None:
            t += rng.expovariate(per_hour / HOUR)
            if t >= end_at:
                break
            yield int(t)
            picked = engine.consented_photo(rng, "ML_TRAINING", org, categories)
            if picked is None:
                continue
            sent += 1
            last = engine.now
            yield engine.training_read(
                picked[0],
                picked[1],
                rng,
                job_id=job,
                model_id=model,
                org=org,
                categories=categories,
                scenario=spec.name,
            )
    finally:
        details = {
            "job_id": job,
            "model_id": model,
            "per_hour": per_hour,
            "limit": limit,
            "reads": sent,
        }
        engine.ground_truth.append(
            GroundTruth(
                spec.name,
                "BULK_EXPORT",
                org or "",
                start,
                last,
                engine.first_crossing("BULK_EXPORT", org or "", start, last),
                details,
            )
        )


def probe(engine: Engine, spec: ScenarioSpec, start: int, rng: random.Random) -> Process:
    """One requester asks for many random users' photos: a denial burst."""
    params = spec.params
    partner = _vendor(engine, "PARTNER_SHARING", params)
    requester = f"probe-{_hex(rng)}"
    per_second = float(params.get("per_second", 4))
    end_at = start + int(float(params.get("minutes", 3)) * MINUTE)
    t = float(start)
    sent = denied = 0
    last = start
    yield start
    try:
        while partner is not None:
            t += rng.expovariate(per_second / 1000)
            if t >= end_at:
                break
            yield int(t)
            user_id = engine.with_photos.choice(rng)
            if user_id is None:
                break
            user = engine.by_id[user_id]
            event = engine.share(
                user,
                rng.choice(user.photos),
                rng,
                requester=requester,
                recipient=partner,
                purpose="PARTNER_SHARING",
                categories=("IMAGE", "PROFILE_TEXT"),
                scenario=spec.name,
            )
            sent += 1
            denied += event.verdict != ALLOW
            last = engine.now
            yield event
    finally:
        details = {
            "requester": requester,
            "recipient": partner,
            "requests": sent,
            "predicted_denials": denied,
        }
        engine.ground_truth.append(
            GroundTruth(
                spec.name,
                "DENIED_BURST",
                requester,
                start,
                last,
                engine.first_crossing("DENIED_BURST", requester, start, last, "requester"),
                details,
            )
        )
        crossed = engine.first_crossing("DENIED_BURST", partner or "", start, last, "recipient")
        if crossed is not None:
            engine.ground_truth.append(
                GroundTruth(spec.name, "DENIED_BURST", partner or "", start, last, crossed, details)
            )


def revoke_after_training(
    engine: Engine, spec: ScenarioSpec, start: int, rng: random.Random
) -> Process:
    """Read a consenting user's photos, then withdraw the consent backdated to before that."""
    params = spec.params
    org = _vendor(engine, "ML_TRAINING", params)
    job = f"adhoc-{_hex(rng)}"
    model = str(params.get("model", "scene-v3"))
    categories = ("IMAGE",)
    yield start
    if org is None:
        return
    picked = engine.consented_photo(rng, "ML_TRAINING", org, categories)
    if picked is None:
        engine.ground_truth.append(
            GroundTruth(
                spec.name,
                "RETROACTIVE_VIOLATION",
                org,
                start,
                start,
                None,
                {"skipped": "no user has consented to ML_TRAINING yet"},
            )
        )
        return
    user = picked[0]
    grant = user.deciding("ML_TRAINING", org, engine.now)
    assert grant is not None
    key = next(k for k, g in user.consents.items() if g is grant)
    reads: list[SimEvent] = []
    for photo in user.photos[:3]:
        reads.append(
            engine.training_read(
                user,
                photo,
                rng,
                job_id=job,
                model_id=model,
                org=org,
                categories=categories,
                scenario=spec.name,
            )
        )
        yield reads[-1]
        yield engine.now + 20_000
    yield engine.now + 2 * MINUTE
    backdated = max(grant.at_ms + 1, reads[0].occurred_at - 10 * MINUTE)
    withdrawal = engine.consent(
        user,
        rng,
        purpose="ML_TRAINING",
        granted=False,
        recipient=key[1],
        occurred_at=backdated,
        scenario=spec.name,
        barrier=True,
    )
    yield withdrawal
    engine.ground_truth.append(
        GroundTruth(
            spec.name,
            "RETROACTIVE_VIOLATION",
            org,
            reads[0].occurred_at,
            engine.now,
            engine.now,
            {
                "user_id": user.user_id,
                "job_id": job,
                "model_id": model,
                "decisions": [r.fields["event_id"] for r in reads],
                "withdrawal_event_id": withdrawal.fields["event_id"],
                "withdrawal_occurred_at": backdated,
            },
        )
    )


ScenarioFactory = Callable[[Engine, ScenarioSpec, int, random.Random], Process]

SCENARIOS: dict[str, ScenarioFactory] = {
    "bulk-2014": bulk_2014,
    "slow-drip": slow_drip,
    "probe": probe,
    "revoke-after-training": revoke_after_training,
}
"""Every injectable scenario by name."""
