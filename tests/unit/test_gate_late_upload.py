"""An upload appended after the request it precedes still decides it (issue #20).

A producer's batches to different partitions land in any order: the upload a request follows
(earlier ``occurred_at``) can be appended after the request, past the merge's idle limit. The
request was then released first, the photo index knew no upload, and it was decided
``UNKNOWN_PHOTO``; the same input written before the gate started decided it on its consent.
That is how two gates reading a backlog as it was written decided 92 requests of 100,000
``UNKNOWN_PHOTO`` that one gate reading it whole allowed or denied on consent.

Now "the index knows no upload" waits until an upload later than the request has been processed
on its partition, or the grace (``unknown_photo_grace_ms``) has passed on the wall clock.
"""

from __future__ import annotations

from streams import topics
from streams.gate.state import PartitionState
from streams.gate.topology import GateTopology
from streams.runtime.memory_consumer import Fetch
from streams.runtime.runner import RuntimeOptions
from streams.runtime.testing import TopologyDriver
from streams.testing.topologies import gate_driver
from tests.unit.gate_stories import HOUR, Story, Writer, decisions_by_subject, grant

IDLE_MS = 500
GRACE_MS = 2_000  # GateProcessor's default


Driver = TopologyDriver[GateTopology]


def verdict(driver: Driver, event_id: str) -> tuple[str, str] | None:
    found = decisions_by_subject(driver).get(event_id)
    if not found:
        return None
    (decision,) = found
    return decision["verdict"], decision["reason"]


def prepared() -> tuple[Driver, Writer, str, int]:
    """A one-partition gate whose every source is caught up, and a consenting owner."""
    driver = gate_driver(partitions=1, options=RuntimeOptions(max_idle_ms=IDLE_MS))
    writer = Writer(driver)
    now = driver.clock()
    owner, first = writer.story(Story("first", "", "", consents=[grant()]), now - HOUR)
    driver.run()
    driver.advance(IDLE_MS)
    assert verdict(driver, first) == ("ALLOW", "CONSENTED")
    return driver, writer, owner, now


def released(driver: Driver, writer: Writer, owner: str, photo: str, now: int) -> str:
    """Append a request for ``photo`` (not uploaded), run past the merge's idle limit (the
    request is released); return its event id, asserting it is not decided yet."""
    request = writer.request(Story(photo, "", ""), owner, photo, now)
    driver.run()
    driver.advance(IDLE_MS)
    assert verdict(driver, request) is None
    return request


def test_an_upload_appended_after_its_request_and_the_idle_limit_still_decides_it() -> None:
    driver, writer, owner, now = prepared()
    request = released(driver, writer, owner, "p-late", now)
    driver.advance(GRACE_MS // 4)
    assert verdict(driver, request) is None, "decided before the upload it follows could land"
    writer.upload(owner, "p-late", now - 1_000)  # appended now, with its true occurred_at
    driver.run()
    assert verdict(driver, request) == ("ALLOW", "CONSENTED")


def test_an_upload_fetched_with_the_punctuation_that_ends_the_grace_decides_it() -> None:
    """A gate busy past the grace (a long batch, a loaded machine) must first process what it
    fetched: the upload was on the broker before the punctuation judged the request unknown.
    Punctuating before the batch decided it ``UNKNOWN_PHOTO``, where a gate that kept up (or
    one reading the input whole) allowed it: two gates differed from one at full size."""
    driver, writer, owner, now = prepared()
    request = released(driver, writer, owner, "p-late", now)
    driver.clock.advance(2 * GRACE_MS)  # stalled: nothing fetched, no punctuation, meanwhile
    writer.upload(owner, "p-late", now - 1_000)  # ... its upload was appended
    driver.run()
    assert verdict(driver, request) == ("ALLOW", "CONSENTED")


def test_the_grace_does_not_run_out_while_the_upload_stream_has_records_to_come() -> None:
    """Written while read: a request overtook its upload, not yet appended, at the start of the
    write; the upload then sat behind the consumer's prefetch for longer than the grace. The
    punctuation decided ``UNKNOWN_PHOTO`` meanwhile: 3,106 of 150,000 requests in one run, where
    a gate reading the input whole decided them on their consents (2026-12-07)."""
    driver, writer, owner, now = prepared()
    request = released(driver, writer, owner, "p-late", now)
    driver.consumer.set_fetch(topics.TOPIC_PHOTO_UPLOADS, [0], Fetch.HELD)
    writer.upload(owner, "p-late", now - 1_000)  # on the broker, not fetched yet
    for _ in range(4):
        driver.advance(GRACE_MS)  # punctuations past the grace, the upload still to come
    assert verdict(driver, request) is None, "decided while its upload was on the broker"
    driver.consumer.set_fetch(topics.TOPIC_PHOTO_UPLOADS, [0], Fetch.LIVE)
    driver.run()
    assert verdict(driver, request) == ("ALLOW", "CONSENTED")


def test_a_photo_never_uploaded_is_unknown_once_a_later_upload_is_processed() -> None:
    driver, writer, owner, now = prepared()
    request = released(driver, writer, owner, "p-missing", now)
    writer.upload(owner, "p-other", now + 10)  # uploads of a partition come in occurred_at order
    driver.run()
    assert verdict(driver, request) == ("DENY", "UNKNOWN_PHOTO")


def test_a_photo_never_uploaded_is_unknown_after_the_grace() -> None:
    driver, writer, owner, now = prepared()
    request = writer.request(Story("missing", "", ""), owner, "p-missing", now)
    later = writer.consent(owner, now + 5, **grant(granted=False))  # waits behind the request
    driver.run()
    state = driver.tasks[0].state
    assert isinstance(state, PartitionState) and owner in state.unsure(), "released, unsure"
    driver.advance(GRACE_MS - 1)
    assert verdict(driver, request) is None
    driver.advance(1_000)  # the next punctuation after the grace decides it
    assert verdict(driver, request) == ("DENY", "UNKNOWN_PHOTO")
    assert state.unsure() == {}, "nothing is left waiting"
    assert state.waiters("p-missing") == [], "nor waiting for its upload"
    assert state.queue(owner) == [], f"the withdrawal {later} behind it was applied"
    again = writer.request(Story("after", "", ""), owner, "p" + owner[1:], now + 10)
    driver.advance(IDLE_MS)
    assert verdict(driver, again) == ("DENY", "CONSENT_REVOKED")


def test_the_wait_survives_a_restart_from_the_changelog() -> None:
    driver, writer, owner, now = prepared()
    request = released(driver, writer, owner, "p-late", now)
    restarted = gate_driver(partitions=1, restore_from=driver)
    writer.driver = restarted
    assert owner in restarted.tasks[0].state.unsure()
    writer.upload(owner, "p-late", now - 1_000)
    restarted.run()
    assert verdict(restarted, request) == ("ALLOW", "CONSENTED")
    assert topics.TOPIC_DECISIONS  # the restarted gate decided it once:
    assert len(decisions_by_subject(restarted)[request]) == 1
