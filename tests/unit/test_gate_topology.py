"""The real gate topology on the in-process driver: every rule, order, restore, aborts, controls."""

from __future__ import annotations

from typing import Any

import pytest

from streams import topics
from streams.core.audit import verify_chain
from streams.errors import TransientError
from streams.runtime.runner import RuntimeOptions
from streams.runtime.testing import InjectedFailure, TopologyDriver
from streams.testing.topologies import gate_driver
from tests.unit.gate_stories import HOUR, STORIES, Story, Writer, decisions_by_subject, grant

GRACE_MS = 3_000
"""Past the wait of a request for a photo nobody uploaded, and the punctuation that decides it."""

CONTROL = {
    "control_id": "c-1",
    "kind": "SUSPEND_RECIPIENT",
    "recipient_org": "acme-vision",
    "reason": "test",
    "actor": "unit",
}


def chains_intact(driver: TopologyDriver[Any]) -> bool:
    """Whether every partition's decisions form one hash chain from the genesis hash."""
    return all(
        verify_chain(driver.outputs(topics.TOPIC_DECISIONS, partition)) is None
        for partition in range(driver.partitions)
    )


def test_every_rule_in_process() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    expected = {writer.story(story, now)[1]: story for story in STORIES}
    driver.run()
    # a photo nobody uploaded is unknown once no upload before it can still come: here, with no
    # later upload on its partition, after the grace (test_gate_late_upload)
    driver.advance(GRACE_MS)

    found = decisions_by_subject(driver)
    assert set(found) == set(expected), "every request gets a decision, nothing else does"
    for event_id, story in expected.items():
        (decision,) = found[event_id]
        assert (decision["verdict"], decision["reason"]) == (story.verdict, story.reason), (
            story.name
        )
        assert decision["explanation"].endswith(".")
    approved = [record.key for record in driver.records(topics.TOPIC_SHARE_APPROVED)]
    allowed = [e for e, s in expected.items() if s.verdict == "ALLOW" and not s.training]
    assert len(approved) == len(allowed)
    assert chains_intact(driver)
    assert driver.outputs(topics.TOPIC_DLQ) == []


def test_a_request_before_its_upload_and_consent_is_ordered_after_them() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    _, request = writer.story(Story("late inputs", "", "", consents=[grant()]), now)
    log = driver.records(topics.TOPIC_SHARE_REQUESTS) + driver.records(topics.TOPIC_PHOTO_UPLOADS)
    assert log[0].seq < log[1].seq, "the request was appended first"
    driver.run()
    (decision,) = decisions_by_subject(driver)[request]
    assert (decision["verdict"], decision["reason"]) == ("ALLOW", "CONSENTED")


def test_held_consent_holds_the_request_until_it_is_fetched() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    driver.hold(topics.TOPIC_CONSENT_CHANGES)
    _, request = writer.story(Story("held", "", "", consents=[grant()]), driver.clock())
    driver.advance(10 * 60_000)  # the broker has consent records to come: no idle timeout
    assert driver.outputs(topics.TOPIC_DECISIONS) == []
    driver.release(topics.TOPIC_CONSENT_CHANGES)
    driver.run()
    (decision,) = decisions_by_subject(driver)[request]
    assert decision["verdict"] == "ALLOW"


def test_a_source_whose_end_is_unknown_holds_the_merge_for_its_idle_limit_only() -> None:
    driver = gate_driver(partitions=1, options=RuntimeOptions(max_idle_ms=500))
    writer = Writer(driver)
    now = driver.clock()
    owner, _ = writer.story(Story("first", "", "", consents=[grant()]), now - HOUR)
    driver.run()
    driver.hide_end(topics.TOPIC_CONSENT_CHANGES)  # fetched, but its end never confirmed
    writer.consent(owner, now - 1000, **grant())
    request = writer.request(Story("second", "", ""), owner, "p" + owner[1:], now)
    driver.run()
    assert request not in decisions_by_subject(driver), "a consent change may still come"
    driver.advance(499)
    assert request not in decisions_by_subject(driver)
    driver.advance(1)
    (decision,) = decisions_by_subject(driver)[request]
    assert (decision["verdict"], decision["reason"]) == ("ALLOW", "CONSENTED")


def test_suspended_recipient_is_held_and_resumed() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    driver.control(topics.TOPIC_CONTROLS, "acme-vision", {**CONTROL, "at": now})
    _, held = writer.story(Story("held", "", "", consents=[grant()]), now)
    driver.run()
    resume = {**CONTROL, "control_id": "c-2", "kind": "RESUME_RECIPIENT", "at": now + 1}
    driver.control(topics.TOPIC_CONTROLS, "acme-vision", resume)
    driver.clock.advance(10)
    _, resumed = writer.story(Story("resumed", "", "", consents=[grant()]), now + 10)
    driver.run()
    found = decisions_by_subject(driver)
    assert [(d["verdict"], d["reason"]) for d in found[held]] == [("HOLD", "RECIPIENT_SUSPENDED")]
    assert [(d["verdict"], d["reason"]) for d in found[resumed]] == [("ALLOW", "CONSENTED")]


def test_unreadable_control_holds_its_recipient_and_is_dead_lettered() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    driver.control(topics.TOPIC_CONTROLS, "acme-vision", b"\x01not avro")
    _, request = writer.story(Story("x", "", "", consents=[grant()]), driver.clock())
    driver.run()
    assert decisions_by_subject(driver)[request][0]["verdict"] == "HOLD"
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert letter["source_topic"] == topics.TOPIC_CONTROLS
    assert not driver.topology.controls.whole


def test_late_withdrawal_raises_retroactive_violation() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    owner, request = writer.story(Story("ok", "", "", consents=[grant()]), now)
    driver.run()
    (decision,) = decisions_by_subject(driver)[request]
    assert decision["verdict"] == "ALLOW"
    withdrawal = writer.consent(
        owner, now - 60_000, granted=False, purpose="ML_TRAINING", categories=["IMAGE"]
    )
    driver.run()
    (alert,) = driver.outputs(topics.TOPIC_ALERTS)
    assert alert["kind"] == "RETROACTIVE_VIOLATION"
    assert decision["decision_id"] in alert["summary"]
    assert set(alert["sample_event_ids"]) == {request, withdrawal}


def test_undecodable_input_is_dead_lettered_not_decided() -> None:
    driver = gate_driver()
    driver.feed(topics.TOPIC_SHARE_REQUESTS, "u-1", b"garbage")
    driver.run()
    assert driver.outputs(topics.TOPIC_DECISIONS) == []
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert letter["value"] == b"garbage"
    assert driver.dead_letters == {(letter["error_kind"], topics.TOPIC_SHARE_REQUESTS): 1}


def _second_round(writer: Writer, owners: list[tuple[Story, str]], at: int) -> list[str]:
    """Append a second request of every story (same owner and photo); return their ids."""
    return [writer.request(story, owner, "p" + owner[1:], at) for story, owner in owners]


def test_restore_from_the_changelog_decides_the_same_and_continues_the_chain() -> None:
    reference = gate_driver()
    writer = Writer(reference)
    now = reference.clock()
    owners = [(story, writer.story(story, now)[0]) for story in STORIES]
    reference.run()
    reference.advance(GRACE_MS)  # the unknown photo's request is decided after the grace
    _second_round(writer, owners, now + 1000)
    reference.run()
    reference.advance(GRACE_MS)

    first = gate_driver()
    writer = Writer(first)
    owners = [(story, writer.story(story, now)[0]) for story in STORIES]
    first.run()
    first.advance(GRACE_MS)
    heads = {p: first.outputs(topics.TOPIC_DECISIONS, p) for p in range(first.partitions)}
    first.close()

    second = gate_driver(restore_from=first)  # a new process: empty stores, the same broker
    writer.driver = second
    requests = _second_round(writer, owners, now + 1000)
    second.run()
    second.advance(GRACE_MS)

    assert second.outputs(topics.TOPIC_DECISIONS) == reference.outputs(topics.TOPIC_DECISIONS)
    found = decisions_by_subject(second)
    for (story, _), request in zip(owners, requests, strict=True):
        (decision,) = found[request]
        assert (decision["verdict"], decision["reason"]) == (story.verdict, story.reason), (
            story.name
        )
    assert chains_intact(second)
    for partition, before in heads.items():
        after = second.outputs(topics.TOPIC_DECISIONS, partition)
        if before and len(after) > len(before):
            assert after[len(before)]["prev_hash"] == before[-1]["hash"]


@pytest.mark.parametrize("error", [InjectedFailure("boom"), TransientError("registry down")])
def test_an_aborted_batch_is_redone_with_the_same_decisions_and_ids(error: Exception) -> None:
    options = RuntimeOptions(batch_max_events=7)
    reference = gate_driver(options=options)
    for story in STORIES:
        Writer(reference).story(story, reference.clock())
    reference.run()

    driver = gate_driver(options=RuntimeOptions(batch_max_events=7))
    for story in STORIES:
        Writer(driver).story(story, driver.clock())
    driver.run(max_turns=2)
    committed = driver.outputs(topics.TOPIC_DECISIONS)
    changelog = [driver.changelog(p) for p in range(driver.partitions)]
    driver.fail(after=3, error=error)
    if isinstance(error, TransientError):
        driver.run()  # retried at once, from the committed state
    else:
        with pytest.raises(InjectedFailure):
            driver.run()
        assert driver.outputs(topics.TOPIC_DECISIONS) == committed, "nothing of the batch shows"
        assert [driver.changelog(p) for p in range(driver.partitions)] == changelog
        driver.run()
    assert driver.aborts == 1
    assert driver.outputs(topics.TOPIC_DECISIONS) == reference.outputs(topics.TOPIC_DECISIONS)
    assert [driver.changelog(p) for p in range(driver.partitions)] == [
        reference.changelog(p) for p in range(reference.partitions)
    ]
    assert chains_intact(driver)
