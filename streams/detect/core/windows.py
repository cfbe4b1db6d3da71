"""Sliding windows made of fixed buckets, and the episode state machine with hysteresis.

A :class:`BucketCounter` counts events per bucket of ``bucket_ms`` of event time. Its window at a
head bucket ``h`` is the ``size`` buckets ``h - size + 1 .. h``: with 1-minute buckets and
``size=60`` that is the sliding hour ending at the current minute (between 59 and 60 minutes
long). Nothing depends on window-close callbacks or on expiry: the caller advances the head with
each event's time and old buckets are pruned then.

An :class:`Episode` is the span from a crossing (the observed value exceeds the trigger) until the
value falls back below ``rearm_fraction`` * the trigger. Exactly one alert is raised per episode,
on the event that crosses; while the episode is active nothing else is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class BucketCounter:
    """Event counts per bucket (bucket index = event time // ``bucket_ms``), sparse.

    The caller never adds at a time later than the head it passes; then, after :meth:`prune`,
    every bucket kept lies in the window, so the window's total is kept as a running sum.
    """

    __slots__ = ("_oldest", "_sum", "bucket_ms", "counts", "size")

    def __init__(self, bucket_ms: int, size: int, counts: dict[int, int] | None = None) -> None:
        self.bucket_ms = bucket_ms
        self.size = size
        self.counts: dict[int, int] = {}
        self._sum = 0
        self._oldest: int | None = None
        for index, n in (counts or {}).items():
            self._put(index, n)

    def _put(self, index: int, n: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + n
        self._sum += n
        if self._oldest is None or index < self._oldest:
            self._oldest = index

    def bucket(self, at_ms: int) -> int:
        """Return the index of the bucket holding event time ``at_ms``."""
        return at_ms // self.bucket_ms

    def add(self, at_ms: int, head: int, n: int = 1) -> bool:
        """Count ``n`` events at ``at_ms``; return False (nothing counted) if before the window."""
        index = at_ms // self.bucket_ms
        if index <= head - self.size:
            return False
        self._put(index, n)
        return True

    def total(self, head: int) -> int:
        """Return the number of events in the window ending at bucket ``head`` (prunes first)."""
        self.prune(head)
        return self._sum

    def prune(self, head: int) -> None:
        """Forget the buckets that fell out of the window ending at ``head``."""
        low = head - self.size
        if self._oldest is None or self._oldest > low:
            return
        for index in [i for i in self.counts if i <= low]:
            self._sum -= self.counts.pop(index)
        self._oldest = min(self.counts) if self.counts else None

    def window_start(self, head: int) -> int:
        """Return the first millisecond of the window ending at bucket ``head``."""
        return (head - self.size + 1) * self.bucket_ms

    def to_dict(self) -> list[list[int]]:
        """Return the counts as a JSON-able list of ``[bucket, count]`` pairs, oldest first."""
        return [[index, n] for index, n in sorted(self.counts.items())]

    def load(self, pairs: Any) -> BucketCounter:
        """Replace the counts with those of :meth:`to_dict` output; return self."""
        self.counts, self._sum, self._oldest = {}, 0, None
        for index, n in pairs or ():
            self._put(int(index), int(n))
        return self


@dataclass
class Episode:
    """Whether an alert episode is active, and what identifies it.

    ``start_bucket`` (the bucket of the crossing event) goes into the alert id, so the same
    crossing always names the same episode.
    """

    active: bool = False
    alert_id: str | None = None
    start_bucket: int | None = None
    started_at: int | None = None
    trigger: float | None = None
    peak: int = 0

    def start(
        self, *, alert_id: str, bucket: int, at_ms: int, trigger: float, observed: int
    ) -> None:
        """Begin an episode at a crossing."""
        self.active = True
        self.alert_id = alert_id
        self.start_bucket = bucket
        self.started_at = at_ms
        self.trigger = trigger
        self.peak = observed

    def note(self, observed: int) -> None:
        """Record the observed value while active (keeps the peak)."""
        self.peak = max(self.peak, observed)

    def should_end(self, observed: int, trigger: float | None, rearm_fraction: float) -> bool:
        """Whether ``observed`` fell below the re-arm level of the current (or starting) trigger."""
        level = trigger if trigger is not None else self.trigger
        return self.active and level is not None and observed < rearm_fraction * level

    def end(self) -> None:
        """End the episode (re-arm); the next crossing starts a new one."""
        self.active = False
        self.trigger = None
        self.peak = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "active": self.active,
            "alert_id": self.alert_id,
            "start_bucket": self.start_bucket,
            "started_at": self.started_at,
            "trigger": self.trigger,
            "peak": self.peak,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Episode:
        """Rebuild from :meth:`to_dict` output (``None`` gives an inactive episode)."""
        if not data:
            return cls()
        return cls(
            active=bool(data.get("active")),
            alert_id=data.get("alert_id"),
            start_bucket=data.get("start_bucket"),
            started_at=data.get("started_at"),
            trigger=data.get("trigger"),
            peak=int(data.get("peak") or 0),
        )
