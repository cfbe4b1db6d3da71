"""The demo's third act: erasures, recall orders naming the model, acks, overdue alerts."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from streams import topics
from streams.core.times import iso_day, iso_moment
from streams.demo.script import (
    ACKNOWLEDGED,
    BURST_PHOTOS,
    DEMO_RECALL_DAYS,
    ERASED_USERS,
    MODEL,
    VENDOR,
    vendor_ack_key,
)
from streams.demo.tail import Tail, decisions_for
from streams.sdk import ConsentinelProducer
from streams.settings import Settings


def recall_story(settings: Settings, recalls: Tail, alerts: Tail, tag: str) -> bool:
    """Erase some of the export's users; return True if the recall loop ran as the contract says.

    One order per erased user to acme-vision naming ``faceprint-2014`` and the user's photos;
    acme-vision acknowledges with acks signed by its key (the demo policy's ``ack_keys``);
    fully acknowledged orders close without an alert; the partly acknowledged one and the
    unacknowledged ones raise one ``RECALL_OVERDUE`` (per recipient, cause and deadline) naming
    them; the gate denies the erased photos (``ERASED``).
    """
    users = {f"burst{i:04d}-{tag}": i for i in range(ERASED_USERS)}
    photos = {
        user: sorted(f"burst{i:04d}-{k}-{tag}" for k in range(BURST_PHOTOS))
        for user, i in users.items()
    }
    decisions = Tail(settings, topics.TOPIC_DECISIONS)
    try:
        ack_key = vendor_ack_key(settings.state_dir.parent)
        with ConsentinelProducer(settings, source="consentinel-demo", ack_key=ack_key) as producer:
            print(
                f"\n== erasure: {len(users)} of the export's users ask for their accounts to be"
                " erased (ErasureRequested ACCOUNT, reason USER_REQUEST, through the SDK's"
                " request_erasure)"
            )
            for user in users:
                producer.request_erasure(user_id=user, scope="ACCOUNT", reason="USER_REQUEST")
            producer.flush()

            def ours(order: dict[str, Any]) -> bool:
                return order["cause"] == "ERASURE_REQUESTED" and order["user_id"] in users

            def complete(records: list[dict[str, Any]]) -> bool:
                return {o["user_id"] for o in records if ours(o)} >= set(users)

            seen = recalls.until(complete, timeout_s=60)
            orders = sorted((o for o in seen if ours(o)), key=lambda o: users[o["user_id"]])
            if len(orders) != len(users):
                print(f"!! {len(orders)} recall orders for {len(users)} erased users, not one each")
                return False
            wrong = [
                o["order_id"]
                for o in orders
                if o["recipient_org"] != VENDOR
                or o["model_ids"] != [MODEL]
                or o["photo_ids"] != photos[o["user_id"]]
                or len(o["decision_ids"]) < BURST_PHOTOS
            ]
            if wrong:
                print(f"!! recall orders that do not name {MODEL} and the user's photos: {wrong}")
                return False
            first = orders[0]
            others = Counter(
                o["cause"] for o in {o["order_id"]: o for o in seen}.values() if not ours(o)
            )
            print(
                f" * the gate issued {len(orders)} recall orders to {VENDOR}, one per erased user,"
                f" each naming the model {MODEL} and the user's {BURST_PHOTOS} photos it read,"
                " with the decisions under which they were read as evidence; e.g.\n"
                f"   order {first['order_id']}: user {first['user_id']},"
                f" photos {', '.join(first['photo_ids'])}, models {', '.join(first['model_ids'])},"
                f" {len(first['decision_ids'])} decisions, issued {iso_moment(first['issued_at'])},"
                f" due {iso_moment(first['due_at'])}"
            )
            if others:
                listed = ", ".join(f"{n} {cause}" for cause, n in sorted(others.items()))
                print(
                    f"   (this run's gate also issued {listed} orders for the training reads it"
                    f" did not allow; under the demo's {DEMO_RECALL_DAYS}-day deadline they go"
                    " overdue too: one order per recipient, model and user, and one alert per"
                    " recipient, cause and deadline)"
                )

            asked = _ask_for_erased(producer, tag, users)
            for d in decisions_for(decisions, asked):
                print(
                    " * the job reads an erased user's photo again\n"
                    f"   {d['verdict']:5} {d['reason']}: {d['explanation']}"
                )
                if (d["verdict"], d["reason"]) != ("DENY", "ERASED"):
                    print("!! the gate did not deny the erased photo")
                    return False

            full, partial, silent = (
                orders[:ACKNOWLEDGED],
                orders[ACKNOWLEDGED],
                orders[ACKNOWLEDGED + 1 :],
            )
            for order in full:
                producer.acknowledge_recall(
                    order_id=order["order_id"],
                    recipient_org=VENDOR,
                    deleted_photo_ids=order["photo_ids"],
                    purged_model_ids=order["model_ids"],
                    evidence=f"https://dpa.acme-vision.example/deletions/{order['order_id']}",
                )
            producer.acknowledge_recall(  # the photos are deleted; the model is not retrained yet
                order_id=partial["order_id"],
                recipient_org=VENDOR,
                deleted_photo_ids=partial["photo_ids"],
                evidence=f"https://dpa.acme-vision.example/deletions/{partial['order_id']}",
            )
            producer.flush()
        print(
            f" * {VENDOR} acknowledges {len(full)} orders in full (photos deleted, {MODEL}"
            f" purged) and 1 in part (photos deleted, model not purged); {len(silent)} get no"
            " answer (RecallAcknowledged through the SDK's acknowledge_recall, signed with"
            f" {VENDOR}'s Ed25519 key, whose public half the demo policy lists under ack_keys)"
        )
        return _overdue_checked(alerts, full, [partial, *silent], partial)
    finally:
        decisions.close()


def _ask_for_erased(
    producer: ConsentinelProducer, tag: str, users: dict[str, int]
) -> dict[str, str]:
    """Write one more read of the first erased user's photo; return event id -> owner."""
    owner = next(iter(users))
    event_id = producer.training_read(
        job_id=f"bulk-2014-{tag}",
        model_id=MODEL,
        org=VENDOR,
        photo_id=f"burst{users[owner]:04d}-0-{tag}",
        owner_id=owner,
        purpose="ML_TRAINING",
        categories=["IMAGE"],
    )
    producer.flush()
    return {event_id: owner}


def _overdue_checked(
    alerts: Tail,
    acknowledged: list[dict[str, Any]],
    unacknowledged: list[dict[str, Any]],
    partial: dict[str, Any],
) -> bool:
    """Wait for ``RECALL_OVERDUE``; True if one alert per deadline names exactly the open orders."""
    expected = {o["order_id"] for o in unacknowledged}
    deadlines = {iso_day(o["due_at"]) for o in unacknowledged}  # one, unless at midnight UTC
    due = max(o["due_at"] for o in unacknowledged)
    wait_s = max(due / 1000 - time.time(), 0)
    print(
        f"\n== waiting for the deadline ({wait_s:.0f} s) and the detector's RECALL_OVERDUE alerts"
    )
    ours = expected | {o["order_id"] for o in acknowledged}

    def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Return the latest version of each RECALL_OVERDUE alert naming one of our orders."""
        found: dict[str, dict[str, Any]] = {}
        for a in records:
            if a["kind"] == "RECALL_OVERDUE" and ours & set(a["sample_event_ids"]):
                found[a["alert_id"]] = a
        return found

    def named(records: list[dict[str, Any]]) -> set[str]:
        return {o for a in latest(records).values() for o in a["sample_event_ids"]}

    raised = alerts.until(lambda r: expected <= named(r), timeout_s=wait_s + 60)
    raised += alerts.until(lambda _: False, timeout_s=3)  # and nothing more for our orders
    found = latest(raised)
    missing = expected - named(raised)
    if missing:
        print(f"!! no RECALL_OVERDUE names {len(missing)} unacknowledged orders: {sorted(missing)}")
        return False
    closed = {o["order_id"] for o in acknowledged} & named(raised)
    if closed:
        print(f"!! RECALL_OVERDUE names acknowledged orders: {sorted(closed)}")
        return False
    if len(found) != len(deadlines):
        print(
            f"!! {len(found)} RECALL_OVERDUE alerts for {len(deadlines)} deadline(s), not one each"
        )
        return False
    if sum(a["observed"] for a in found.values()) != len(expected):
        print(f"!! the alerts count {[a['observed'] for a in found.values()]} overdue orders,"
              f" not {len(expected)}")  # fmt: skip
        return False
    example = next(a for a in found.values() if partial["order_id"] in a["sample_event_ids"])
    print(
        f" * the detector raised one RECALL_OVERDUE for {VENDOR}'s ERASURE_REQUESTED orders due"
        f" {', '.join(sorted(deadlines))}, naming the {len(expected)} orders not fully"
        f" acknowledged by their due_at (the partly acknowledged one and the {len(expected) - 1}"
        f" without an answer), none of the {len(acknowledged)} acknowledged ones:\n"
        f"   {example['severity']} {example['kind']} {example['subject']}: {example['summary']}"
    )
    print(
        "\n== the recall loop ran: erasures -> recall orders naming"
        f" {MODEL} -> signed acknowledgements -> RECALL_OVERDUE for the rest. The decisions that"
        " let the photos out stay in governance.decisions (`consentinel audit verify` still"
        " passes); `consentinel report recalls` lists the orders."
    )
    return True
