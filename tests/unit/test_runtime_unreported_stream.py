"""A stream the consumer has said nothing of since the merge began is waited for (#20).

Every start, rebalance and rewind seeks; the fetches that follow do not come back together.
In CI, after a registry outage's rewinds, a training read's fetch came back and its consent's
fetch was more than ``max_idle_ms`` late: the consent stream, empty, was taken for idle and
passed over, and the read was denied (NO_CONSENT) where one decided in order is allowed.
"""

from __future__ import annotations

from streams.runtime.timesync import PartitionSynchronizer

CONSENT, READS = "consent", "reads"


def merge() -> PartitionSynchronizer[str]:
    return PartitionSynchronizer([CONSENT, READS], max_idle_ms=200)


def test_an_unreported_stream_holds_the_others_however_long_it_takes() -> None:
    m = merge()
    m.add(READS, 2_000, "read")
    for now in (0, 199, 200, 5_000, 60_000):
        assert list(m.drain(now)) == [], f"released at {now} ms past a stream never fetched"
    m.add(CONSENT, 1_000, "consent")  # the late fetch brings it, and its end
    m.mark_caught_up(CONSENT)
    assert [item for _, item in m.drain(60_001)] == ["consent", "read"]


def test_an_unreported_stream_that_turns_out_empty_releases_at_its_end() -> None:
    m = merge()
    m.add(READS, 2_000, "read")
    assert list(m.drain(10_000)) == []
    m.mark_caught_up(CONSENT)  # its fetch: nothing there
    assert [item for _, item in m.drain(10_001)] == ["read"]


def test_a_stream_that_reported_and_went_quiet_is_idle_after_max_idle_ms() -> None:
    m = merge()
    m.add(CONSENT, 1_000, "consent")
    m.add(READS, 2_000, "read")
    assert [item for _, item in m.drain(0)] == ["consent"]  # consent now empty since 0
    assert list(m.drain(199)) == []
    assert [item for _, item in m.drain(200)] == ["read"], "idle streams never stall the merge"
