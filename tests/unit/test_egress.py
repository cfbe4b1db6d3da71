"""The egress check: an approved record leaves only under its own ALLOW decision, once.

Contract section 6, "Egress check"; issue #18 item 8. Each attack below is refused with a reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.egress import (
    DECISION_HASH_HEADER,
    DECISION_ID_HEADER,
    MemoryLedger,
    check_approved,
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
        "actor": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "PARTNER_SHARING",
        "categories": ["IMAGE"],
        "share_id": "s-1",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        "prev_hash": GENESIS_HASH,
    }
    record.update(changes)
    record.pop("hash", None)
    record["hash"] = chain_hash(record, record["prev_hash"])
    return record


SHARE: dict[str, Any] = {
    "event_id": "share-ev-1",
    "share_id": "s-1",
    "photo_id": "p-1",
    "owner_id": "alice",
    "requester": "share-svc",
    "recipient_org": "acme-vision",
    "purpose": "PARTNER_SHARING",
    "categories": ["IMAGE"],
}


def problem_of(headers: Any, record: Any, share: Any) -> str | None:
    return egress_problem(headers, record, share, ledger=MemoryLedger())


def test_the_allowed_share_under_its_own_decision_leaves() -> None:
    allowed = decision()
    headers = decision_headers(allowed)
    assert [name for name, _ in headers] == [DECISION_ID_HEADER, DECISION_HASH_HEADER]
    assert egress_check(headers, allowed, SHARE, ledger=MemoryLedger())
    assert egress_check(dict(headers), allowed, SHARE, ledger=MemoryLedger())  # a mapping too
    as_text = [(k, v.decode()) for k, v in headers]
    assert egress_check(as_text, allowed, SHARE, ledger=MemoryLedger())


def test_a_record_without_its_share_payload_is_refused() -> None:
    allowed = decision()
    problem = problem_of(decision_headers(allowed), allowed, None)
    assert problem is not None and "no share payload" in problem


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ([], "lacks exactly one"),
        (None, "lacks exactly one"),
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
def test_wrong_or_missing_headers_fail(headers: Any, needle: str) -> None:
    problem = problem_of(headers, decision(), SHARE)
    assert problem is not None and needle in problem
    assert not egress_check(headers, decision(), SHARE, ledger=MemoryLedger())


def test_headers_naming_no_known_decision_fail() -> None:
    problem = problem_of(decision_headers(decision()), None, SHARE)
    assert problem is not None and "never wrote" in problem


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
    problem = problem_of(decision_headers(record), record, SHARE)
    assert problem is not None and needle in problem


def test_an_edited_decision_does_not_pass() -> None:
    denied = decision(verdict="DENY", reason="NO_CONSENT")
    edited = {**denied, "verdict": "ALLOW", "reason": "CONSENTED"}  # hash kept
    problem = problem_of(decision_headers(edited), edited, SHARE)
    assert problem is not None and "altered" in problem


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("share_id", "s-2"),
        ("event_id", "share-ev-2"),
        ("photo_id", "p-2"),
        ("owner_id", "bob"),
        ("recipient_org", "other-vendor"),
        ("purpose", "ML_TRAINING"),
        ("requester", "someone-else"),
        ("categories", ["IMAGE", "FACE_BIOMETRIC"]),
        ("categories", ["DEMOGRAPHIC"]),
        ("categories", None),
    ],
)
def test_the_shipped_request_must_be_the_decided_one(field: str, value: Any) -> None:
    allowed = decision()
    problem = problem_of(decision_headers(allowed), allowed, {**SHARE, field: value})
    assert problem is not None and field in problem and "not the request" in problem


@pytest.mark.parametrize("field", ["share_id", "requester", "owner_id"])
def test_a_share_missing_a_matched_field_is_refused(field: str) -> None:
    allowed = decision()
    share = {k: v for k, v in SHARE.items() if k != field}
    assert problem_of(decision_headers(allowed), allowed, share) is not None


def test_a_decision_without_a_share_id_lets_nothing_out() -> None:
    old = decision(share_id=None)  # written before decisions carried the share id
    problem = problem_of(decision_headers(old), old, SHARE)
    assert problem is not None and "share_id" in problem


def test_categories_compare_as_the_gate_judges_them() -> None:
    allowed = decision(categories=["IMAGE", "PROFILE_TEXT"])
    reordered = {**SHARE, "categories": ["PROFILE_TEXT", "IMAGE", "PROFILE_TEXT"]}
    assert problem_of(decision_headers(allowed), allowed, reordered) is None
    empty = decision(categories=[])  # a photo is always IMAGE, on both sides
    assert problem_of(decision_headers(empty), empty, {**SHARE, "categories": []}) is None
    assert problem_of(decision_headers(empty), empty, {**SHARE, "categories": ["IMAGE"]}) is None


def test_recipient_ids_compare_as_the_gate_compares_them() -> None:
    allowed = decision()
    spelled = {**SHARE, "recipient_org": " Acme-Vision "}
    assert problem_of(decision_headers(allowed), allowed, spelled) is None


def test_a_replayed_record_is_refused_and_the_same_record_is_not_shipped_twice() -> None:
    ledger = MemoryLedger()
    allowed = decision()
    headers = decision_headers(allowed)
    first = check_approved(headers, allowed, SHARE, ledger=ledger, record_at="approved[0]@5")
    assert first.ship and first.problem is None
    again = check_approved(headers, allowed, SHARE, ledger=ledger, record_at="approved[0]@5")
    assert not again.ship and again.already_delivered
    replay = check_approved(headers, allowed, SHARE, ledger=ledger, record_at="approved[1]@9")
    assert not replay.ship and not replay.already_delivered
    assert replay.problem is not None and "replay" in replay.problem
    assert "approved[0]@5" in replay.problem  # where it left first
    assert not egress_check(headers, allowed, SHARE, ledger=ledger)  # no position: a replay too


def test_a_refused_forgery_does_not_use_up_the_decision() -> None:
    ledger = MemoryLedger()
    allowed = decision()
    headers = decision_headers(allowed)
    forged = {**SHARE, "photo_id": "p-someone-elses"}
    assert not egress_check(headers, allowed, forged, ledger=ledger, record_at="approved[0]@1")
    assert egress_check(headers, allowed, SHARE, ledger=ledger, record_at="approved[0]@2")


# -- the command line's ledger file ------------------------------------------------------------


def test_the_ledger_file_remembers_across_processes_and_restarts(tmp_path: Any) -> None:
    from streams.egress.ledger import SqliteLedger

    path = tmp_path / "egress" / "ledger.sqlite"
    one, two = SqliteLedger(path), SqliteLedger(path)  # two egress processes on one file
    assert one.claim("d-1", "approved[0]@5") is None
    assert two.claim("d-1", "approved[1]@9") == "approved[0]@5"  # the second loses
    one.close()
    two.close()
    again = SqliteLedger(path)  # a restart
    assert again.claim("d-1", "approved[0]@5") == "approved[0]@5"
    assert again.claim("d-2", "approved[0]@6") is None and again.delivered() == 2
    allowed = decision(decision_id="d-3")
    headers = decision_headers(allowed)
    first = check_approved(headers, allowed, SHARE, ledger=again, record_at="approved[2]@1")
    replay = check_approved(headers, allowed, SHARE, ledger=again, record_at="approved[3]@1")
    assert first.ship and not replay.ship and "replay" in (replay.problem or "")
    again.close()


def test_an_unusable_ledger_file_is_a_clear_error(tmp_path: Any) -> None:
    from streams.egress.ledger import SqliteLedger
    from streams.errors import ConfigError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot open the egress ledger"):
        SqliteLedger(blocker / "ledger.sqlite")


def test_the_command_needs_its_ledger_file(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import build_parser

    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["egress", "check"])
    assert refused.value.code == 2 and "--ledger" in capsys.readouterr().err
    args = build_parser().parse_args(["egress", "check", "--ledger", "l.sqlite"])
    assert str(args.ledger) == "l.sqlite" and args.out is None
