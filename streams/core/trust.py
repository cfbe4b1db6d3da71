"""Pure checks of what the gate may trust about an input before deciding it (contract section 3).

No Kafka here: the gate passes what it read (key bytes, partition, the broker's append time) and
gets back ``None`` when the input can be trusted, or the error to dead-letter it with (never
raised: the caller writes ``error.error_kind`` and ``str(error)`` to ``governance.dlq``).

- :func:`check_time`: ``occurred_at`` within the policy's ``time`` bounds of the broker's append
  time, else :class:`~streams.errors.InvalidTimeError` (``INVALID_TIME``).
- :func:`check_routing`: key = the owner's id, and partition = murmur2(key) mod N, else
  :class:`~streams.errors.MisroutedError` (``MISROUTED``).
- :func:`effective_time`: the time consent and agreements are judged at.
- :class:`SeenEvents`: a bounded, serializable memory of event ids per partition, telling an exact
  duplicate (decide once) from an ``event_id`` reused with other content
  (:class:`~streams.errors.DuplicateEventError`, ``DUPLICATE_EVENT_ID``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import Enum
from typing import Any

from streams.core.audit import canonical_content
from streams.core.partitioning import partition_for
from streams.core.policy_model import TimeBounds
from streams.core.times import iso_moment
from streams.errors import DuplicateEventError, InvalidTimeError, MisroutedError

_SHOWN = 80
"""At most this many characters of a key or id are echoed in a message."""


def _show(value: str) -> str:
    """Return ``value`` quoted, cut to :data:`_SHOWN` characters."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def _moment(millis: int) -> str:
    """Return ``millis`` as a UTC timestamp, or as raw milliseconds when out of range."""
    try:
        return iso_moment(millis)
    except (OverflowError, ValueError):
        return f"{millis} ms since the epoch"


def check_time(
    occurred_at_ms: int, append_time_ms: int, bounds: TimeBounds
) -> InvalidTimeError | None:
    """Return ``None`` if ``occurred_at_ms`` is within ``bounds`` of the broker's append time.

    ``append_time_ms`` must be the record's ``LogAppendTime`` (the broker's clock: input topics
    are configured ``message.timestamp.type=LogAppendTime``); a producer's ``CreateTime`` would let
    it vouch for itself. Exactly ``max_skew_s`` ahead or ``max_lateness_s`` behind is accepted.
    """
    ahead = occurred_at_ms - append_time_ms
    if ahead > bounds.max_skew_ms:
        return InvalidTimeError(
            f"occurred_at {_moment(occurred_at_ms)} is {ahead / 1000:.1f}s ahead of the"
            f" broker's append time {_moment(append_time_ms)}, more than the"
            f" {bounds.max_skew_s:g}s (time.max_skew_s) the policy trusts producers' clocks",
            hint="fix the producer's clock (NTP) or its occurred_at; the event was not decided",
        )
    behind = -ahead
    if behind > bounds.max_lateness_ms:
        return InvalidTimeError(
            f"occurred_at {_moment(occurred_at_ms)} is {behind / 1000:.1f}s behind the"
            f" broker's append time {_moment(append_time_ms)}, more than the"
            f" {bounds.max_lateness_s:g}s (time.max_lateness_s) the policy accepts",
            hint="a deliberate replay of old events needs a policy with a larger"
            " time.max_lateness_s; otherwise fix the producer's occurred_at",
        )
    return None


def check_routing(
    key: bytes | None, owner_id: str, partition: int, partitions: int
) -> MisroutedError | None:
    """Return ``None`` if the record is keyed by ``owner_id`` and sits where murmur2 puts it.

    ``owner_id`` is the value's ``owner_id`` (or ``user_id``); the key must be exactly its UTF-8
    bytes, and ``partition`` must equal ``murmur2(key) mod partitions`` (Kafka's default
    partitioner, :func:`streams.core.partitioning.partition_for`).
    """
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    expected_key = owner_id.encode("utf-8")
    if key is None:
        return MisroutedError(
            f"the record has no key; it must be its owner's id {_show(owner_id)}",
            hint="the producer must key every event by owner_id / user_id",
        )
    if key != expected_key:
        shown = _show(key.decode("utf-8", errors="replace"))
        return MisroutedError(
            f"the record's key {shown} is not its owner's id {_show(owner_id)}",
            hint="the producer must key every event by owner_id / user_id",
        )
    expected = partition_for(key, partitions)
    if partition != expected:
        return MisroutedError(
            f"the record for {_show(owner_id)} sits on partition {partition}, but murmur2(key)"
            f" mod {partitions} is partition {expected}: it would be decided without that"
            " user's consents",
            hint="producers must use Kafka's default murmur2 partitioner (librdkafka:"
            " partitioner=murmur2_random) and every input topic the same partition count",
        )
    return None


def effective_time(occurred_at_ms: int, stream_time_ms: int | None) -> int:
    """Return the time a request is judged at: the later of its ``occurred_at`` and stream time.

    ``stream_time_ms`` is the greatest ``occurred_at`` the gate has processed on the partition
    (``None`` before the first). A requester cannot backdate past what the gate already knows.
    """
    return occurred_at_ms if stream_time_ms is None else max(occurred_at_ms, stream_time_ms)


def content_digest(record: Mapping[str, Any]) -> str:
    """Return a short digest (32 hex digits) of a decoded event's content, for :class:`SeenEvents`.

    Computed over :func:`streams.core.audit.canonical_content`, so it does not depend on key order
    or on how timestamps were decoded; every field counts, ``event_id`` included.
    """
    return hashlib.sha256(canonical_content(record)).hexdigest()[:32]


class Seen(Enum):
    """What :meth:`SeenEvents.observe` found for an event id."""

    NEW = "new"
    """Not seen within the window: decide it (it is now remembered)."""
    EXACT_DUPLICATE = "exact_duplicate"
    """Seen with the same content: already decided, skip it."""
    CONFLICT = "conflict"
    """Seen with other content: dead-letter it (``DUPLICATE_EVENT_ID``), see :func:`conflict`."""


DEFAULT_MAX_ENTRIES = 200_000
"""Default cap of one partition's :class:`SeenEvents` (about 20 MB in memory)."""

_FORMAT = 1


class SeenEvents:
    """The event ids one partition's inputs carried recently, with their content digests.

    **Bounds.** An entry is stamped with the broker append time of the record that carried it and
    forgotten once the newest append time observed is more than ``window_ms`` later, or, when more
    than ``max_entries`` are held, oldest first. Memory is therefore at most ``max_entries``
    entries (id, 32-hex digest, one integer).

    **Guarantee.** With ``window_ms = max_skew + max_lateness`` (:meth:`for_bounds`), every *exact*
    duplicate that passes :func:`check_time` is recognised as long as fewer than ``max_entries``
    events arrived on the partition between the two copies: both copies carry the same
    ``occurred_at``, so their append times differ by at most ``max_skew + max_lateness``. A reuse
    of an ``event_id`` with different content is recognised when its append time is within
    ``window_ms`` of the first copy's; a later reuse is indistinguishable from a new event and is
    decided as one. :attr:`evicted_early` counts entries dropped by the count bound before their
    time, which weakens the guarantee (export it as a metric).

    The first content seen for an id stays the reference: a conflicting copy is not recorded.
    Serialize with :meth:`to_dict`/:meth:`from_dict` (plain JSON data) so the memory survives a
    restart in the gate's changelog; the gate must restore it with its other state when a
    transaction aborts.
    """

    __slots__ = ("_entries", "_newest_ms", "evicted_early", "max_entries", "window_ms")

    def __init__(self, *, window_ms: int, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if window_ms < 0 or max_entries <= 0:
            raise ValueError("window_ms must be >= 0 and max_entries > 0")
        self.window_ms = window_ms
        self.max_entries = max_entries
        self.evicted_early = 0
        self._entries: dict[str, tuple[str, int]] = {}
        self._newest_ms: int | None = None

    @classmethod
    def for_bounds(cls, bounds: TimeBounds, max_entries: int = DEFAULT_MAX_ENTRIES) -> SeenEvents:
        """Return an empty memory whose window is ``max_skew + max_lateness`` of ``bounds``."""
        return cls(window_ms=bounds.max_skew_ms + bounds.max_lateness_ms, max_entries=max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, event_id: str, digest: str, append_time_ms: int) -> Seen:
        """Classify ``event_id`` with content ``digest``, remembering it if new.

        ``append_time_ms`` is the broker append time of the record (the trusted clock).
        """
        self._expire(append_time_ms)
        known = self._entries.get(event_id)
        if known is not None:
            return Seen.EXACT_DUPLICATE if known[0] == digest else Seen.CONFLICT
        self._entries[event_id] = (digest, append_time_ms)
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]
            self.evicted_early += 1
        return Seen.NEW

    def _expire(self, now_ms: int) -> None:
        """Advance the newest append time to ``now_ms`` and forget entries older than the window.

        Entries are dropped from the oldest inserted while they are out of the window; append
        times of several input topics interleave, so an entry may outlive its window a little,
        never the reverse.
        """
        if self._newest_ms is None or now_ms > self._newest_ms:
            self._newest_ms = now_ms
        horizon = self._newest_ms - self.window_ms
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][1] >= horizon:
                break
            del self._entries[oldest]

    def to_dict(self) -> dict[str, Any]:
        """Return the memory as plain JSON data (restored by :meth:`from_dict`)."""
        return {
            "format": _FORMAT,
            "window_ms": self.window_ms,
            "max_entries": self.max_entries,
            "newest_ms": self._newest_ms,
            "evicted_early": self.evicted_early,
            "entries": [[eid, digest, at] for eid, (digest, at) in self._entries.items()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeenEvents:
        """Rebuild a memory saved by :meth:`to_dict`; ``ValueError`` if it is not one."""
        try:
            if data["format"] != _FORMAT:
                raise ValueError(f"unsupported SeenEvents format {data['format']!r}")
            seen = cls(window_ms=int(data["window_ms"]), max_entries=int(data["max_entries"]))
            seen.evicted_early = int(data["evicted_early"])
            newest = data["newest_ms"]
            seen._newest_ms = None if newest is None else int(newest)
            for event_id, digest, at in data["entries"]:
                seen._entries[str(event_id)] = (str(digest), int(at))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a saved SeenEvents: {exc}") from exc
        return seen


def conflict(event_id: str, partition: int) -> DuplicateEventError:
    """Return the dead-letter error of an ``event_id`` reused with different content."""
    return DuplicateEventError(
        f"event_id {_show(event_id)} was already seen on partition {partition} with different"
        " content; the first one was decided, this one is not",
        hint="event_id is the idempotency key: give every distinct event a new UUID, and resend"
        " a retry byte-for-byte identical",
    )
