"""Pure trust checks: producers' clocks, routing, effective time, duplicate event ids."""

from __future__ import annotations

import json

import pytest

from streams.core.partitioning import partition_for
from streams.core.policy import TimeBounds
from streams.core.trust import (
    Seen,
    SeenEvents,
    check_routing,
    check_time,
    conflict,
    content_digest,
    effective_time,
)
from streams.errors import (
    ConsentinelError,
    DuplicateEventError,
    InvalidEventError,
    InvalidTimeError,
    MisroutedError,
)

BOUNDS = TimeBounds(max_skew_s=60, max_lateness_s=300)
T = 1_790_000_000_000


# ---------------------------------------------------------------- time


@pytest.mark.parametrize(
    "occurred",
    [T, T + 60_000, T - 300_000, T + 1, T - 1],
    ids=["equal", "max skew", "max lateness", "just ahead", "just behind"],
)
def test_time_within_bounds_is_trusted(occurred: int) -> None:
    assert check_time(occurred, T, BOUNDS) is None


def test_time_too_far_ahead_is_invalid() -> None:
    error = check_time(T + 60_001, T, BOUNDS)
    assert isinstance(error, InvalidTimeError)
    assert error.error_kind == "INVALID_TIME"
    assert "60.0s ahead" in str(error) and "time.max_skew_s" in str(error)
    assert "clock" in str(error)


def test_time_too_late_is_invalid_and_says_how_to_replay() -> None:
    error = check_time(T - 300_001, T, BOUNDS)
    assert isinstance(error, InvalidTimeError)
    assert "300.0s behind" in str(error) and "time.max_lateness_s" in str(error)
    assert "replay" in str(error)


def test_time_bounds_from_policy_are_used() -> None:
    replay = TimeBounds(max_skew_s=0, max_lateness_s=86_400 * 365)
    assert check_time(T - 86_400_000 * 30, T, replay) is None
    assert check_time(T + 1, T, replay) is not None


def test_absurd_time_still_gives_a_message() -> None:
    error = check_time(2**62, T, BOUNDS)
    assert isinstance(error, InvalidTimeError) and "ms since the epoch" in str(error)


# ---------------------------------------------------------------- routing


def test_correctly_routed_record_is_trusted() -> None:
    owner = "user-42"
    partition = partition_for(owner, 12)
    assert check_routing(owner.encode(), owner, partition, 12) is None


def test_non_ascii_owner_routes_on_utf8_bytes() -> None:
    owner = "zoë-7"
    assert check_routing(owner.encode("utf-8"), owner, partition_for(owner, 6), 6) is None


def test_wrong_partition_is_misrouted() -> None:
    owner = "user-42"
    right = partition_for(owner, 12)
    wrong = (right + 1) % 12
    error = check_routing(owner.encode(), owner, wrong, 12)
    assert isinstance(error, MisroutedError) and error.error_kind == "MISROUTED"
    assert f"partition {wrong}" in str(error) and f"is partition {right}" in str(error)
    assert "murmur2_random" in str(error)


@pytest.mark.parametrize(
    ("key", "needle"),
    [(None, "no key"), (b"user-43", "is not its owner's id"), (b"USER-42", "not its owner")],
)
def test_key_other_than_owner_is_misrouted(key: bytes | None, needle: str) -> None:
    owner = "user-42"
    error = check_routing(key, owner, partition_for(owner, 12), 12)
    assert isinstance(error, MisroutedError)
    assert needle in str(error)


def test_key_on_its_own_partition_but_not_the_owner_is_still_misrouted() -> None:
    # Another user's key on that key's own partition: routing by key alone is not enough.
    error = check_routing(b"mallory", "alice", partition_for(b"mallory", 4), 4)
    assert isinstance(error, MisroutedError)


def test_long_key_is_cut_in_the_message() -> None:
    error = check_routing(b"x" * 10_000, "alice", 0, 4)
    assert error is not None and len(str(error)) < 500


def test_zero_partitions_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_routing(b"a", "a", 0, 0)


# ---------------------------------------------------------------- effective time


def test_effective_time_is_the_later_of_occurred_at_and_stream_time() -> None:
    assert effective_time(T, None) == T
    assert effective_time(T, T - 5) == T
    assert effective_time(T - 5_000, T) == T  # backdating does not go past the stream time


# ---------------------------------------------------------------- duplicate event ids


def event(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e-1",
        "occurred_at": T,
        "owner_id": "alice",
        "photo_id": "p-1",
    }
    base.update(changes)
    return base


def test_digest_ignores_key_order_and_sees_every_field() -> None:
    a = event()
    b = dict(reversed(list(a.items())))
    assert content_digest(a) == content_digest(b)
    assert content_digest(a) != content_digest(event(photo_id="p-2"))
    assert len(content_digest(a)) == 32


def test_exact_duplicate_and_conflict() -> None:
    seen = SeenEvents.for_bounds(BOUNDS)
    digest = content_digest(event())
    assert seen.observe("e-1", digest, T) is Seen.NEW
    assert seen.observe("e-1", digest, T + 10) is Seen.EXACT_DUPLICATE
    other = content_digest(event(photo_id="p-2"))
    assert seen.observe("e-1", other, T + 20) is Seen.CONFLICT
    # the first content stays the reference
    assert seen.observe("e-1", digest, T + 30) is Seen.EXACT_DUPLICATE
    assert seen.observe("e-2", other, T + 40) is Seen.NEW
    assert len(seen) == 2


def test_conflict_error_is_actionable() -> None:
    error = conflict("e-1", 3)
    assert isinstance(error, DuplicateEventError) and isinstance(error, InvalidEventError)
    assert isinstance(error, ConsentinelError)
    assert error.error_kind == "DUPLICATE_EVENT_ID"
    assert "'e-1'" in str(error) and "partition 3" in str(error) and "new UUID" in str(error)


def test_window_covers_every_exact_duplicate_that_passes_the_time_check() -> None:
    seen = SeenEvents.for_bounds(BOUNDS)
    window = BOUNDS.max_skew_ms + BOUNDS.max_lateness_ms
    assert seen.window_ms == window
    occurred = T
    first_append = occurred - BOUNDS.max_skew_ms  # producer's clock as far ahead as trusted
    last_append = occurred + BOUNDS.max_lateness_ms  # the copy as late as trusted
    assert check_time(occurred, first_append, BOUNDS) is None
    assert check_time(occurred, last_append, BOUNDS) is None
    assert seen.observe("e-1", "d", first_append) is Seen.NEW
    for i in range(100):
        seen.observe(f"filler-{i}", "d", first_append + i * 1000)
    assert seen.observe("e-1", "d", last_append) is Seen.EXACT_DUPLICATE


def test_entries_beyond_the_window_are_forgotten() -> None:
    seen = SeenEvents(window_ms=1_000)
    seen.observe("old", "d", T)
    seen.observe("newer", "d", T + 500)
    seen.observe("now", "d", T + 1_001)
    assert len(seen) == 2  # "old" is out of the window
    assert seen.observe("old", "other", T + 1_002) is Seen.NEW
    assert seen.evicted_early == 0


def test_count_bound_keeps_memory_small_and_is_counted() -> None:
    seen = SeenEvents(window_ms=10**12, max_entries=100)
    for i in range(1_000):
        seen.observe(f"e-{i}", "d", T + i)
    assert len(seen) == 100
    assert seen.evicted_early == 900
    assert seen.observe("e-999", "d", T + 2_000) is Seen.EXACT_DUPLICATE
    assert seen.observe("e-0", "x", T + 2_000) is Seen.NEW  # forgotten: the documented limit


def test_round_trip_through_json() -> None:
    seen = SeenEvents(window_ms=5_000, max_entries=10)
    for i in range(15):
        seen.observe(f"e-{i}", f"d{i}", T + i)
    restored = SeenEvents.from_dict(json.loads(json.dumps(seen.to_dict())))
    assert restored.to_dict() == seen.to_dict()
    assert restored.observe("e-14", "d14", T + 20) is Seen.EXACT_DUPLICATE
    assert restored.observe("e-14", "zz", T + 20) is Seen.CONFLICT
    assert restored.evicted_early == 5


@pytest.mark.parametrize(
    "data",
    [{}, {"format": 99}, {"format": 1, "window_ms": 1, "max_entries": 1}, {"format": 1, "x": 1}],
)
def test_from_dict_rejects_foreign_data(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SeenEvents.from_dict(data)


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        SeenEvents(window_ms=-1)
    with pytest.raises(ValueError):
        SeenEvents(window_ms=1, max_entries=0)
