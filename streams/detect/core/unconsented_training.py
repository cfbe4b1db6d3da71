"""``UNCONSENTED_TRAINING``: a training job read photos whose decision was not ``ALLOW``.

Every ``TRAINING_READ`` decision with a verdict other than ``ALLOW`` (``DENY``, ``HOLD``, or a
symbol this version does not know) is a photo a model may have been trained on without a basis.
Per training job (the decision's ``actor``) an episode starts with the first such read and lasts
while such reads keep coming: it ends once ``quiet_ms`` of event time pass without one. The alert
is raised on the first read of an episode and names the job, the recipient org, the model (the
decision's ``model_id`` when it carries one, else the one the caller learned for the job, else
"model unknown") and the distinct users affected so far.

The figures keep growing after the alert; the alert is not raised again. Instead, when the count
of affected users first reaches each of ``update_milestones``, the detector emits an *update*:
the same ``alert_id`` with ``revision`` > 0 and refreshed figures, which consumers treat as the
same alert. Distinct users are counted exactly up to ``max_tracked_users``, then as a lower bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams.core.times import iso_moment
from streams.detect.core.records import (
    TRAINING_READ,
    Alert,
    AlertKind,
    DecisionEvent,
    Severity,
    push_sample,
    stable_id,
)

MODEL_UNKNOWN = "model unknown"


@dataclass(frozen=True, slots=True)
class UnconsentedTrainingConfig:
    """Tuning of the unconsented-training detector; the defaults are the documented behaviour."""

    quiet_ms: int = 3_600_000
    bucket_ms: int = 60_000
    update_milestones: tuple[int, ...] = (10, 100, 1_000, 10_000, 100_000)
    max_tracked_users: int = 200_000
    sample_size: int = 10


@dataclass
class TrainingJobState:
    """What the detector remembers about one training job's current episode (JSON-able)."""

    job_id: str
    org: str | None = None
    model_id: str | None = None
    alert_id: str | None = None
    first_at: int | None = None
    last_at: int | None = None
    reads: int = 0
    users: set[str] = field(default_factory=set)
    users_capped: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    revision: int = 0

    def reset(self) -> None:
        """Forget the episode (the job keeps its id): the next read starts a new one."""
        fresh = TrainingJobState(self.job_id)
        for spec in fields(self):
            setattr(self, spec.name, getattr(fresh, spec.name))

    @property
    def affected_users(self) -> int:
        """How many distinct users had photos read without ``ALLOW`` (a lower bound if capped)."""
        return len(self.users)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (see :meth:`from_dict`)."""
        return {
            "job_id": self.job_id,
            "org": self.org,
            "model_id": self.model_id,
            "alert_id": self.alert_id,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "reads": self.reads,
            "users": sorted(self.users),
            "users_capped": self.users_capped,
            "reasons": dict(self.reasons),
            "samples": list(self.samples),
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingJobState:
        """Rebuild a state written by :meth:`to_dict`."""
        return cls(
            job_id=str(data["job_id"]),
            org=data.get("org"),
            model_id=data.get("model_id"),
            alert_id=data.get("alert_id"),
            first_at=data.get("first_at"),
            last_at=data.get("last_at"),
            reads=int(data.get("reads") or 0),
            users={str(u) for u in data.get("users") or ()},
            users_capped=bool(data.get("users_capped")),
            reasons={str(k): int(v) for k, v in (data.get("reasons") or {}).items()},
            samples=[str(s) for s in data.get("samples") or ()],
            revision=int(data.get("revision") or 0),
        )


class UnconsentedTrainingDetector:
    """Applies the unconsented-training rules to per-job :class:`TrainingJobState` objects."""

    def __init__(self, config: UnconsentedTrainingConfig | None = None) -> None:
        self.config = config or UnconsentedTrainingConfig()

    @staticmethod
    def watches(event: DecisionEvent) -> bool:
        """Whether ``event`` concerns this detector (a training read not allowed)."""
        return event.subject_kind == TRAINING_READ and not event.allowed

    def new_state(self, job_id: str) -> TrainingJobState:
        """Return the empty state of a job never seen before."""
        return TrainingJobState(job_id)

    def observe(
        self, state: TrainingJobState, event: DecisionEvent, *, model_id: str | None = None
    ) -> Alert | None:
        """Apply one decision of ``state``'s job; return the alert or an update of it, if any.

        ``model_id`` is the job's model as the caller knows it (e.g. from ``training.reads``),
        used when the decision does not carry one.
        """
        if not self.watches(event):
            return None
        if event.actor != state.job_id:
            raise ValueError(f"decision of job {event.actor!r} given to {state.job_id!r}")
        cfg = self.config
        at = event.at_ms
        if state.last_at is not None and at - state.last_at > cfg.quiet_ms:
            state.reset()  # a new episode
        new_episode = state.alert_id is None
        if new_episode:
            state.alert_id = stable_id(
                AlertKind.UNCONSENTED_TRAINING.value, state.job_id, at // cfg.bucket_ms
            )
            state.first_at = at
            state.org = event.recipient_org
        state.model_id = event.model_id or model_id or state.model_id
        state.last_at = at if state.last_at is None else max(state.last_at, at)
        state.first_at = at if state.first_at is None else min(state.first_at, at)
        state.reads += 1
        state.reasons[event.reason] = state.reasons.get(event.reason, 0) + 1
        push_sample(state.samples, event.subject_event_id, cfg.sample_size)
        before = len(state.users)
        if len(state.users) < cfg.max_tracked_users:
            state.users.add(event.owner_id)
        elif event.owner_id not in state.users:
            state.users_capped = True
        if new_episode:
            return self._alert(state, at, revision=0)
        after = len(state.users)
        if any(before < m <= after for m in cfg.update_milestones):
            state.revision += 1
            return self._alert(state, at, revision=state.revision)
        return None

    def _alert(self, state: TrainingJobState, at: int, *, revision: int) -> Alert:
        """Build the alert (or an update of it) from the episode's figures."""
        assert state.alert_id is not None and state.first_at is not None
        model = state.model_id or MODEL_UNKNOWN
        users = f"{'at least ' if state.users_capped else ''}{state.affected_users:,}"
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(state.reasons.items()))
        model_text = f"model {model}" if state.model_id else model
        summary = (
            f"Training job {state.job_id} of {state.org} ({model_text}) read {state.reads:,}"
            f" photos of {users} users without an ALLOW decision ({reasons}) between"
            f" {iso_moment(state.first_at)} and {iso_moment(at)}. The model must be retrained"
            " without these photos or deleted; `consentinel lineage --model` lists the users."
        )
        return Alert(
            alert_id=state.alert_id,
            raised_at=at,
            kind=AlertKind.UNCONSENTED_TRAINING,
            severity=Severity.CRITICAL,
            subject=state.job_id,
            window_start=state.first_at,
            window_end=at,
            observed=state.affected_users,
            threshold=0.0,
            baseline=None,
            summary=summary,
            sample_event_ids=tuple(state.samples),
            revision=revision,
        )
