"""Signed recall acknowledgements on the real detector topology (driver): §5, issue #18 item 7.

Every attack of the review, each against acme-vision's order: an unsigned ack, one signed by
another recipient's key, one keyed by another recipient, one naming an order issued to another
recipient (read after and before its order), and acks for orders that never come. None closes
the order, each is dead-lettered ``UNVERIFIED_ACK``, the order is never dead-lettered, and
``RECALL_OVERDUE`` still fires after a restart. A valid signed ack (before or after its order)
closes it.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams import topics
from streams.core.ack_signing import sign_ack
from streams.core.policy import parse_policy
from streams.core.recall import DAY_MS
from streams.detect.topology import DetectorTopology
from streams.runtime.testing import TopologyDriver
from streams.testing.topologies import detector_driver
from tests.ack_support import ACK_KEY, EXAMPLE_POLICY, OTHER_KEY, fixed_key, with_ack_keys

POLICY = parse_policy(with_ack_keys(EXAMPLE_POLICY.read_text()))
"""The example policy with ack keys for acme-vision (deadline 14 days) and lovebird-partners."""
VENDOR, OTHER = "acme-vision", "lovebird-partners"
RECALL_MS = 14 * DAY_MS


def order(driver: TopologyDriver[DetectorTopology], order_id: str = "o-1") -> dict[str, Any]:
    """Write acme-vision's order (one photo, one model), issued now, due in 14 days."""
    now = driver.clock()
    record = {
        "order_id": order_id,
        "issued_at": now,
        "recipient_org": VENDOR,
        "user_id": "u-1",
        "photo_ids": ["p-1"],
        "model_ids": ["m-1"],
        "cause": "ERASURE_REQUESTED",
        "decision_ids": ["d-1"],
        "due_at": now + RECALL_MS,
    }
    driver.feed(topics.TOPIC_RECALLS, VENDOR, record)
    return record


def ack(
    driver: TopologyDriver[DetectorTopology],
    *,
    order_id: str = "o-1",
    org: str = VENDOR,
    key: str | None = None,
    signer: Ed25519PrivateKey | None = ACK_KEY,
) -> None:
    """Write a full acknowledgement of ``order_id`` naming ``org``, keyed ``key`` (default org)."""
    record: dict[str, Any] = {
        "order_id": order_id,
        "recipient_org": org,
        "acknowledged_at": driver.clock(),
        "deleted_photo_ids": ["p-1"],
        "purged_model_ids": ["m-1"],
        "evidence": "https://dpa.example/proof",
        "key_id": "",
        "signature": b"",
    }
    if signer is not None:
        record = sign_ack(record, signer)
    driver.feed(topics.TOPIC_RECALL_ACKS, key or org, record)


def unverified(driver: TopologyDriver[Any]) -> list[dict[str, Any]]:
    return [d for d in driver.outputs(topics.TOPIC_DLQ) if d["error_kind"] == "UNVERIFIED_ACK"]


def overdue(driver: TopologyDriver[Any]) -> list[dict[str, Any]]:
    return [a for a in driver.outputs(topics.TOPIC_ALERTS) if a["kind"] == "RECALL_OVERDUE"]


def past_due(driver: TopologyDriver[DetectorTopology]) -> None:
    driver.advance(RECALL_MS + 2_000)
    driver.advance(2_000)


def test_a_valid_signed_ack_closes_the_order() -> None:
    driver = detector_driver(POLICY)
    order(driver)
    driver.run()
    ack(driver)
    driver.run()
    past_due(driver)
    assert unverified(driver) == [] and overdue(driver) == []


def test_a_signed_ack_read_before_its_order_closes_it_on_arrival() -> None:
    driver = detector_driver(POLICY)
    ack(driver)
    driver.run()
    order(driver)
    driver.run()
    past_due(driver)
    assert unverified(driver) == [] and overdue(driver) == []


def test_acks_that_do_not_count_are_dead_lettered_and_close_nothing() -> None:
    driver = detector_driver(POLICY, partitions=1)  # every recipient's acks meet the order
    order(driver)
    driver.run()
    ack(driver, signer=None)  # unsigned: any principal could write it
    ack(driver, signer=OTHER_KEY)  # signed, but by lovebird-partners' key
    ack(driver, signer=fixed_key(42))  # a key the policy does not list at all
    ack(driver, key=OTHER)  # acme-vision's valid ack, keyed by another recipient
    ack(driver, org=OTHER, signer=OTHER_KEY)  # lovebird's valid ack, naming acme's order
    driver.run()
    letters = unverified(driver)
    assert len(letters) == 5, letters
    assert all(d["source_topic"] == topics.TOPIC_RECALL_ACKS for d in letters)
    errors = " | ".join(d["error"] for d in letters)
    for fragment in ("not signed", "not one of the ack_keys", "keyed", "issued to 'acme-vision'"):
        assert fragment in errors, errors
    past_due(driver)
    [alert] = overdue(driver)
    assert (alert["subject"], alert["observed"], alert["sample_event_ids"]) == (VENDOR, 1, ["o-1"])


def test_a_pre_ack_naming_another_recipient_never_costs_the_order() -> None:
    """The order is tracked (not dead-lettered) and still goes overdue after a restart."""
    driver = detector_driver(POLICY, partitions=1)  # lovebird's acks meet acme's orders
    ack(driver, org=OTHER, signer=OTHER_KEY)  # predicted order id, acked ahead by lovebird
    ack(driver, signer=None)  # and an unsigned pre-ack
    driver.run()
    assert len(unverified(driver)) == 1  # the unsigned one, at once
    order(driver)
    driver.run()
    letters = unverified(driver)
    assert len(letters) == 2 and "issued to 'acme-vision'" in letters[1]["error"]
    assert [
        d for d in driver.outputs(topics.TOPIC_DLQ) if d["source_topic"] != "governance.recall.acks"
    ] == []
    restarted = detector_driver(POLICY, restore_from=driver)
    past_due(restarted)
    [alert] = overdue(restarted)
    assert alert["sample_event_ids"] == ["o-1"]


def test_an_ack_for_an_order_that_never_comes_expires() -> None:
    driver = detector_driver(POLICY)
    ack(driver, order_id="never-issued")
    driver.run()
    assert unverified(driver) == []  # held: its order may still come
    driver.advance(RECALL_MS - 10_000)
    assert unverified(driver) == []
    driver.advance(20_000)
    [letter] = unverified(driver)
    assert "never-issued" in letter["error"] and "within its recall deadline" in letter["error"]
    stored = [
        (key, value)
        for partition in range(driver.partitions)
        for key, value in driver.changelog(partition)
        if key == b"o:never-issued"
    ]
    assert stored[-1][1] is None  # the held ack is gone from the state (a tombstone)
    order(driver, order_id="never-issued")  # too late: the ack no longer closes it
    driver.run()
    past_due(driver)
    assert [a["sample_event_ids"] for a in overdue(driver)] == [["never-issued"]]
