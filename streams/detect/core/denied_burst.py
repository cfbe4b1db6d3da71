"""``DENIED_BURST``: one requester, or one recipient, collecting many denials quickly (probing).

Per subject -- a requester (the decision's ``actor``) or a recipient (``recipient_org``), each
tracked separately -- the detector counts, in buckets of ``bucket_ms`` of event time, the decisions
with verdict ``DENY`` and all decisions, and sums them over the sliding ``window_ms``. It raises on
the event that makes the window hold more than ``min_denials`` denials *and* at least
``min_deny_ratio`` of that subject's decisions denied, so a busy, mostly-allowed service with a
normal trickle of denials does not page while a prober (nearly everything denied) does.

One alert per episode; the episode ends (re-arms) when the denials in the window fall below
``rearm_fraction * min_denials``. By default only share decisions count: denied training reads
are the business of ``UNCONSENTED_TRAINING``. ``HOLD`` (a suspended recipient) is not a denial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from streams.core.times import iso_moment
from streams.detect.core.records import (
    DENY,
    SHARE,
    Alert,
    AlertKind,
    DecisionEvent,
    Severity,
    push_sample,
    stable_id,
)
from streams.detect.core.windows import BucketCounter, Episode
from streams.errors import ConfigError


class BurstDimension(StrEnum):
    """Which side of a decision a burst is counted for."""

    REQUESTER = "requester"
    RECIPIENT = "recipient"


@dataclass(frozen=True, slots=True)
class DeniedBurstConfig:
    """Tuning of the denial-burst detector; the defaults are the documented behaviour."""

    window_ms: int = 60_000
    bucket_ms: int = 5_000
    min_denials: int = 50
    min_deny_ratio: float = 0.5
    rearm_fraction: float = 0.5
    subject_kinds: frozenset[str] = frozenset({SHARE})
    sample_size: int = 10

    def __post_init__(self) -> None:
        if self.bucket_ms <= 0 or self.window_ms % self.bucket_ms:
            raise ConfigError("denied burst: window_ms must be a positive multiple of bucket_ms")
        if self.min_denials < 1 or not 0 <= self.min_deny_ratio <= 1:
            raise ConfigError("denied burst: need min_denials >= 1 and 0 <= min_deny_ratio <= 1")
        if not 0 < self.rearm_fraction < 1:
            raise ConfigError("denied burst: rearm_fraction must be between 0 and 1")

    @property
    def window_buckets(self) -> int:
        """How many buckets make up the sliding window."""
        return self.window_ms // self.bucket_ms


@dataclass
class DeniedBurstState:
    """What the detector remembers about one subject (JSON-able via :meth:`to_dict`)."""

    dimension: BurstDimension
    subject: str
    denials: BucketCounter
    decisions: BucketCounter
    watermark: int | None = None
    samples: list[str] = field(default_factory=list)
    episode: Episode = field(default_factory=Episode)

    @property
    def key(self) -> str:
        """The table key of this state: ``<dimension>:<subject>``."""
        return f"{self.dimension.value}:{self.subject}"

    def is_idle(self) -> bool:
        """Whether the state holds nothing worth keeping (its key may be deleted)."""
        return not self.episode.active and not self.denials.counts

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (see :meth:`DeniedBurstDetector.load`)."""
        return {
            "dimension": self.dimension.value,
            "subject": self.subject,
            "watermark": self.watermark,
            "denials": self.denials.to_dict(),
            "decisions": self.decisions.to_dict(),
            "samples": list(self.samples),
            "episode": self.episode.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class DeniedBurstOutcome:
    """What one event did to a subject: the window's figures and any alert."""

    dimension: BurstDimension
    subject: str
    denials: int
    decisions: int
    alert: Alert | None = None
    episode_active: bool = False
    episode_ended: bool = False


class DeniedBurstDetector:
    """Applies the denial-burst rules to per-subject :class:`DeniedBurstState` objects."""

    def __init__(self, config: DeniedBurstConfig | None = None) -> None:
        self.config = config or DeniedBurstConfig()

    def subjects(self, event: DecisionEvent) -> list[tuple[BurstDimension, str]]:
        """Return the subjects ``event`` counts for (none if its subject kind is not watched)."""
        if event.subject_kind not in self.config.subject_kinds:
            return []
        return [
            (BurstDimension.REQUESTER, event.actor),
            (BurstDimension.RECIPIENT, event.recipient_org),
        ]

    def new_state(self, dimension: BurstDimension, subject: str) -> DeniedBurstState:
        """Return the empty state of a subject never seen before."""
        cfg = self.config
        return DeniedBurstState(
            dimension,
            subject,
            BucketCounter(cfg.bucket_ms, cfg.window_buckets),
            BucketCounter(cfg.bucket_ms, cfg.window_buckets),
        )

    def load(self, data: Mapping[str, Any]) -> DeniedBurstState:
        """Rebuild a state from its :meth:`DeniedBurstState.to_dict` form."""
        state = self.new_state(BurstDimension(data["dimension"]), str(data["subject"]))
        state.watermark = data.get("watermark")
        state.denials.load(data.get("denials"))
        state.decisions.load(data.get("decisions"))
        state.samples = [str(s) for s in data.get("samples") or ()]
        state.episode = Episode.from_dict(data.get("episode"))
        return state

    def observe(self, state: DeniedBurstState, event: DecisionEvent) -> DeniedBurstOutcome:
        """Apply one decision counted for ``state``'s subject (see :meth:`subjects`)."""
        cfg = self.config
        if state.watermark is None or event.at_ms > state.watermark:
            state.watermark = event.at_ms
        head = state.denials.bucket(state.watermark)
        state.decisions.add(event.at_ms, head)
        if event.verdict == DENY and state.denials.add(event.at_ms, head):
            push_sample(state.samples, event.subject_event_id, cfg.sample_size)
        state.denials.prune(head)
        state.decisions.prune(head)
        denials = state.denials.total(head)
        decisions = state.decisions.total(head)
        outcome = DeniedBurstOutcome(state.dimension, state.subject, denials, decisions)
        episode = state.episode
        if episode.active:
            if episode.should_end(denials, cfg.min_denials, cfg.rearm_fraction):
                episode.end()
                return DeniedBurstOutcome(
                    state.dimension, state.subject, denials, decisions, episode_ended=True
                )
            episode.note(denials)
            return DeniedBurstOutcome(
                state.dimension, state.subject, denials, decisions, episode_active=True
            )
        if denials <= cfg.min_denials or denials < cfg.min_deny_ratio * decisions:
            return outcome
        alert_id = stable_id(
            AlertKind.DENIED_BURST.value, state.dimension.value, state.subject, head
        )
        now = state.watermark
        episode.start(
            alert_id=alert_id, bucket=head, at_ms=now, trigger=cfg.min_denials, observed=denials
        )
        who = "Requester" if state.dimension is BurstDimension.REQUESTER else "Recipient"
        seconds = cfg.window_ms // 1000
        summary = (
            f"{who} {state.subject} collected {denials} denials out of {decisions} decisions in the"
            f" {seconds} s up to {iso_moment(now)} (more than {cfg.min_denials}): this looks like"
            " probing for which users have consented. Check who operates it and block it if it"
            " is not expected."
        )
        alert = Alert(
            alert_id=alert_id,
            raised_at=now,
            kind=AlertKind.DENIED_BURST,
            severity=Severity.WARNING,
            subject=state.subject,
            window_start=state.denials.window_start(head),
            window_end=now,
            observed=denials,
            threshold=float(cfg.min_denials),
            baseline=None,
            summary=summary,
            sample_event_ids=tuple(state.samples),
        )
        return DeniedBurstOutcome(
            state.dimension, state.subject, denials, decisions, alert=alert, episode_active=True
        )
