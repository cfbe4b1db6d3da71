"""Lineage: which training jobs and models used which users' photos.

Built from ``ALLOW`` ``TRAINING_READ`` decisions -- the reads that really fed a model -- so that
when a user withdraws consent or asks for erasure, :meth:`LineageIndex.models_for_user` lists the
models to retrain or delete (with the jobs and photos involved), and
:meth:`LineageIndex.users_for_model` lists the users behind a model.

A decision names the job (``actor``) and, when the record carries it, the ``model_id``. For
decisions without one, the caller teaches the index which model a job trains with
:meth:`LineageIndex.note_job_model` (e.g. from ``training.reads``, whose events carry both); the
mapping is resolved at query time, so it may arrive before or after the decisions. A job whose
model is never learned is reported with ``model_id`` ``None`` ("model unknown").

The index is pure and serializable (:meth:`LineageIndex.to_dict` / :meth:`LineageIndex.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.detect.core.records import TRAINING_READ, DecisionEvent


@dataclass(frozen=True, slots=True)
class ModelUse:
    """How one model (or one job of unknown model) used one user's photos."""

    model_id: str | None
    org: str | None
    jobs: tuple[str, ...]
    photos: tuple[str, ...]
    first_at: int
    last_at: int


@dataclass
class _Use:
    """One user's photos read by one job: when, and which photos."""

    first_at: int
    last_at: int
    photos: set[str] = field(default_factory=set)


@dataclass
class _Job:
    """What is known about a job: its model, its org, the users it read."""

    model_id: str | None = None
    org: str | None = None
    users: set[str] = field(default_factory=set)


class LineageIndex:
    """Users ↔ jobs ↔ models, from allowed training reads."""

    def __init__(self) -> None:
        self._uses: dict[str, dict[str, _Use]] = {}
        self._jobs: dict[str, _Job] = {}

    def record(self, event: DecisionEvent) -> bool:
        """Record an allowed training read; return False (ignored) for any other decision."""
        if event.subject_kind != TRAINING_READ or not event.allowed:
            return False
        job = self._jobs.setdefault(event.actor, _Job())
        job.org = job.org or event.recipient_org
        if event.model_id:
            job.model_id = event.model_id
        job.users.add(event.owner_id)
        uses = self._uses.setdefault(event.owner_id, {})
        use = uses.get(event.actor)
        if use is None:
            use = uses[event.actor] = _Use(event.at_ms, event.at_ms)
        use.first_at = min(use.first_at, event.at_ms)
        use.last_at = max(use.last_at, event.at_ms)
        use.photos.add(event.photo_id)
        return True

    def note_job_model(self, job_id: str, model_id: str, org: str | None = None) -> None:
        """Record that ``job_id`` trains ``model_id`` (for decisions that do not say)."""
        job = self._jobs.setdefault(job_id, _Job())
        job.model_id = model_id
        job.org = job.org or org

    def model_of(self, job_id: str) -> str | None:
        """Return the model a job trains, if known."""
        job = self._jobs.get(job_id)
        return job.model_id if job else None

    def models_for_user(self, user_id: str) -> list[ModelUse]:
        """Return the models trained on ``user_id``'s photos, one entry per model, by model id.

        Jobs whose model is unknown are listed one entry each, with ``model_id`` ``None``.
        """
        groups: dict[tuple[str | None, str], list[tuple[str, _Use]]] = {}
        for job_id, use in self._uses.get(user_id, {}).items():
            model = self.model_of(job_id)
            key = (model, "") if model is not None else (None, job_id)
            groups.setdefault(key, []).append((job_id, use))
        out = []
        for (model, _), items in groups.items():
            jobs = [self._jobs.get(job_id) for job_id, _ in items]
            out.append(
                ModelUse(
                    model_id=model,
                    org=next((j.org for j in jobs if j is not None and j.org), None),
                    jobs=tuple(sorted(job_id for job_id, _ in items)),
                    photos=tuple(sorted(set().union(*(use.photos for _, use in items)))),
                    first_at=min(use.first_at for _, use in items),
                    last_at=max(use.last_at for _, use in items),
                )
            )
        return sorted(out, key=lambda m: (m.model_id is None, m.model_id or "", m.jobs))

    def users_for_model(self, model_id: str) -> list[str]:
        """Return the users whose photos trained ``model_id`` (via any of its jobs), sorted."""
        users: set[str] = set()
        for job in self._jobs.values():
            if job.model_id == model_id:
                users |= job.users
        return sorted(users)

    def users_for_job(self, job_id: str) -> list[str]:
        """Return the users whose photos job ``job_id`` read, sorted."""
        job = self._jobs.get(job_id)
        return sorted(job.users) if job else []

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (see :meth:`from_dict`)."""
        return {
            "jobs": {
                job_id: {"model_id": job.model_id, "org": job.org}
                for job_id, job in sorted(self._jobs.items())
            },
            "uses": {
                user: {
                    job_id: [use.first_at, use.last_at, sorted(use.photos)]
                    for job_id, use in sorted(uses.items())
                }
                for user, uses in sorted(self._uses.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineageIndex:
        """Rebuild an index written by :meth:`to_dict`."""
        index = cls()
        for job_id, spec in (data.get("jobs") or {}).items():
            index._jobs[job_id] = _Job(spec.get("model_id"), spec.get("org"))
        for user, uses in (data.get("uses") or {}).items():
            for job_id, (first_at, last_at, photos) in uses.items():
                index._uses.setdefault(user, {})[job_id] = _Use(first_at, last_at, set(photos))
                index._jobs.setdefault(job_id, _Job()).users.add(user)
        return index
