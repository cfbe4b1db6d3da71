"""Erasure and recall on the in-process driver when requests wait for the photo index.

CONTRACT §3: every request gets exactly one decision, a withdrawal recalls what left under the
withdrawn consent, and "a backlog replayed in event-time order still gets the decisions it would
have got live". A request whose photo is still pending in the photo index is parked; a withdrawal
or erasure of the same user that comes after it in event time must still see it.

These fail with the gate of 2f5d24e (the photo index): the withdrawal or erasure is applied while
the earlier requests are parked, so the withdrawal recalls nothing, and the account erasure
forgets the photo whose claims are in flight, after which its parked requests are never decided.
"""

from __future__ import annotations

from typing import Any

from streams import topics
from streams.runtime.options import RuntimeOptions
from streams.runtime.testing import sample_record
from streams.testing.topologies import gate_driver
from tests.unit.gate_stories import HOUR, Writer, decisions_by_subject
from tests.unit.gate_stories import share as share_request


def _grant(writer: Writer, owner: str, at: int, *, granted: bool = True) -> str:
    return writer.consent(
        owner, at, purpose="ML_TRAINING", granted=granted, categories=["IMAGE"] if granted else []
    )


def _erase(writer: Writer, owner: str, at: int) -> None:
    record: dict[str, Any] = sample_record(
        writer.codec,
        topics.TOPIC_ERASURE_REQUESTS,
        event_id=f"erase-{owner}",
        occurred_at=at,
        request_id=f"ticket-{owner}",
        user_id=owner,
        scope="ACCOUNT",
        photo_id=None,
        reason="USER_REQUEST",
    )
    writer.driver.feed(topics.TOPIC_ERASURE_REQUESTS, owner, record, timestamp_ms=at)


def test_a_withdrawal_after_a_parked_request_recalls_what_it_let_out() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("wendy", "wendy-p0", now - 5 * HOUR)
    _grant(writer, "wendy", now - 4 * HOUR)
    share = share_request(writer, "wendy", "wendy-p0", now - 3 * HOUR)
    _grant(writer, "wendy", now - HOUR, granted=False)
    driver.run()

    (decision,) = decisions_by_subject(driver)[share]
    assert decision["verdict"] == "ALLOW", "allowed: the consent held when it was requested"
    orders = driver.outputs(topics.TOPIC_RECALLS)
    assert [(o["user_id"], o["photo_ids"], o["cause"]) for o in orders] == [
        ("wendy", ["wendy-p0"], "CONSENT_WITHDRAWN")
    ], "the photo left under the withdrawn consent: it must be recalled"


def test_an_account_erasure_after_a_parked_request_leaves_no_request_undecided() -> None:
    driver = gate_driver()
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("anna", "anna-p0", now - 5 * HOUR)
    _grant(writer, "anna", now - 4 * HOUR)
    share = share_request(writer, "anna", "anna-p0", now - 3 * HOUR)
    _erase(writer, "anna", now - 2 * HOUR)
    driver.run()

    decided = decisions_by_subject(driver)
    assert share in decided, "every request gets exactly one decision, even after an erasure"
    (decision,) = decided[share]
    assert decision["verdict"] == "ALLOW"
    orders = driver.outputs(topics.TOPIC_RECALLS)
    assert [(o["user_id"], o["photo_ids"], o["cause"]) for o in orders] == [
        ("anna", ["anna-p0"], "ERASURE_REQUESTED")
    ]


def test_a_consent_that_arrives_after_a_waiting_request_but_happened_before_it_comes_first() -> (
    None
):
    # the photo index's answer is late: it crosses the broker (another process owns the index)
    driver = gate_driver(options=RuntimeOptions(local_loopback=False))
    writer = Writer(driver)
    now = driver.clock()
    driver.hold(topics.TOPIC_GATE_PHOTO_VERDICTS)
    writer.upload("carl", "carl-p0", now - 5 * HOUR)
    share = share_request(writer, "carl", "carl-p0", now - 3 * HOUR)
    driver.run()  # the share waits for the photo index
    _grant(writer, "carl", now - 4 * HOUR)  # fetched after the share, but happened before it
    driver.run()
    driver.release(topics.TOPIC_GATE_PHOTO_VERDICTS)
    driver.run()

    (decision,) = decisions_by_subject(driver)[share]
    assert (decision["verdict"], decision["reason"]) == ("ALLOW", "CONSENTED"), decision[
        "explanation"
    ]
