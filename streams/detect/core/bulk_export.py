"""``BULK_EXPORT``: too many photos leaving to one recipient within a sliding hour.

What counts: every ``Decision`` with verdict ``ALLOW`` for the recipient (approved shares and
allowed training reads), bucketed by event time into 1-minute buckets; the observed volume is the
sum of the last 60 buckets (the sliding hour ending at the latest event). Decisions with another
verdict count nothing but still move the recipient's clock, so a suspended recipient's episode
re-arms once its volume has drained.

Two triggers, checked on every event, so the alert is raised by the very event that crosses:

- **static**: the volume exceeds the policy's ``bulk_export.max_photos_per_hour``;
- **learned**: the volume exceeds ``max(multiple * baseline, baseline + spreads * spread, floor)``
  where, per hour of day (UTC), ``baseline`` is the median and ``spread`` 1.4826 * the median
  absolute deviation of the recipient's hourly volumes on the last ``history_days`` days (hours
  without traffic count as 0). The hour of day of the event and its two neighbours are checked and
  the most permissive one is used, so a job that runs a little earlier or later than usual is not
  an anomaly. The learned trigger is silent until each of those hours has ``warmup_days`` of
  history (no alert on a cold start). An hour is learned once it is over (plus ``lateness_ms``);
  its volume is clipped to the threshold then in force, so an attack does not teach the baseline
  that attacks are normal.

One alert per episode (see :mod:`streams.detect.core.windows`): it re-arms only after the volume
falls below ``rearm_fraction`` * the trigger level, or when an operator resumes the recipient
(:meth:`BulkExportDetector.resume`): a recipient still above its trigger then gets a new alert
(and suspension) at once, and one that crosses again later gets one then. The alert id and the
control id are hashes of (kind, recipient, the minute of the crossing; and the resume's id for
an alert raised by a resume). With ``auto_suspend: true`` every alert also yields
a ``SUSPEND_RECIPIENT`` control, and the alert's action is ``RECIPIENT_SUSPENDED``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from streams.core.policy import BulkExportLimit, Policy
from streams.core.times import iso_moment
from streams.detect.core.records import (
    Alert,
    AlertAction,
    AlertKind,
    Control,
    ControlKind,
    DecisionEvent,
    Severity,
    push_sample,
    stable_id,
)
from streams.detect.core.windows import BucketCounter, Episode
from streams.errors import ConfigError

HOUR_MS = 3_600_000
MAD_TO_SIGMA = 1.4826
"""Scales a median absolute deviation to a standard deviation for normal data."""


@dataclass(frozen=True, slots=True)
class BulkExportConfig:
    """Tuning of the bulk-export detector; the defaults are the documented behaviour."""

    bucket_ms: int = 60_000
    window_ms: int = HOUR_MS
    multiple: float = 3.0
    spreads: float = 8.0
    floor: int = 100
    warmup_days: int = 3
    history_days: int = 14
    lateness_ms: int = 5 * 60_000
    rearm_fraction: float = 0.5
    sample_size: int = 10

    def __post_init__(self) -> None:
        if self.bucket_ms <= 0 or self.window_ms % self.bucket_ms:
            raise ConfigError("bulk export: window_ms must be a positive multiple of bucket_ms")
        if not 0 < self.rearm_fraction < 1:
            raise ConfigError("bulk export: rearm_fraction must be between 0 and 1")
        if self.warmup_days < 1 or self.history_days < self.warmup_days:
            raise ConfigError("bulk export: need 1 <= warmup_days <= history_days")

    @property
    def window_buckets(self) -> int:
        """How many buckets make up the sliding window."""
        return self.window_ms // self.bucket_ms


@dataclass(frozen=True, slots=True)
class Baseline:
    """The learned normal hourly volume around an hour of day, and the alert level it implies."""

    median: float
    spread: float
    threshold: float


@dataclass
class BulkExportState:
    """Everything the detector remembers about one recipient (JSON-able via :meth:`to_dict`).

    ``hours`` holds the volumes of hours not learned yet; ``history`` the learned (clipped)
    volumes of the last ``history_days`` days, by hour index (hours since the epoch), zero hours
    omitted; ``learned_from`` is the first complete hour seen (the first, partial one is skipped).
    """

    recipient: str
    minutes: BucketCounter
    watermark: int | None = None
    hours: dict[int, int] = field(default_factory=dict)
    history: dict[int, int] = field(default_factory=dict)
    learned_from: int | None = None
    folded_through: int | None = None
    samples: list[str] = field(default_factory=list)
    episode: Episode = field(default_factory=Episode)
    resumed: str | None = None
    """The id of the last ``RESUME_RECIPIENT`` control applied (each applies once)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (see :meth:`from_dict`)."""
        return {
            "recipient": self.recipient,
            "watermark": self.watermark,
            "minutes": self.minutes.to_dict(),
            "hours": sorted([h, n] for h, n in self.hours.items()),
            "history": sorted([h, n] for h, n in self.history.items()),
            "learned_from": self.learned_from,
            "folded_through": self.folded_through,
            "samples": list(self.samples),
            "episode": self.episode.to_dict(),
            "resumed": self.resumed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], config: BulkExportConfig) -> BulkExportState:
        """Rebuild a state written by :meth:`to_dict`."""
        minutes = BucketCounter(config.bucket_ms, config.window_buckets).load(data.get("minutes"))
        return cls(
            recipient=str(data["recipient"]),
            minutes=minutes,
            watermark=data.get("watermark"),
            hours={int(h): int(n) for h, n in data.get("hours") or ()},
            history={int(h): int(n) for h, n in data.get("history") or ()},
            learned_from=data.get("learned_from"),
            folded_through=data.get("folded_through"),
            samples=[str(s) for s in data.get("samples") or ()],
            episode=Episode.from_dict(data.get("episode")),
            resumed=data.get("resumed"),
        )


@dataclass(frozen=True, slots=True)
class BulkExportOutcome:
    """What one event did to a recipient: the figures for gauges, and any alert and control."""

    recipient: str
    at_ms: int
    observed: int
    limit: int | None
    baseline: Baseline | None
    alert: Alert | None = None
    control: Control | None = None
    episode_active: bool = False
    episode_ended: bool = False

    @property
    def threshold(self) -> float | None:
        """The volume above which an alert is raised now (lower of the two triggers)."""
        levels = [] if self.limit is None else [float(self.limit)]
        if self.baseline is not None:
            levels.append(self.baseline.threshold)
        return min(levels) if levels else None


class BulkExportDetector:
    """Applies the bulk-export rules to per-recipient :class:`BulkExportState` objects.

    The detector itself holds only configuration and the policy's limits; all memory is in the
    states, which the caller stores (e.g. in a table keyed by recipient).
    """

    def __init__(
        self,
        config: BulkExportConfig | None = None,
        limits: Mapping[str, BulkExportLimit] | None = None,
    ) -> None:
        self.config = config or BulkExportConfig()
        self.limits: dict[str, BulkExportLimit] = dict(limits or {})

    @classmethod
    def from_policy(
        cls, policy: Policy, config: BulkExportConfig | None = None
    ) -> BulkExportDetector:
        """Return a detector with the ``bulk_export`` limits of ``policy``'s recipients."""
        limits = {org: r.bulk_export for org, r in policy.recipients.items() if r.bulk_export}
        return cls(config, limits)

    def new_state(self, recipient: str) -> BulkExportState:
        """Return the empty state of a recipient never seen before."""
        return BulkExportState(
            recipient, BucketCounter(self.config.bucket_ms, self.config.window_buckets)
        )

    def load(self, data: Mapping[str, Any]) -> BulkExportState:
        """Rebuild a state from its :meth:`BulkExportState.to_dict` form."""
        return BulkExportState.from_dict(data, self.config)

    # ------------------------------------------------------------------ the rules

    def observe(self, state: BulkExportState, event: DecisionEvent) -> BulkExportOutcome:
        """Apply one decision about ``state.recipient``; count it only if it was ``ALLOW``."""
        if event.recipient_org != state.recipient:
            raise ValueError(f"decision for {event.recipient_org!r} given to {state.recipient!r}")
        return self._step(state, event.at_ms, event.subject_event_id if event.allowed else None)

    def advance(self, state: BulkExportState, at_ms: int) -> BulkExportOutcome:
        """Move the recipient's clock to ``at_ms`` without an event (re-arms, learns hours)."""
        return self._step(state, at_ms, None)

    def resume(
        self, state: BulkExportState, control_id: str, at_ms: int
    ) -> BulkExportOutcome | None:
        """Apply an operator's ``RESUME_RECIPIENT`` (id ``control_id``, issued at ``at_ms``).

        It ends the episode active since before ``at_ms``; the volume is then judged again at
        the recipient's clock, so one still above its trigger gets a new alert (and control)
        whose ids name the resume. Returns None when nothing changed (no such episode, or this
        control was applied already).
        """
        if state.resumed == control_id or state.watermark is None:
            return None
        state.resumed = control_id
        episode = state.episode
        if not episode.active or (episode.started_at is not None and episode.started_at > at_ms):
            return None
        episode.end()
        return self._step(state, state.watermark, None, salt=control_id)

    def _step(
        self, state: BulkExportState, at_ms: int, event_id: str | None, salt: str = ""
    ) -> BulkExportOutcome:
        cfg = self.config
        if state.watermark is None:
            state.watermark = at_ms
            state.learned_from = at_ms // HOUR_MS + 1
            state.folded_through = at_ms // HOUR_MS
        elif at_ms > state.watermark:
            state.watermark = at_ms
        now = state.watermark
        head = state.minutes.bucket(now)
        if event_id is not None:
            if state.minutes.add(at_ms, head):
                push_sample(state.samples, event_id, cfg.sample_size)
            hour = at_ms // HOUR_MS
            if state.folded_through is None or hour > state.folded_through:
                state.hours[hour] = state.hours.get(hour, 0) + 1
        state.minutes.prune(head)
        self._learn(state)
        observed = state.minutes.total(head)
        limit_spec = self.limits.get(state.recipient)
        limit = limit_spec.max_photos_per_hour if limit_spec else None
        base = self.baseline(state, now)
        outcome = BulkExportOutcome(state.recipient, now, observed, limit, base)
        episode = state.episode
        if episode.active:
            if episode.should_end(observed, outcome.threshold, cfg.rearm_fraction):
                episode.end()
                return replace(outcome, episode_ended=True)
            episode.note(observed)
            return replace(outcome, episode_active=True)
        static = limit is not None and observed > limit
        learned = base is not None and observed > base.threshold
        if not (static or learned):
            return outcome
        return self._raise(
            state,
            outcome,
            static=static,
            suspend=bool(limit_spec and limit_spec.auto_suspend),
            salt=salt,
        )

    def _raise(
        self,
        state: BulkExportState,
        outcome: BulkExportOutcome,
        *,
        static: bool,
        suspend: bool,
        salt: str = "",
    ) -> BulkExportOutcome:
        """Start an episode at the crossing; build the alert (and the control if suspending)."""
        now = outcome.at_ms
        head = state.minutes.bucket(now)
        base = outcome.baseline
        trigger = float(outcome.limit) if static and outcome.limit is not None else None
        if trigger is None:
            assert base is not None  # learned crossed
            trigger = base.threshold
        recipient = state.recipient
        ids: tuple[str | int, ...] = (recipient, head, salt) if salt else (recipient, head)
        alert_id = stable_id(AlertKind.BULK_EXPORT.value, *ids)
        state.episode.start(
            alert_id=alert_id, bucket=head, at_ms=now, trigger=trigger, observed=outcome.observed
        )
        control = None
        if suspend:
            control = Control(
                control_id=stable_id(ControlKind.SUSPEND_RECIPIENT.value, *ids),
                at=now,
                kind=ControlKind.SUSPEND_RECIPIENT,
                recipient_org=recipient,
                reason=(
                    f"BULK_EXPORT alert {alert_id}: {outcome.observed} photos in one hour to"
                    f" {recipient}, above {trigger:g}"
                ),
            )
        alert = Alert(
            alert_id=alert_id,
            raised_at=now,
            kind=AlertKind.BULK_EXPORT,
            severity=Severity.CRITICAL if static or suspend else Severity.WARNING,
            subject=recipient,
            window_start=state.minutes.window_start(head),
            window_end=now,
            observed=outcome.observed,
            threshold=trigger,
            baseline=None if base is None else base.median,
            summary=_summary(recipient, outcome, trigger, static=static, suspended=suspend),
            sample_event_ids=tuple(state.samples),
            action=AlertAction.RECIPIENT_SUSPENDED if suspend else AlertAction.NONE,
        )
        return replace(outcome, alert=alert, control=control, episode_active=True)

    # ------------------------------------------------------------------ the baseline

    def baseline(self, state: BulkExportState, at_ms: int) -> Baseline | None:
        """Return the learned normal for event time ``at_ms``, or None while warming up."""
        if state.folded_through is None:
            return None
        return self._baseline_at(state, at_ms // HOUR_MS, state.folded_through)

    def _baseline_at(self, state: BulkExportState, hour: int, as_of: int) -> Baseline | None:
        """Return the most permissive baseline of hours of day ``hour-1..hour+1`` (to ``as_of``)."""
        cfg = self.config
        best: Baseline | None = None
        for offset in (-1, 0, 1):
            values = self._slot_values(state, (hour + offset) % 24, as_of)
            if len(values) < cfg.warmup_days:
                return None
            median = float(statistics.median(values))
            spread = MAD_TO_SIGMA * float(statistics.median(abs(v - median) for v in values))
            threshold = max(cfg.multiple * median, median + cfg.spreads * spread, float(cfg.floor))
            if best is None or threshold > best.threshold:
                best = Baseline(median, spread, threshold)
        return best

    def _slot_values(self, state: BulkExportState, hour_of_day: int, as_of: int) -> list[int]:
        """Return the learned volumes of one hour of day, newest first, within the horizon."""
        if state.learned_from is None:
            return []
        oldest = max(state.learned_from, as_of - self.config.history_days * 24 + 1)
        latest = as_of - (as_of - hour_of_day) % 24
        return [state.history.get(h, 0) for h in range(latest, oldest - 1, -24)]

    def _learn(self, state: BulkExportState) -> None:
        """Learn every hour that is over (plus lateness); forget history beyond the horizon."""
        assert state.watermark is not None and state.folded_through is not None
        final = (state.watermark - self.config.lateness_ms) // HOUR_MS - 1
        if final <= state.folded_through:
            return
        for hour in sorted(h for h in state.hours if h <= final):
            volume = state.hours.pop(hour)
            if hour <= state.folded_through:
                continue
            base = self._baseline_at(state, hour, hour - 1)
            if base is not None:
                volume = min(volume, int(base.threshold))
            if volume:
                state.history[hour] = volume
        state.folded_through = final
        horizon = final - self.config.history_days * 24
        for hour in [h for h in state.history if h <= horizon]:
            del state.history[hour]


def _summary(
    recipient: str, outcome: BulkExportOutcome, trigger: float, *, static: bool, suspended: bool
) -> str:
    """Return the alert's plain-language summary."""
    base = outcome.baseline
    usual = (
        f"its usual volume at this time of day is about {base.median:,.0f}"
        if base
        else ("no normal volume has been learned for it yet")
    )
    if static:
        what = f"above its policy limit of {trigger:,.0f} per hour; {usual}."
    else:
        limit = f"; its policy limit is {outcome.limit:,}" if outcome.limit else ""
        what = f"far above normal: {usual}, alert level {trigger:,.0f}{limit}."
    text = (
        f"{recipient} received {outcome.observed:,} photos in the hour up to"
        f" {iso_moment(outcome.at_ms)}, {what}"
    )
    if suspended:
        return (
            f"{text} Consentinel suspended {recipient}: the gate holds its requests until an"
            f" operator runs `consentinel recipients resume {recipient}`."
        )
    return f"{text} Check which requesters or training jobs sent them (sample events attached)."
