"""The headers that tie an approved share to the decision that let it out."""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.egress import (
    DECISION_HASH_HEADER,
    DECISION_ID_HEADER,
    decision_headers,
    egress_check,
    egress_problem,
)


def decision(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "decision_id": "d-1",
        "subject_event_id": "share-ev-1",
        "subject_kind": "SHARE",
        "photo_id": "p-1",
        "owner_id": "alice",
        "recipient_org": "acme-vision",
        "purpose": "PARTNER_SHARING",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        "prev_hash": GENESIS_HASH,
    }
    record.update(changes)
    record["hash"] = chain_hash(record, record["prev_hash"])
    return record


SHARE = {
    "event_id": "share-ev-1",
    "photo_id": "p-1",
    "owner_id": "alice",
    "recipient_org": "acme-vision",
    "purpose": "PARTNER_SHARING",
    "share_id": "s-1",
}


def test_headers_of_the_allowing_decision_pass() -> None:
    allowed = decision()
    headers = decision_headers(allowed)
    assert [name for name, _ in headers] == [DECISION_ID_HEADER, DECISION_HASH_HEADER]
    assert egress_check(headers, allowed)
    assert egress_check(headers, allowed, SHARE)
    assert egress_check(dict(headers), allowed)  # a mapping works too
    assert egress_check([(k, v.decode()) for k, v in headers], allowed)


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ([], "lacks exactly one"),
        ([(DECISION_ID_HEADER, b"d-1")], "lacks exactly one"),
        (
            [
                (DECISION_ID_HEADER, b"d-1"),
                (DECISION_ID_HEADER, b"d-2"),
                (DECISION_HASH_HEADER, b""),
            ],
            "lacks exactly one",
        ),
        ([(DECISION_ID_HEADER, b"\xff"), (DECISION_HASH_HEADER, b"x")], "lacks exactly one"),
        ([(DECISION_ID_HEADER, None), (DECISION_HASH_HEADER, b"x")], "lacks exactly one"),
        ([(DECISION_ID_HEADER, b"d-2"), (DECISION_HASH_HEADER, b"x")], "not the one given"),
        ([(DECISION_ID_HEADER, b"d-1"), (DECISION_HASH_HEADER, b"0" * 64)], "does not match"),
    ],
)
def test_wrong_or_missing_headers_fail(headers: list[tuple[str, Any]], needle: str) -> None:
    problem = egress_problem(headers, decision())
    assert problem is not None and needle in problem
    assert not egress_check(headers, decision())


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"verdict": "DENY", "reason": "NO_CONSENT"}, "not ALLOW"),
        ({"verdict": "HOLD"}, "not ALLOW"),
        ({"subject_kind": "TRAINING_READ"}, "not about a share"),
    ],
)
def test_only_an_allowed_share_may_leave(changes: dict[str, Any], needle: str) -> None:
    record = decision(**changes)
    problem = egress_problem(decision_headers(record), record)
    assert problem is not None and needle in problem


def test_an_edited_decision_does_not_pass() -> None:
    denied = decision(verdict="DENY", reason="NO_CONSENT")
    edited = {**denied, "verdict": "ALLOW", "reason": "CONSENTED"}  # hash kept
    problem = egress_problem(decision_headers(edited), edited)
    assert problem is not None and "altered" in problem


@pytest.mark.parametrize("field", ["event_id", "photo_id", "owner_id", "recipient_org", "purpose"])
def test_the_shipped_request_must_be_the_decided_one(field: str) -> None:
    allowed = decision()
    other = {**SHARE, field: "something-else"}
    problem = egress_problem(decision_headers(allowed), allowed, other)
    assert problem is not None and field in problem
