"""The simulation engine: event time, processes, the population, and ground-truth oracles.

A *process* is a generator that yields either an ``int`` -- the event time (epoch ms) at which
it wants to resume -- or a :class:`SimEvent` to emit at the current time. :meth:`Engine.run`
interleaves processes strictly by event time (ties by the order they were scheduled), so every
choice a process makes sees the population exactly as of its moment, and the emitted stream is
ordered by ``emit_at``. Nothing here reads the wall clock or does I/O; all randomness comes from
:class:`random.Random` objects seeded by the caller, so a seed always yields the same stream.

Every request event carries the verdict the gate should give (:func:`~.population.predict`), and
the engine feeds those predicted decisions to *oracles* -- the static-limit bulk-export rule and
the denial-burst rule, through the detectors' own pure code, and "first non-ALLOW read" per
training job -- which record when each threshold is first crossed. Scenarios read these crossings
to write their ground truth; crossings no scenario claims are background false alarms.
"""

from __future__ import annotations

import heapq
import itertools
import random
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.core.policy import Policy
from streams.detect.core.bulk_export import BulkExportConfig, BulkExportDetector, BulkExportState
from streams.detect.core.denied_burst import (
    BurstDimension,
    DeniedBurstConfig,
    DeniedBurstDetector,
    DeniedBurstState,
)
from streams.detect.core.records import DecisionEvent
from streams.simulate.population import ALLOW, Grant, RandomSet, User, predict

EventKind = Literal["upload", "consent", "share", "training_read"]

_MEDIA = (("image/jpeg", 0.8), ("image/heic", 0.15), ("image/png", 0.05))


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One event to produce: ``fields`` are the keyword arguments of the SDK method for ``kind``.

    ``emit_at`` is the simulated moment it is produced (normally its ``occurred_at``; later for a
    late, backdated event). ``verdict``/``reason`` are the predicted decision of a request.
    ``barrier`` asks the runner to flush and let the pipeline settle before producing it (used
    for a backdated event that must reach the gate after the events it predates).
    """

    kind: EventKind
    emit_at: int
    fields: dict[str, Any]
    scenario: str | None = None
    verdict: str | None = None
    reason: str | None = None
    barrier: bool = False

    @property
    def occurred_at(self) -> int:
        """The event's ``occurred_at`` (epoch ms)."""
        return int(self.fields["occurred_at"])

    @property
    def key(self) -> str:
        """The message key: the owner's id."""
        return str(self.fields.get("owner_id") or self.fields["user_id"])

    def decision(self) -> DecisionEvent | None:
        """Return the predicted ``Decision`` of a request (None for uploads and consents)."""
        if self.verdict is None:
            return None
        f = self.fields
        training = self.kind == "training_read"
        return DecisionEvent(
            decision_id="predicted:" + f["event_id"],
            subject_event_id=f["event_id"],
            subject_kind="TRAINING_READ" if training else "SHARE",
            photo_id=f["photo_id"],
            owner_id=f["owner_id"],
            actor=f["job_id"] if training else f["requester"],
            recipient_org=f["org"] if training else f["recipient_org"],
            purpose=f["purpose"],
            verdict=self.verdict,
            reason=self.reason or "",
            at_ms=self.occurred_at,
            model_id=f.get("model_id"),
        )


@dataclass(frozen=True, slots=True)
class Crossing:
    """An oracle saw a threshold crossed: ``kind`` of alert, its ``subject``, event time."""

    kind: str
    subject: str
    at_ms: int
    dimension: str = ""


@dataclass
class GroundTruth:
    """What a scenario injected and when, and the alert it should cause (one JSON line)."""

    scenario: str
    expected_alert: str
    subject: str
    start_ms: int
    end_ms: int
    crossing_ms: int | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-lines record."""
        return {
            "scenario": self.scenario,
            "expected_alert": self.expected_alert,
            "subject": self.subject,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "crossing_ms": self.crossing_ms,
            "details": self.details,
        }


Process = Generator["SimEvent | int", None, None]
"""A simulation process: yields an ``int`` (resume at that event time) or an event to emit."""


class Engine:
    """Shared state of one simulation run; see the module docstring."""

    def __init__(
        self,
        policy: Policy,
        *,
        seed: int,
        start_ms: int,
        end_ms: int,
        burst_config: DeniedBurstConfig | None = None,
    ) -> None:
        self.policy = policy
        self.seed = seed
        self.rng = random.Random(seed)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.now = start_ms
        self.users: list[User] = []
        self.by_id: dict[str, User] = {}
        self.with_photos: RandomSet[str] = RandomSet()
        self.pools: dict[str, RandomSet[str]] = {}
        self.notice_version = "2026-10"
        self.crossings: list[Crossing] = []
        self.ground_truth: list[GroundTruth] = []
        self._heap: list[tuple[int, int, Process]] = []
        self._seq = itertools.count()
        self._static = BulkExportDetector.from_policy(policy, BulkExportConfig(floor=10**15))
        self._static_states: dict[str, BulkExportState] = {}
        self._burst = DeniedBurstDetector(burst_config)
        self._burst_states: dict[tuple[BurstDimension, str], DeniedBurstState] = {}
        self._bad_jobs: set[str] = set()

    # ------------------------------------------------------------------ scheduling

    def spawn(self, process: Process, at_ms: int) -> None:
        """Start ``process`` at event time ``at_ms``."""
        heapq.heappush(self._heap, (at_ms, next(self._seq), process))

    def run(self) -> Iterator[SimEvent]:
        """Run every process until the end time; yield the events in ``emit_at`` order."""
        while self._heap:
            at, _, process = heapq.heappop(self._heap)
            if at >= self.end_ms:
                process.close()  # lets a scenario record its ground truth
                continue
            self.now = at
            for item in process:
                if isinstance(item, int):
                    heapq.heappush(self._heap, (max(item, self.now), next(self._seq), process))
                    break
                yield item

    # ------------------------------------------------------------------ ids and people

    @staticmethod
    def uuid(rng: random.Random) -> str:
        """Return a random UUID (version 4) drawn from ``rng``."""
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def new_user(self) -> User:
        """Register a new user (no photos, no consents yet)."""
        user = User(f"u{len(self.users):07d}")
        self.users.append(user)
        self.by_id[user.user_id] = user
        return user

    def pool(self, purpose: str) -> RandomSet[str]:
        """Return the users currently holding a grant for ``purpose`` (expiry not checked)."""
        return self.pools.setdefault(purpose, RandomSet())

    def consented_photo(
        self, rng: random.Random, purpose: str, org: str, categories: tuple[str, ...]
    ) -> tuple[User, str] | None:
        """Pick a user whose consent allows the request now, and one of their photos.

        Draws from the users holding a grant for ``purpose``; None if no draw of a few succeeds.
        """
        pool = self.pool(purpose)
        for _ in range(20):
            user = self.by_id.get(pool.choice(rng) or "")
            if user is None:
                return None
            if not user.photos:
                continue
            verdict, _ = predict(
                self.policy,
                user,
                purpose=purpose,
                recipient=org,
                categories=categories,
                at_ms=self.now,
            )
            if verdict == ALLOW:
                return user, rng.choice(user.photos)
        return None

    # ------------------------------------------------------------------ event builders

    def _common(self, rng: random.Random, source: str, occurred_at: int | None) -> dict[str, Any]:
        return {
            "event_id": self.uuid(rng),
            "occurred_at": self.now if occurred_at is None else occurred_at,
            "source": source,
        }

    def upload(self, user: User, rng: random.Random, scenario: str | None = None) -> SimEvent:
        """Return a ``PhotoUploaded`` for a new photo of ``user`` (and record the photo)."""
        photo = "ph-" + self.uuid(rng)
        media = rng.choices([m for m, _ in _MEDIA], [w for _, w in _MEDIA])[0]
        fields = {
            **self._common(rng, "photo-app", None),
            "photo_id": photo,
            "owner_id": user.user_id,
            "content_sha256": f"{rng.getrandbits(256):064x}",
            "media_type": media,
            "size_bytes": int(rng.lognormvariate(13.2, 0.6)),
        }
        user.photos.append(photo)
        self.with_photos.add(user.user_id)
        return SimEvent("upload", self.now, fields, scenario)

    def consent(
        self,
        user: User,
        rng: random.Random,
        *,
        purpose: str,
        granted: bool,
        recipient: str | None = None,
        categories: tuple[str, ...] = (),
        expires_at: int | None = None,
        occurred_at: int | None = None,
        scenario: str | None = None,
        barrier: bool = False,
    ) -> SimEvent:
        """Return a ``ConsentChanged`` (and apply it to ``user``)."""
        fields = {
            **self._common(rng, "consent-service", occurred_at),
            "user_id": user.user_id,
            "purpose": purpose,
            "granted": granted,
            "notice_version": self.notice_version,
            "categories": list(categories),
            "recipient_org": recipient,
            "expires_at": expires_at,
        }
        grant = Grant(
            fields["event_id"], fields["occurred_at"], granted, frozenset(categories), expires_at
        )
        user.record(purpose, recipient, grant)
        if user.holds_grant(purpose):
            self.pool(purpose).add(user.user_id)
        else:
            self.pool(purpose).discard(user.user_id)
        return SimEvent("consent", self.now, fields, scenario, barrier=barrier)

    def share(
        self,
        user: User,
        photo: str,
        rng: random.Random,
        *,
        requester: str,
        recipient: str,
        purpose: str,
        categories: tuple[str, ...],
        scenario: str | None = None,
    ) -> SimEvent:
        """Return a ``PhotoShareRequested`` with its predicted verdict (fed to the oracles)."""
        verdict, reason = predict(
            self.policy,
            user,
            purpose=purpose,
            recipient=recipient,
            categories=categories,
            at_ms=self.now,
        )
        fields = {
            **self._common(rng, requester, None),
            "share_id": self.uuid(rng),
            "photo_id": photo,
            "owner_id": user.user_id,
            "requester": requester,
            "recipient_org": recipient,
            "purpose": purpose,
            "categories": list(categories),
        }
        event = SimEvent("share", self.now, fields, scenario, verdict, reason)
        self._observe(event)
        return event

    def training_read(
        self,
        user: User,
        photo: str,
        rng: random.Random,
        *,
        job_id: str,
        model_id: str,
        org: str,
        categories: tuple[str, ...],
        scenario: str | None = None,
    ) -> SimEvent:
        """Return a ``TrainingRead`` with its predicted verdict (fed to the oracles)."""
        verdict, reason = predict(
            self.policy,
            user,
            purpose="ML_TRAINING",
            recipient=org,
            categories=categories,
            at_ms=self.now,
        )
        fields = {
            **self._common(rng, f"{org}-loader", None),
            "job_id": job_id,
            "model_id": model_id,
            "org": org,
            "photo_id": photo,
            "owner_id": user.user_id,
            "purpose": "ML_TRAINING",
            "categories": list(categories),
        }
        event = SimEvent("training_read", self.now, fields, scenario, verdict, reason)
        self._observe(event)
        return event

    # ------------------------------------------------------------------ oracles

    def _observe(self, event: SimEvent) -> None:
        """Feed a predicted decision to the oracles; record the crossings they see."""
        decision = event.decision()
        assert decision is not None
        org = decision.recipient_org
        if org in self._static.limits:
            state = self._static_states.get(org) or self._static.new_state(org)
            self._static_states[org] = state
            if self._static.observe(state, decision).alert is not None:
                self.crossings.append(Crossing("BULK_EXPORT", org, decision.at_ms))
        bad_read = decision.subject_kind == "TRAINING_READ" and decision.verdict != ALLOW
        if bad_read and decision.actor not in self._bad_jobs:
            self._bad_jobs.add(decision.actor)
            self.crossings.append(Crossing("UNCONSENTED_TRAINING", decision.actor, decision.at_ms))
        for key in self._burst.subjects(decision):
            burst = self._burst_states.get(key) or self._burst.new_state(*key)
            self._burst_states[key] = burst
            if self._burst.observe(burst, decision).alert is not None:
                self.crossings.append(
                    Crossing("DENIED_BURST", key[1], decision.at_ms, key[0].value)
                )

    def first_crossing(
        self, kind: str, subject: str, start_ms: int, end_ms: int, dimension: str = ""
    ) -> int | None:
        """Return the first crossing of ``kind`` for ``subject`` within ``[start, end]``."""
        for crossing in self.crossings:
            if (
                crossing.kind == kind
                and crossing.subject == subject
                and (not dimension or crossing.dimension == dimension)
                and start_ms <= crossing.at_ms <= end_ms
            ):
                return crossing.at_ms
        return None

    def unclaimed_crossings(self) -> list[Crossing]:
        """Return the crossings no ground-truth record explains (background false alarms)."""
        claimed = {
            (g.expected_alert, g.subject, g.crossing_ms)
            for g in self.ground_truth
            if g.crossing_ms is not None
        }
        windows = [(g.expected_alert, g.subject, g.start_ms, g.end_ms) for g in self.ground_truth]
        return [
            c
            for c in self.crossings
            if (c.kind, c.subject, c.at_ms) not in claimed
            and not any(
                k == c.kind and s == c.subject and a <= c.at_ms <= b for k, s, a, b in windows
            )
        ]
