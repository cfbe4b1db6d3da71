"""Per-user consent history, allowed-access log and their serialization."""

from __future__ import annotations

import pytest

from streams.core.consent import (
    MAX_ALLOWED_ACCESSES,
    AllowedAccess,
    AllowedAccessLog,
    ConsentHistory,
    UserState,
)
from streams.core.model import ConsentRecord, DataCategory, Purpose
from streams.errors import SerdeError

ML, RES = Purpose.ML_TRAINING, Purpose.RESEARCH


def consent(
    event_id: str,
    at: int,
    *,
    granted: bool = True,
    purpose: Purpose = ML,
    org: str | None = None,
    categories: frozenset[DataCategory] = frozenset(),
    expires: int | None = None,
    notice: str | None = "n-1",
) -> ConsentRecord:
    return ConsentRecord(event_id, "u1", at, purpose, org, categories, granted, notice, expires)


def access(
    subject: str,
    at: int,
    *,
    purpose: Purpose = ML,
    org: str = "acme",
    consent_id: str | None = "c1",
) -> AllowedAccess:
    return AllowedAccess(f"d-{subject}", subject, at, purpose, org, consent_id)


def test_latest_matching_as_of_time() -> None:
    h = ConsentHistory("u1")
    for r in [
        consent("c3", 300, granted=False),
        consent("c1", 100),
        consent("c2", 200, org="acme"),
        consent("r1", 150, purpose=RES),
    ]:
        assert h.add(r)
    assert h.latest_matching(ML, "acme", 99) is None
    assert h.latest_matching(ML, "acme", 100).event_id == "c1"  # type: ignore[union-attr]
    assert h.latest_matching(ML, "acme", 250).event_id == "c2"  # type: ignore[union-attr]
    assert h.latest_matching(ML, "other", 250).event_id == "c1"  # type: ignore[union-attr]
    assert h.latest_matching(ML, "other", 300).event_id == "c3"  # type: ignore[union-attr]
    assert h.latest_matching(RES, "acme", 1000).event_id == "r1"  # type: ignore[union-attr]
    assert h.latest_matching(Purpose.ADVERTISING, "acme", 1000) is None
    assert h.get("c2") is not None and h.get("zz") is None
    assert len(h) == 4


def test_history_is_idempotent_and_per_user() -> None:
    h = ConsentHistory("u1")
    assert h.add(consent("c1", 100))
    assert not h.add(consent("c1", 500, granted=False))  # same id, first one wins
    assert h.latest_matching(ML, "acme", 1000).granted  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        h.add(ConsentRecord("x", "u2", 1, ML, None, frozenset(), True))


def test_user_state_round_trip() -> None:
    state = UserState("üser-1")
    records = [
        ConsentRecord("c1", "üser-1", 100, ML, None, frozenset(), True, None, None),
        ConsentRecord("c2", "üser-1", 200, ML, "acme", frozenset({DataCategory.FACE_BIOMETRIC,
                      DataCategory.UNKNOWN}), True, "v2 ✓", 9_999),
        ConsentRecord("c3", "üser-1", 300, RES, "acme", frozenset(), False, "v2", None),
    ]  # fmt: skip
    for r in records:
        state.apply_consent(r)
    state.record_allowed(AllowedAccess("d1", "e1", 250, ML, "acme", "c2"))
    state.record_allowed(AllowedAccess("d2", "e2", 260, Purpose.SERVICE_OPERATION, "cdn", None))

    data = state.to_bytes()
    assert b" " not in data.replace(b"v2 ", b"")  # compact
    again = UserState.from_bytes(data)
    assert again.user_id == "üser-1"
    assert sorted(again.consents, key=lambda r: r.event_id) == records
    assert list(again.allowed) == list(state.allowed)
    assert again.to_bytes() == data


@pytest.mark.parametrize(
    "blob", [b"", b"not json", b"[]", b'{"v": 99, "u": "x", "c": [], "a": []}', b'{"v": 1}',
             b'{"v":1,"u":"u","c":[["c1",1,"NOPE",null,[],1,null,null]],"a":[]}']
)  # fmt: skip
def test_unreadable_state_raises_serde_error(blob: bytes) -> None:
    with pytest.raises(SerdeError):
        UserState.from_bytes(blob)


def test_allowed_log_is_bounded_and_idempotent() -> None:
    log = AllowedAccessLog()
    for i in range(MAX_ALLOWED_ACCESSES + 5):
        assert log.add(access(f"e{i}", 1000 + i))
    assert len(log) == MAX_ALLOWED_ACCESSES
    assert [a.subject_event_id for a in log][:2] == ["e5", "e6"]  # oldest evicted
    assert not log.add(access("e10", 1010))  # duplicate subject
    assert not log.add(access("old", 1))  # older than everything held: evicted at once
    assert len(log) == MAX_ALLOWED_ACCESSES


def test_violated_by_selects_later_matching_consent_based_accesses() -> None:
    log = AllowedAccessLog()
    held = [
        access("before", 99),
        access("same-ms", 100),
        access("after", 150),
        access("other-org", 160, org="beta"),
        access("other-purpose", 170, purpose=RES),
        access("not-consent-based", 180, consent_id=None),
    ]
    for a in held:
        log.add(a)
    any_org = consent("w", 100, granted=False)
    assert [a.subject_event_id for a in log.violated_by(any_org)] == [
        "same-ms",
        "after",
        "other-org",
    ]
    acme_only = consent("w", 100, granted=False, org="acme")
    assert [a.subject_event_id for a in log.violated_by(acme_only)] == ["same-ms", "after"]
    assert log.violated_by(consent("g", 0)) == []  # a grant violates nothing


def test_retroactive_withdrawal_arriving_late() -> None:
    state = UserState("u1")
    state.apply_consent(consent("c1", 100))
    state.record_allowed(access("e1", 500))
    state.record_allowed(access("e2", 250))
    violations = state.apply_consent(consent("w", 300, granted=False))
    assert [a.decision_id for a in violations] == ["d-e1"]
    assert state.apply_consent(consent("w", 300, granted=False)) == []  # replay: no second alert


def test_regrant_before_access_is_not_a_violation() -> None:
    state = UserState("u1")
    state.apply_consent(consent("c1", 100))
    state.apply_consent(consent("c2", 400))
    state.record_allowed(access("e1", 500, consent_id="c2"))
    assert state.apply_consent(consent("w", 300, granted=False)) == []
    # ... but a withdrawal after the re-grant is.
    assert [a.subject_event_id for a in state.apply_consent(consent("w2", 450, granted=False))] == [
        "e1"
    ]


def test_violated_by_before_the_withdrawal_is_added() -> None:
    state = UserState("u1")
    state.apply_consent(consent("c1", 100))
    state.record_allowed(access("e1", 500))
    withdrawal = consent("w", 300, granted=False, org="acme")
    assert [a.subject_event_id for a in state.violated_by(withdrawal)] == ["e1"]
    assert state.violated_by(consent("w", 300, granted=False, org="beta")) == []
