"""An erasure forgets the erased user in the photo index, and the erased photo stays unclaimable.

CONTRACT §3: after an erasure "the gate forgets what it must (the erased photos and, for an
account, the user's state)" and "decides later requests for erased photos DENY/ERASED"; a photo
id and a content hash belong to their first uploader. So the index entries of an erased photo
(``I:id:<photo>``, ``I:sha:<hash>``) must stop naming the erased user, yet nobody else may claim
them: a copy of an erased photo (same id, or same content under another id) uploaded by anyone,
and every request naming it, is ``DENY``/``ERASED``. All of it exactly once: written in the
runtime's transactions, restored from the changelog.

The gate of 592331c keeps the erased user's id in the index forever, and lets a copy of an erased
photo uploaded by another user be shared.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from streams import topics
from streams.core.partitioning import partition_for
from streams.gate.photos import ERASED_ENTRY
from streams.gate.topology import GateTopology
from streams.runtime.runner import RuntimeOptions
from streams.runtime.testing import InjectedFailure, TopologyDriver, sample_record
from streams.testing.topologies import gate_driver
from tests.unit.gate_stories import HOUR, Writer, decisions_by_subject, share


def neighbour(user: str, partitions: int, name: str = "nina") -> str:
    """Return a user id (``name`` and a number) whose events land on ``user``'s partition."""
    target = partition_for(user, partitions)
    return next(
        candidate
        for candidate in (f"{name}{i}" for i in range(10_000))
        if partition_for(candidate, partitions) == target
    )


def sha(photo: str) -> str:
    """The content hash :meth:`Writer.upload` gives ``photo``."""
    return hashlib.sha256(photo.encode()).hexdigest()


def index_keys(photo: str, content: str | None = None) -> list[bytes]:
    """The index entries of a photo (its id, and its content hash)."""
    return [f"I:id:{photo}".encode(), f"I:sha:{content or sha(photo)}".encode()]


def live_state(driver: TopologyDriver[GateTopology]) -> dict[bytes, bytes]:
    """The changelog as compaction keeps it: the last value of every key that is not deleted."""
    state: dict[bytes, bytes] = {}
    for partition in range(driver.partitions):
        for key, value in driver.changelog(partition):
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state


def mentions(state: dict[bytes, bytes], user: str) -> set[bytes]:
    """The live changelog keys whose key or value holds ``user``'s id."""
    needle = user.encode()
    return {key for key, value in state.items() if needle in key or needle in value}


def erase(writer: Writer, owner: str, at: int, photo: str | None = None) -> str:
    """Append an erasure of ``owner``'s account (or of one photo); return its event id."""
    event_id = f"erasure-{at}"
    record: dict[str, Any] = sample_record(
        writer.codec,
        topics.TOPIC_ERASURE_REQUESTS,
        event_id=event_id,
        occurred_at=at,
        request_id=f"ticket-{event_id}",
        user_id=owner,
        scope="ACCOUNT" if photo is None else "PHOTO",
        photo_id=photo,
        reason="USER_REQUEST",
    )
    writer.driver.feed(topics.TOPIC_ERASURE_REQUESTS, owner, record, timestamp_ms=at)
    return event_id


def grant(writer: Writer, owner: str, at: int) -> str:
    return writer.consent(owner, at, purpose="ML_TRAINING", granted=True, categories=["IMAGE"])


def verdicts(driver: TopologyDriver[GateTopology], *events: str) -> list[tuple[str, str]]:
    """The (verdict, reason) of each request, checking each got exactly one decision."""
    found = decisions_by_subject(driver)
    out = []
    for event in events:
        assert len(found.get(event, [])) == 1, f"{event}: {found.get(event)}"
        out.append((found[event][0]["verdict"], found[event][0]["reason"]))
    return out


def copies_of(writer: Writer, owner: str, photo: str, at: int) -> list[str]:
    """Others try to get ``owner``'s erased photo out; return their requests.

    Another user uploads it under its id, one of the same partition as its owner too, a third
    uploads its content under a new id, and a fourth, who never uploaded it, asks to share it.
    """
    partitions = writer.driver.partitions
    requests = []
    for other, photo_id, content in (
        ("bob", photo, sha(photo)),
        (neighbour(owner, partitions), photo, sha(photo)),
        ("carol", f"copy-{photo}", sha(photo)),
    ):
        writer.event(
            topics.TOPIC_PHOTO_UPLOADS,
            other,
            at,
            photo_id=photo_id,
            content_sha256=content,
        )
        grant(writer, other, at + 1)
        requests.append(share(writer, other, photo_id, at + 2))
    grant(writer, "dave", at + 1)
    requests.append(share(writer, "dave", photo, at + 2))
    return requests


@pytest.mark.parametrize("restart", [False, True], ids=["same process", "after a restart"])
def test_a_photo_erasure_forgets_its_owner_in_the_index_and_no_copy_leaves(restart: bool) -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("alice", "pic-a0", now - 6 * HOUR)
    writer.upload("alice", "pic-a1", now - 6 * HOUR)
    grant(writer, "alice", now - 6 * HOUR + 1)
    before = share(writer, "alice", "pic-a0", now - 5 * HOUR)
    erase(writer, "alice", now - 4 * HOUR, "pic-a0")
    driver.run()

    state = live_state(driver)
    for key in index_keys("pic-a0"):
        assert state[key] == ERASED_ENTRY, f"{key!r} still names {state[key]!r}"
    for key in index_keys("pic-a1"):
        assert state[key] == b"alice", "her other photo is still hers"
    assert b"p:pic-a0" not in state
    assert state[b"P:alice"] == b"pic-a1", "the erased photo left her photo list"

    if restart:  # a new process: all it knows of the index comes from the changelog
        driver.close()
        driver = gate_driver(restore_from=driver)
        writer.driver = driver
    copies = copies_of(writer, "alice", "pic-a0", now - 3 * HOUR)
    again = share(writer, "alice", "pic-a0", now - 3 * HOUR)
    kept = share(writer, "alice", "pic-a1", now - 3 * HOUR)
    driver.run()

    assert verdicts(driver, before) == [("ALLOW", "CONSENTED")]
    assert verdicts(driver, *copies, again) == [("DENY", "ERASED")] * 5
    assert verdicts(driver, kept) == [("ALLOW", "CONSENTED")]
    erased = decisions_by_subject(driver)[copies[2]][0]["explanation"]
    assert "id or content of a photo that was erased" in erased
    approved = {record.key for record in driver.records(topics.TOPIC_SHARE_APPROVED)}
    assert approved == {b"alice"}, "no copy of the erased photo left"
    state = live_state(driver)
    for key in index_keys("pic-a0"):
        assert state[key] == ERASED_ENTRY, "nobody claimed the erased photo's id or content"
    assert state[b"I:id:copy-pic-a0"] == b"carol", "a new id is claimed as ever"


def test_an_account_erasure_forgets_the_user_in_the_index() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    for photo in ("pic-a0", "pic-a1"):
        writer.upload("alice", photo, now - 6 * HOUR)
    grant(writer, "alice", now - 6 * HOUR + 1)
    before = share(writer, "alice", "pic-a0", now - 5 * HOUR)
    erase(writer, "alice", now - 4 * HOUR)
    driver.run()

    state = live_state(driver)
    for photo in ("pic-a0", "pic-a1"):
        for key in index_keys(photo):
            assert state[key] == ERASED_ENTRY, f"{key!r} still names {state[key]!r}"
    assert mentions(state, "alice") == {b"l:alice"}, (
        "only the ledger that marks the account erased (so that its requests are ERASED) is left"
    )

    copies = copies_of(writer, "alice", "pic-a1", now - 3 * HOUR)
    again = share(writer, "alice", "pic-a0", now - 3 * HOUR)
    writer.upload("alice", "pic-a9", now - 3 * HOUR)  # an upload after the erasure
    later = share(writer, "alice", "pic-a9", now - 3 * HOUR + 1)
    driver.run()

    assert verdicts(driver, before) == [("ALLOW", "CONSENTED")]
    assert verdicts(driver, *copies, again, later) == [("DENY", "ERASED")] * 6
    state = live_state(driver)
    assert mentions(state, "alice") == {b"l:alice"}, "an upload after the erasure keeps nothing"
    for photo in ("pic-a0", "pic-a1", "pic-a9"):
        for key in index_keys(photo):
            assert state[key] == ERASED_ENTRY


def test_erasing_a_copy_leaves_the_first_uploaders_entry_alone() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("alice", "pic-a0", now - 6 * HOUR)
    writer.upload("bob", "pic-a0", now - 6 * HOUR + 1)  # second: the photo stays alice's
    grant(writer, "alice", now - 6 * HOUR + 2)
    grant(writer, "bob", now - 6 * HOUR + 2)
    mismatch = share(writer, "bob", "pic-a0", now - 5 * HOUR)
    erase(writer, "bob", now - 4 * HOUR, "pic-a0")
    erase(writer, "bob", now - 4 * HOUR + 1)
    hers = share(writer, "alice", "pic-a0", now - 3 * HOUR)
    driver.run()

    assert verdicts(driver, mismatch, hers) == [("DENY", "OWNER_MISMATCH"), ("ALLOW", "CONSENTED")]
    state = live_state(driver)
    for key in index_keys("pic-a0"):
        assert state[key] == b"alice"
    assert mentions(state, "bob") == {b"l:bob"}


@pytest.mark.parametrize("scope", ["PHOTO", "ACCOUNT"])
def test_an_erasure_while_the_claims_are_in_flight_decides_who_waited_for_them(
    scope: str,
) -> None:
    # the index's answers are late: they cross the broker (another process owns the index)
    driver = gate_driver(options=RuntimeOptions(local_loopback=False))
    writer = Writer(driver)
    now = driver.clock()
    nina = neighbour("alice", driver.partitions)  # same partition: waits for alice's claims
    driver.hold(topics.TOPIC_GATE_PHOTO_VERDICTS)
    writer.upload("alice", "pic-a0", now - 6 * HOUR)
    grant(writer, "alice", now - 6 * HOUR + 1)
    grant(writer, nina, now - 6 * HOUR + 1)
    waiting = share(writer, nina, "pic-a0", now - 5 * HOUR)
    erase(writer, "alice", now - 4 * HOUR, "pic-a0" if scope == "PHOTO" else None)
    driver.run()
    assert decisions_by_subject(driver) == {}, "nothing decided on a guess"
    driver.release(topics.TOPIC_GATE_PHOTO_VERDICTS)
    driver.run()

    assert verdicts(driver, waiting) == [("DENY", "ERASED")], "decided, never left waiting"
    state = live_state(driver)
    for key in index_keys("pic-a0"):
        assert state[key] == ERASED_ENTRY
    assert not [key for key in state if key.startswith((b"w:", b"x:", b"p:pic-a"))]


def test_an_aborted_erasure_is_redone_with_the_same_records() -> None:
    def scenario(driver: TopologyDriver[GateTopology]) -> None:
        writer = Writer(driver)
        now = driver.clock()
        for owner in ("alice", "bob", "carol"):
            writer.upload(owner, f"pic-{owner[0]}0", now - 6 * HOUR)
            grant(writer, owner, now - 6 * HOUR + 1)
            share(writer, owner, f"pic-{owner[0]}0", now - 5 * HOUR)
        erase(writer, "alice", now - 4 * HOUR)
        erase(writer, "bob", now - 4 * HOUR, "pic-b0")
        copies_of(writer, "bob", "pic-b0", now - 3 * HOUR)

    options = RuntimeOptions(batch_max_events=3, local_loopback=False)
    reference = gate_driver(options=options)
    scenario(reference)
    reference.run()

    driver = gate_driver(options=options)
    scenario(driver)
    driver.run(max_turns=4)
    driver.fail(after=2, error=InjectedFailure("boom"))
    with pytest.raises(InjectedFailure):
        driver.run()
    driver.run()

    assert driver.aborts == 1
    for topic in (topics.TOPIC_DECISIONS, topics.TOPIC_RECALLS, topics.TOPIC_GATE_PHOTO_CLAIMS):
        assert [r.value for r in driver.records(topic)] == [
            r.value for r in reference.records(topic)
        ], topic
    assert [driver.changelog(p) for p in range(driver.partitions)] == [
        reference.changelog(p) for p in range(reference.partitions)
    ]
    state = live_state(driver)
    assert mentions(state, "alice") == {b"l:alice"}
    for key in index_keys("pic-b0"):
        assert state[key] == ERASED_ENTRY
