"""``consentinel lineage``: which models read whose photos, for an auditor, from the decision trail.

Built from **every** ``TRAINING_READ`` decision in ``governance.decisions``, whatever its verdict:
a ``TrainingRead`` reports a read that happened, so a model that read a photo it was denied
(unconsented training) must be named as surely as one that was allowed to. Each read is kept with
its verdict, reason and decision id, so the report says which reads were allowed and which were
not, and an auditor can look each one up in the trail.

Guarantees: :class:`AuditLineage` is pure (built from decoded ``Decision`` records, any order);
every training-read decision given to it appears in exactly one :class:`ModelReads` of its user and
of its model; a job whose decisions never name a model is reported under ``model_id`` ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams.core.times import iso_moment
from streams.detect.core.records import ALLOW, TRAINING_READ
from streams.settings import Settings

__all__ = ["AuditLineage", "ModelReads", "Read", "build_lineage", "print_model", "print_user"]


@dataclass(frozen=True, slots=True)
class Read:
    """One training read as decided: who read which photo of whom, and the verdict."""

    decision_id: str
    at_ms: int
    owner_id: str
    photo_id: str
    org: str
    job_id: str
    model_id: str | None
    verdict: str
    reason: str

    @property
    def allowed(self) -> bool:
        """Whether the gate allowed this read (verdict ``ALLOW``)."""
        return self.verdict == ALLOW

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Read | None:
        """Return the read a ``Decision`` record decided, ``None`` for a share decision."""
        if record.get("subject_kind") != TRAINING_READ:
            return None
        occurred = record.get("occurred_at")
        at = occurred if isinstance(occurred, int) and occurred else record.get("decided_at")
        model = record.get("model_id")
        return cls(
            decision_id=str(record["decision_id"]),
            at_ms=int(at or 0),
            owner_id=str(record["owner_id"]),
            photo_id=str(record["photo_id"]),
            org=str(record["recipient_org"]),
            job_id=str(record["actor"]),
            model_id=model if isinstance(model, str) and model else None,
            verdict=str(record.get("verdict") or "UNKNOWN"),
            reason=str(record.get("reason") or "UNKNOWN"),
        )


@dataclass(frozen=True, slots=True)
class ModelReads:
    """The reads of one model (or of one job whose model is unknown) over one user's photos."""

    model_id: str | None
    orgs: tuple[str, ...]
    jobs: tuple[str, ...]
    reads: tuple[Read, ...]

    @property
    def allowed(self) -> tuple[Read, ...]:
        """The reads the gate allowed."""
        return tuple(r for r in self.reads if r.allowed)

    @property
    def not_allowed(self) -> tuple[Read, ...]:
        """The reads the gate did not allow: unconsented training, to retrain or delete."""
        return tuple(r for r in self.reads if not r.allowed)


class AuditLineage:
    """Users ↔ models over every training read, allowed or not."""

    def __init__(self, reads: Iterable[Read] = ()) -> None:
        self.reads: list[Read] = []
        self._seen: set[str] = set()
        for read in reads:
            self.add(read)

    def add(self, read: Read) -> bool:
        """Add a read; ``False`` if its decision is known already."""
        if read.decision_id in self._seen:
            return False
        self._seen.add(read.decision_id)
        self.reads.append(read)
        return True

    def _job_models(self) -> dict[str, str]:
        return {r.job_id: r.model_id for r in self.reads if r.model_id is not None}

    def model_of(self, read: Read) -> str | None:
        """Return the read's model, or the model another decision of its job names."""
        return read.model_id or self._job_models().get(read.job_id)

    def _group(self, reads: Iterable[Read]) -> list[ModelReads]:
        job_models = self._job_models()
        groups: dict[tuple[str | None, str], list[Read]] = {}
        for read in reads:
            model = read.model_id or job_models.get(read.job_id)
            key = (model, "") if model is not None else (None, read.job_id)
            groups.setdefault(key, []).append(read)
        out = [
            ModelReads(
                model_id=model,
                orgs=tuple(sorted({r.org for r in items})),
                jobs=tuple(sorted({r.job_id for r in items})),
                reads=tuple(sorted(items, key=lambda r: (r.at_ms, r.decision_id))),
            )
            for (model, _), items in groups.items()
        ]
        return sorted(out, key=lambda m: (m.model_id is None, m.model_id or "", m.jobs))

    def models_for_user(self, user_id: str) -> list[ModelReads]:
        """Return, per model, every read of ``user_id``'s photos (allowed or not)."""
        return self._group(r for r in self.reads if r.owner_id == user_id)

    def users_for_model(self, model_id: str) -> dict[str, ModelReads]:
        """Return, per user (sorted), every read of their photos by ``model_id``'s jobs."""
        job_models = self._job_models()
        by_user: dict[str, list[Read]] = {}
        for read in self.reads:
            if (read.model_id or job_models.get(read.job_id)) == model_id:
                by_user.setdefault(read.owner_id, []).append(read)
        return {user: self._group(by_user[user])[0] for user in sorted(by_user)}


def build_lineage(settings: Settings) -> AuditLineage:
    """Read every committed decision and keep the training reads, whatever their verdict."""
    from streams.report.source import read_decisions

    log = read_decisions(settings, keep=lambda d: d.get("subject_kind") == TRAINING_READ)
    return AuditLineage(r for r in map(Read.from_record, log.records) if r is not None)


def _describe(use: ModelReads) -> str:
    allowed, denied = use.allowed, use.not_allowed
    first = min(r.at_ms for r in use.reads)
    last = max(r.at_ms for r in use.reads)
    text = (
        f"org {', '.join(use.orgs)}, jobs {', '.join(use.jobs)}: {len(use.reads)} read(s), "
        f"{len(allowed)} allowed, {len(denied)} NOT allowed, "
        f"{iso_moment(first)} .. {iso_moment(last)}"
    )
    return text


def _not_allowed_lines(use: ModelReads) -> list[str]:
    return [
        f"    NOT ALLOWED {r.photo_id} at {iso_moment(r.at_ms)}: {r.verdict}/{r.reason}"
        f" (decision {r.decision_id})"
        for r in use.not_allowed
    ]


def print_user(index: AuditLineage, user_id: str, say: Callable[[str], None] = print) -> int:
    """Print every model that read the user's photos, allowed or not; return how many models."""
    uses = index.models_for_user(user_id)
    if not uses:
        say(f"no training job read photos of {user_id} (no TRAINING_READ decision)")
    for use in uses:
        model = use.model_id or f"unknown model (job {', '.join(use.jobs)})"
        action = (
            "unconsented training: retrain or delete now"
            if use.not_allowed
            else "retrain or delete if the user withdraws or asks for erasure"
        )
        say(f"{model}: {_describe(use)} -> {action}")
        for line in _not_allowed_lines(use):
            say(line)
    return len(uses)


def print_model(index: AuditLineage, model_id: str, say: Callable[[str], None] = print) -> int:
    """Print every user whose photos the model read, allowed or not; return how many users."""
    users = index.users_for_model(model_id)
    denied = sum(1 for use in users.values() if use.not_allowed)
    say(
        f"{model_id}: read photos of {len(users)} user(s); {denied} of them with reads that were"
        " NOT allowed"
    )
    for user, use in users.items():
        say(f"  {user}: {_describe(use)}")
        for line in _not_allowed_lines(use):
            say(line)
    return len(users)
