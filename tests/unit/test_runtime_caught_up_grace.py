"""A record overtakes a source that is only caught up as of the last fetch after a grace (#20).

One fetch response can be built while a producer's batch is being appended: it brings a
user's request and says the consent topic's partition is at its end, while the consent the
producer wrote just before the request lands a moment later. Released at once, the request
was decided without that consent (live, 21 of 20,000 requests decided otherwise than the same
input as a backlog). With the grace it waits for the next fetch, which brings the consent.
"""

from __future__ import annotations

from streams.runtime.timesync import PartitionSynchronizer

CONSENT, REQUESTS = "consent", "requests"


def merge(grace_ms: int) -> PartitionSynchronizer[str]:
    return PartitionSynchronizer([CONSENT, REQUESTS], max_idle_ms=200, caught_up_grace_ms=grace_ms)


def test_a_consent_appended_just_after_the_fetch_still_comes_first() -> None:
    m = merge(50)
    m.mark_caught_up(CONSENT)  # the fetch said so, before the consent was appended
    m.add(REQUESTS, 2_000, "request")
    assert list(m.drain(1_000)) == []  # queued now: within its grace
    assert list(m.drain(1_030)) == []
    m.add(CONSENT, 1_999, "consent")  # the next fetch brings it, and its end
    m.mark_caught_up(CONSENT)
    assert [item for _, item in m.drain(1_040)] == ["consent"]
    assert [item for _, item in m.drain(1_050)] == ["request"]


def test_the_grace_counts_from_when_the_record_was_queued_not_per_record() -> None:
    m = merge(50)
    m.mark_caught_up(CONSENT)
    for i in range(3):
        m.add(REQUESTS, 2_000 + i, f"r{i}")
    assert list(m.drain(1_000)) == []
    assert [item for _, item in m.drain(1_050)] == ["r0", "r1", "r2"]  # all at once
    m.add(REQUESTS, 3_000, "r3")
    assert list(m.drain(1_060)) == []  # a later one waits its own grace
    assert [item for _, item in m.drain(1_110)] == ["r3"]


def test_no_grace_is_asked_when_every_source_has_records() -> None:
    m = merge(50)
    m.add(CONSENT, 1_000, "consent")
    m.add(REQUESTS, 2_000, "request")
    assert [item for _, item in m.drain(0)] == ["consent"]


def test_without_a_grace_a_caught_up_source_is_overtaken_at_once() -> None:
    m = merge(0)
    m.mark_caught_up(CONSENT)
    m.add(REQUESTS, 2_000, "request")
    assert [item for _, item in m.drain(1_000)] == ["request"]
