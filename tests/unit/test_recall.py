"""The pure recall core: ledger, erasure tombstones, recall orders, and closing the loop."""

from __future__ import annotations

import io
import uuid
from typing import Any

import fastavro
import pytest

from streams.core.consent import ConsentHistory, order_key
from streams.core.model import (
    AccessRequest,
    ConsentRecord,
    Decision,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
)
from streams.core.recall import (
    DAY_MS,
    ErasureRequest,
    ErasureScope,
    RecallCause,
    RecallLedger,
    RecallOrder,
    Transfer,
    due_at,
    erased_decision,
    order_id,
    orders_for_erasure,
    orders_for_violation,
    orders_for_withdrawal,
)
from streams.detect.core.overdue_groups import OverdueGroups
from streams.detect.core.recall_overdue import Ack, RecallTracker
from streams.errors import ConfigError, InvalidEventError, SerdeError, UnknownEnumSymbolError
from streams.serde.catalog import default_catalog

ML, PS = "ML_TRAINING", "PARTNER_SHARING"
NOW = 1_800_000_000_000


def days(org: str) -> float:
    return {"acme": 30.0, "lab": 0.5}.get(org, 7.0)


def share(
    d: str, photo: str, org: str, *, purpose: str = PS, consent: str | None = "c1", at: int = 100
) -> Transfer:
    return Transfer(d, photo, org, purpose, True, consent, at)


def read(
    d: str,
    photo: str,
    org: str,
    model: str,
    *,
    allowed: bool = True,
    consent: str | None = "c1",
    at: int = 100,
) -> Transfer:
    return Transfer(d, photo, org, ML, allowed, consent, at, f"job-{model}", model)


def withdrawal(
    event_id: str = "w1",
    *,
    purpose: Purpose = Purpose.PARTNER_SHARING,
    org: str | None = None,
    at: int = 500,
) -> ConsentRecord:
    return ConsentRecord(event_id, "u1", at, purpose, org, frozenset(), False, "n-1", None)


def erasure(scope: str = "PHOTO", photo: str | None = "p1", event_id: str = "x1") -> ErasureRequest:
    return ErasureRequest.from_record(
        {
            "event_id": event_id,
            "occurred_at": 900,
            "source": "app",
            "request_id": "t-1",
            "user_id": "u1",
            "scope": scope,
            "photo_id": photo,
            "reason": "USER_REQUEST",
        }
    )


@pytest.fixture
def ledger() -> RecallLedger:
    led = RecallLedger("u1")
    for t in [
        share("d1", "p1", "acme"),
        share("d2", "p2", "acme"),
        share("d3", "p1", "globex"),
        share("d4", "p3", "initech", consent=None),  # not consent-based
        share("d5", "p2", "globex", purpose="RESEARCH"),
        read("d6", "p1", "acme", "m-1"),
        read("d7", "p2", "acme", "m-2", allowed=False, consent=None),
        read("d8", "p9", "acme", "m-3"),
    ]:
        assert led.record(t)
    return led


def test_transfer_from_decision_keeps_reads_of_any_verdict_and_allowed_shares_only() -> None:
    base = dict(
        occurred_at_ms=7,
        photo_id="p1",
        owner_id="u1",
        purpose=Purpose.ML_TRAINING,
        categories=frozenset(),
    )
    shr = AccessRequest(
        event_id="e1", kind=SubjectKind.SHARE, actor="svc", recipient_org="acme", **base
    )  # type: ignore[arg-type]
    rd = AccessRequest(
        event_id="e2",
        kind=SubjectKind.TRAINING_READ,
        actor="j",
        recipient_org="acme",
        job_id="j",
        model_id="m",
        **base,
    )  # type: ignore[arg-type]
    deny = lambda r: Decision(Verdict.DENY, Reason.NO_CONSENT, "x.", None, "v", r)  # noqa: E731
    allow = Decision(Verdict.ALLOW, Reason.CONSENTED, "x.", "c1", "v", shr)
    assert Transfer.from_decision(deny(shr), "d") is None
    assert Transfer.from_decision(allow, "d") == Transfer("d", "p1", "acme", ML, True, "c1", 7)
    denied_read = Transfer.from_decision(deny(rd), "d2")
    assert denied_read is not None and not denied_read.allowed and denied_read.model_id == "m"


def test_record_is_idempotent_per_decision(ledger: RecallLedger) -> None:
    assert not ledger.record(share("d1", "p1", "acme"))
    assert len(ledger.transfers) == 8


def test_withdrawal_recalls_only_shares_under_the_withdrawn_consent(ledger: RecallLedger) -> None:
    orders = orders_for_withdrawal(ledger, withdrawal(), issued_at_ms=NOW, recall_days=days)
    assert [(o.recipient_org, o.photo_ids, o.decision_ids) for o in orders] == [
        ("acme", ("p1", "p2"), ("d1", "d2")),
        ("globex", ("p1",), ("d3",)),
    ]
    # acme's models that read p1/p2 (the unconsented read too): they must purge them.
    assert orders[0].model_ids == ("m-1", "m-2")
    assert orders[1].model_ids == ()
    assert all(o.cause is RecallCause.CONSENT_WITHDRAWN for o in orders)
    assert orders[0].due_at == NOW + 30 * DAY_MS
    assert orders[1].due_at == NOW + 7 * DAY_MS


def test_withdrawal_for_one_recipient_and_grant_and_other_purpose(ledger: RecallLedger) -> None:
    only_globex = orders_for_withdrawal(
        ledger, withdrawal(org="globex"), issued_at_ms=NOW, recall_days=days
    )
    assert [o.recipient_org for o in only_globex] == ["globex"]
    grant = ConsentRecord(
        "g", "u1", 500, Purpose.PARTNER_SHARING, None, frozenset(), True, None, None
    )
    assert orders_for_withdrawal(ledger, grant, issued_at_ms=NOW, recall_days=days) == []
    adv = withdrawal(purpose=Purpose.ADVERTISING)
    assert orders_for_withdrawal(ledger, adv, issued_at_ms=NOW, recall_days=days) == []


def test_withdrawal_skips_shares_under_a_later_regrant() -> None:
    led = RecallLedger("u1")
    led.record(share("d1", "p1", "acme", consent="c-old", at=100))
    led.record(share("d2", "p2", "acme", consent="c-new", at=700))
    history = ConsentHistory("u1")
    history.add(
        ConsentRecord(
            "c-old", "u1", 50, Purpose.PARTNER_SHARING, None, frozenset(), True, None, None
        )
    )
    history.add(
        ConsentRecord(
            "c-new", "u1", 600, Purpose.PARTNER_SHARING, None, frozenset(), True, None, None
        )
    )

    def consent_time(event_id: str) -> tuple[int, bool, str] | None:
        found = history.get(event_id)
        return None if found is None else order_key(found)

    orders = orders_for_withdrawal(
        led, withdrawal(at=500), issued_at_ms=NOW, recall_days=days, consent_time=consent_time
    )
    assert [o.decision_ids for o in orders] == [("d1",)]
    # Without the history, both are recalled (recall rather than miss).
    assert orders_for_withdrawal(led, withdrawal(at=500), issued_at_ms=NOW, recall_days=days)[
        0
    ].decision_ids == ("d1", "d2")


def test_late_withdrawal_is_a_retroactive_violation_for_recipients_served_after_it() -> None:
    led = RecallLedger("u1")
    led.record(share("d1", "p1", "acme", at=100))
    led.record(share("d2", "p2", "globex", at=800))
    orders = orders_for_withdrawal(led, withdrawal(at=500), issued_at_ms=NOW, recall_days=days)
    assert {o.recipient_org: o.cause for o in orders} == {
        "acme": RecallCause.CONSENT_WITHDRAWN,
        "globex": RecallCause.RETROACTIVE_VIOLATION,
    }


def test_photo_erasure_recalls_from_every_recipient_of_the_photo(ledger: RecallLedger) -> None:
    orders = orders_for_erasure(ledger, erasure(), issued_at_ms=NOW, recall_days=days)
    assert [(o.recipient_org, o.photo_ids, o.model_ids, o.decision_ids) for o in orders] == [
        ("acme", ("p1",), ("m-1",), ("d1", "d6")),
        ("globex", ("p1",), (), ("d3",)),
    ]
    assert all(o.cause is RecallCause.ERASURE_REQUESTED and o.user_id == "u1" for o in orders)
    # Deterministic ids: a replay issues the same orders, another cause or trigger does not.
    again = orders_for_erasure(ledger, erasure(), issued_at_ms=NOW, recall_days=days)
    assert [o.order_id for o in again] == [o.order_id for o in orders]
    assert orders[0].order_id == order_id(RecallCause.ERASURE_REQUESTED, "x1", "acme")
    assert orders[0].order_id != order_id(RecallCause.ERASURE_REQUESTED, "x2", "acme")
    assert len({o.order_id for o in orders}) == 2
    assert (
        orders_for_erasure(
            ledger, erasure(photo="never-shared"), issued_at_ms=NOW, recall_days=days
        )
        == []
    )


def test_account_erasure_recalls_everything_then_forgets_the_user(ledger: RecallLedger) -> None:
    orders = orders_for_erasure(
        ledger, erasure("ACCOUNT", None), issued_at_ms=NOW, recall_days=days
    )
    assert {o.recipient_org: o.photo_ids for o in orders} == {
        "acme": ("p1", "p2", "p9"),
        "globex": ("p1", "p2"),
        "initech": ("p3",),
    }
    assert {o.recipient_org: o.model_ids for o in orders}["acme"] == ("m-1", "m-2", "m-3")
    assert ledger.forget(erasure("ACCOUNT", None)) == 8
    assert ledger.transfers == [] and ledger.is_erased() and ledger.is_erased("anything")
    assert not ledger.record(share("d99", "p1", "acme"))
    restored = RecallLedger.from_bytes(ledger.to_bytes())
    assert restored.is_erased() and restored.transfers == []


def test_photo_erasure_forgets_the_photo_and_tombstones_it(ledger: RecallLedger) -> None:
    assert ledger.forget(erasure()) == 3
    assert all(t.photo_id != "p1" for t in ledger.transfers)
    assert ledger.is_erased("p1") and not ledger.is_erased("p2") and not ledger.is_erased()
    raw = ledger.to_bytes()
    assert b"p1" not in raw  # only an 8-byte digest of the erased id is kept
    restored = RecallLedger.from_bytes(raw)
    assert restored.is_erased("p1") and not restored.is_erased("p2")
    assert restored.transfers == ledger.transfers


def test_erased_decision_is_deny_erased() -> None:
    request = AccessRequest(
        "e", SubjectKind.SHARE, 1, "p1", "u1", "svc", "acme", Purpose.PARTNER_SHARING, frozenset()
    )
    decision = erased_decision(request, "v1", account=False)
    assert (decision.verdict, decision.reason, decision.allowed) == (
        Verdict.DENY,
        Reason.ERASED,
        False,
    )
    assert "photo p1 was erased" in decision.explanation and decision.explanation.endswith(".")
    assert "user u1's account" in erased_decision(request, "v1", account=True).explanation


def test_violation_orders_name_the_photos_and_models_concerned(ledger: RecallLedger) -> None:
    orders = orders_for_violation(
        ledger,
        RecallCause.UNCONSENTED_TRAINING,
        ["d7"],
        trigger_id="d7",
        issued_at_ms=NOW,
        recall_days=days,
    )
    assert [(o.recipient_org, o.photo_ids, o.model_ids, o.cause) for o in orders] == [
        ("acme", ("p2",), ("m-2",), RecallCause.UNCONSENTED_TRAINING)
    ]


def test_ledger_round_trips_and_stays_small() -> None:
    led = RecallLedger("user-" + "7" * 30)
    models = [str(uuid.uuid4()) for _ in range(3)]
    consents = [str(uuid.uuid4()) for _ in range(2)]
    for i in range(1000):
        photo = str(uuid.uuid4())
        led.record(
            Transfer(
                str(uuid.uuid4()),
                photo,
                "acme-vision",
                ML,
                True,
                consents[i % 2],
                NOW + i,
                "job-1",
                models[i % 3],
            )
        )
    raw = led.to_bytes()
    assert RecallLedger.from_bytes(raw).transfers == led.transfers
    per_entry = len(raw) / 1000
    # Two UUIDs (decision, photo) are 72 bytes of the entry; the rest is interned.
    assert per_entry < 110, per_entry


def test_unreadable_ledger_is_a_serde_error() -> None:
    with pytest.raises(SerdeError, match="recall ledger"):
        RecallLedger.from_bytes(b'{"v":99}')
    with pytest.raises(SerdeError):
        RecallLedger.from_bytes(b"not json")


def test_due_at_allows_fractions_and_refuses_nonsense() -> None:
    assert due_at(NOW, 0.5) == NOW + DAY_MS // 2
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="recall_within_days"):
            due_at(NOW, bad)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"scope": "EVERYTHING"}, UnknownEnumSymbolError),
        ({"scope": "PHOTO", "photo_id": None}, InvalidEventError),
        ({"scope": "ACCOUNT", "photo_id": "p1"}, InvalidEventError),
        ({"user_id": ""}, InvalidEventError),
        ({"occurred_at": "yesterday"}, InvalidEventError),
    ],
)
def test_bad_erasure_requests_are_refused(changes: dict[str, Any], error: type[Exception]) -> None:
    record = {
        "event_id": "x",
        "occurred_at": 1,
        "request_id": "r",
        "user_id": "u1",
        "scope": "PHOTO",
        "photo_id": "p1",
        "reason": "USER_REQUEST",
        **changes,
    }
    with pytest.raises(error):
        ErasureRequest.from_record(record)
    assert erasure().scope is ErasureScope.PHOTO


def _avro_round_trip(name: str, record: dict[str, Any]) -> dict[str, Any]:
    schema = default_catalog().record(name)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, record, strict=True)
    buffer.seek(0)
    result: dict[str, Any] = fastavro.schemaless_reader(buffer, schema.parsed_plain)
    return result


def test_order_record_matches_the_schema(ledger: RecallLedger) -> None:
    order = orders_for_erasure(ledger, erasure(), issued_at_ms=NOW, recall_days=days)[0]
    decoded = _avro_round_trip("RecallOrder", order.to_record())
    assert decoded == order.to_record()
    assert RecallOrder.from_record(decoded) == order


# --------------------------------------------------------------------------- closing the loop


def _order(due: int = NOW + DAY_MS) -> RecallOrder:
    return RecallOrder(
        "o1",
        NOW,
        "acme",
        "u1",
        ("p1", "p2"),
        ("m-1",),
        RecallCause.ERASURE_REQUESTED,
        ("d1", "d6"),
        due,
    )


def _ack(photos: tuple[str, ...] = (), models: tuple[str, ...] = (), org: str = "acme") -> Ack:
    return Ack("o1", org, NOW + 10, photos, models, "https://acme.example/proof/1")


def test_partial_ack_says_what_is_missing_and_full_ack_closes() -> None:
    tracker = RecallTracker()
    tracker.add_order(_order())
    partial = tracker.apply_ack(_ack(("p1", "zz")))
    assert (partial.closed, partial.missing_photos, partial.missing_models) == (
        False,
        ("p2",),
        ("m-1",),
    )
    assert partial.unexpected_photos == ("zz",)
    done = tracker.apply_ack(_ack(("p2",), ("m-1",)))
    assert done.closed and done.missing_photos == () and tracker.orders["o1"].closed


def test_overdue_is_reported_once_and_never_for_closed_orders() -> None:
    tracker = RecallTracker()
    tracker.add_order(_order())
    assert tracker.overdue(NOW + DAY_MS) == []  # due, not past due
    first = tracker.overdue(NOW + DAY_MS + 1)
    assert [o.order.order_id for o in first] == ["o1"]
    assert tracker.overdue(NOW + 5 * DAY_MS) == []
    restored = RecallTracker()
    restored.load_entry("o1", tracker.entry_bytes("o1") or b"")
    assert restored.overdue(NOW + 5 * DAY_MS) == []  # the mark survives a restore
    closed = RecallTracker()
    closed.add_order(_order())
    closed.apply_ack(_ack(("p1", "p2"), ("m-1",)))
    assert closed.overdue(NOW + 5 * DAY_MS) == []


def test_ack_before_its_order_is_held_and_applied() -> None:
    tracker = RecallTracker()
    early = tracker.apply_ack(_ack(("p1", "p2"), ("m-1",)))
    assert not early.order_known
    restored = RecallTracker()
    restored.load_entry("o1", tracker.entry_bytes("o1") or b"")
    assert restored.add_order(_order()).closed
    assert restored.pending == {}


def test_ack_from_another_recipient_is_refused() -> None:
    tracker = RecallTracker()
    tracker.add_order(_order())
    with pytest.raises(InvalidEventError, match="issued to 'acme'"):
        tracker.apply_ack(_ack(("p1",), org="globex"))
    assert tracker.orders["o1"].missing_photos == {"p1", "p2"}


def test_duplicate_order_does_not_reopen() -> None:
    tracker = RecallTracker()
    tracker.add_order(_order())
    tracker.apply_ack(_ack(("p1", "p2"), ("m-1",)))
    assert tracker.add_order(_order()).closed


def test_overdue_alert_is_a_valid_deterministic_record() -> None:
    tracker = RecallTracker()
    tracker.add_order(_order())
    tracker.apply_ack(_ack(("p1",)))
    groups = OverdueGroups()
    groups.add(tracker.overdue(NOW + 2 * DAY_MS))
    [(_, alert)] = groups.publish(NOW + 2 * DAY_MS)
    record = _avro_round_trip("Alert", alert.to_record())
    assert record["kind"] == "RECALL_OVERDUE" and record["subject"] == "acme"
    assert record["observed"] == 1  # one overdue order
    assert record["window_start"] == NOW + DAY_MS and record["window_end"] == NOW + DAY_MS
    assert record["sample_event_ids"] == ["o1"]
    assert (
        "1 of them partly acknowledged" in record["summary"]
        and "1 photo(s) and 1 model purge(s)" in record["summary"]
    )
    again = OverdueGroups()
    again.add(tracker.orders.values())
    assert again.publish(NOW + 3 * DAY_MS)[0][1].alert_id == alert.alert_id
