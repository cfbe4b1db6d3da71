"""Recall orders without floods and without loss (issue #19 alert floods, #18 oversized output).

- An ``ACCOUNT`` erasure of a user with many shares issues orders that fit in a record (split
  in parts), never an ``OUTPUT_TOO_LARGE`` dead letter in place of the order.
- Unconsented training reads issue one order per recipient, model and user, not one per read.
- ``RECALL_OVERDUE`` is one alert per recipient, cause and deadline, with the count and sample
  orders, once, also after a restart; later orders of the group update the same alert.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streams import topics
from streams.core.policy import parse_policy
from streams.core.recall import DAY_MS
from streams.runtime.runner import RuntimeOptions
from streams.testing.topologies import detector_driver, gate_driver
from tests.ack_support import EXAMPLE_POLICY, with_ack_keys
from tests.unit.gate_stories import HOUR, Writer
from tests.unit.gate_stories import share as share_request
from tests.unit.test_gate_recall_order import _erase, _grant

DETECTOR_POLICY = parse_policy(with_ack_keys(EXAMPLE_POLICY.read_text()))
VENDOR = "acme-vision"


def test_an_account_erasure_with_many_shares_is_split_into_orders_not_dead_lettered() -> None:
    driver = gate_driver(options=RuntimeOptions(batch_max_events=2_000))
    writer = Writer(driver)
    now = driver.clock()
    photos = [f"photo-{n:05d}-" + "x" * 700 for n in range(1_500)]  # one order: ~1.1 MB
    _grant(writer, "hoarder", now - 4 * HOUR)
    for n, photo in enumerate(photos):
        writer.upload("hoarder", photo, now - 5 * HOUR + n)
        share_request(writer, "hoarder", photo, now - 3 * HOUR + n)
    _erase(writer, "hoarder", now - HOUR)
    driver.run()
    allowed = [d for d in driver.outputs(topics.TOPIC_DECISIONS) if d["verdict"] == "ALLOW"]
    assert len(allowed) == len(photos)
    letters = driver.outputs(topics.TOPIC_DLQ)
    assert [d["error_kind"] for d in letters] == [], [d["error"] for d in letters]
    orders = driver.outputs(topics.TOPIC_RECALLS)
    assert len(orders) > 1, "one record cannot hold this order: it must come in parts"
    assert len({o["order_id"] for o in orders}) == len(orders)
    for order in orders:
        assert (order["recipient_org"], order["user_id"], order["cause"]) == (
            VENDOR,
            "hoarder",
            "ERASURE_REQUESTED",
        )
        assert len(driver.codec.encode(topics.TOPIC_RECALLS, order)) <= 900 * 1024
    assert sorted(p for o in orders for p in o["photo_ids"]) == sorted(photos)
    decided = sorted(d["decision_id"] for d in allowed)
    assert sorted(d for o in orders for d in o["decision_ids"]) == decided
    assert len({(o["issued_at"], o["due_at"]) for o in orders}) == 1


def test_unconsented_reads_issue_one_order_per_recipient_model_and_user() -> None:
    gate = gate_driver()
    writer = Writer(gate)
    now = gate.clock()

    def read(owner: str, photo: str, model: str, at: int) -> None:
        writer.event(
            topics.TOPIC_TRAINING_READS,
            owner,
            at,
            job_id=f"job-{model}",
            model_id=model,
            org=VENDOR,
            photo_id=photo,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
        )

    for user in ("ann", "bob"):
        for k in range(4):
            writer.upload(user, f"{user}-p{k}", now - 5 * HOUR + k)
    for epoch in range(2):  # the job reads its data set twice
        for user in ("ann", "bob"):
            for k in range(4):
                read(user, f"{user}-p{k}", "faces-v1", now - HOUR + 100 * epoch + k)
    read("ann", "ann-p0", "faces-v2", now - HOUR + 500)
    gate.run()
    denied = [d for d in gate.outputs(topics.TOPIC_DECISIONS) if d["verdict"] != "ALLOW"]
    assert len(denied) == 17
    orders = gate.outputs(topics.TOPIC_RECALLS)
    assert {o["cause"] for o in orders} == {"UNCONSENTED_TRAINING"}
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for order in orders:
        by_id[order["order_id"]].append(order)
    keys = {
        (o[0]["recipient_org"], tuple(o[0]["model_ids"]), o[0]["user_id"]) for o in by_id.values()
    }
    assert keys == {
        (VENDOR, ("faces-v1",), "ann"),
        (VENDOR, ("faces-v1",), "bob"),
        (VENDOR, ("faces-v2",), "ann"),
    }
    assert len(by_id) == 3, "one order per recipient, model and user, not one per read"
    assert len(orders) == 9, "one record per photo first read, none for the second epoch"

    detector = detector_driver(DETECTOR_POLICY)
    for order in orders:
        detector.feed(topics.TOPIC_RECALLS, order["recipient_org"], order)
    detector.run()
    tracked = {
        o.order.user_id + "/" + o.order.model_ids[0]: sorted(o.order.photo_ids)
        for state in detector.topology._recalls.values()
        for o in state.tracker.orders.values()
    }
    assert tracked == {
        "ann/faces-v1": [f"ann-p{k}" for k in range(4)],
        "bob/faces-v1": [f"bob-p{k}" for k in range(4)],
        "ann/faces-v2": ["ann-p0"],
    }


def _order(n: int, issued_at: int, cause: str = "ERASURE_REQUESTED") -> dict[str, Any]:
    return {
        "order_id": f"order-{cause}-{n:03d}",
        "issued_at": issued_at,
        "recipient_org": VENDOR,
        "user_id": f"user-{n}",
        "photo_ids": [f"photo-{n}"],
        "model_ids": ["faces-v1"],
        "cause": cause,
        "decision_ids": [f"decision-{n}"],
        "due_at": issued_at + 14 * DAY_MS,
    }


def test_overdue_orders_raise_one_alert_per_recipient_cause_and_deadline() -> None:
    driver = detector_driver(DETECTOR_POLICY)
    start = driver.clock() - driver.clock() % DAY_MS + DAY_MS + HOUR  # due times in one day
    driver.clock.advance(start - driver.clock())
    for n in range(30):
        driver.feed(topics.TOPIC_RECALLS, VENDOR, _order(n, start + n * 1000))
    driver.feed(topics.TOPIC_RECALLS, VENDOR, _order(99, start, cause="UNCONSENTED_TRAINING"))
    driver.run()
    driver.advance(14 * DAY_MS + 60_000)
    driver.advance(1_000)
    alerts = [a for a in driver.outputs(topics.TOPIC_ALERTS) if a["kind"] == "RECALL_OVERDUE"]
    assert len(alerts) == 2, [a["summary"] for a in alerts]
    erasure = next(a for a in alerts if "ERASURE_REQUESTED" in a["summary"])
    assert erasure["observed"] == 30 and erasure["subject"] == VENDOR
    assert len(erasure["sample_event_ids"]) == 10 and "30 ERASURE_REQUESTED" in erasure["summary"]
    assert erasure["window_start"] == start + 14 * DAY_MS
    assert erasure["window_end"] == start + 29_000 + 14 * DAY_MS

    restarted = detector_driver(DETECTOR_POLICY, restore_from=driver)
    restarted.advance(60_000)
    again = [a for a in restarted.outputs(topics.TOPIC_ALERTS) if a["kind"] == "RECALL_OVERDUE"]
    assert len(again) == 2, "a restart raises nothing again"

    late = _order(31, start + 40_000)  # issued later, same deadline day, goes overdue later
    restarted.feed(topics.TOPIC_RECALLS, VENDOR, late)
    restarted.run()
    restarted.advance(20_000)
    updates = [
        a
        for a in restarted.outputs(topics.TOPIC_ALERTS)
        if a["kind"] == "RECALL_OVERDUE" and a["alert_id"] == erasure["alert_id"]
    ]
    assert [a["observed"] for a in updates] == [30, 31], "an update of the same alert"
