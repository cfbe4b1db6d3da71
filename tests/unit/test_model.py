"""Building core records from decoded events, and the Decision record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.model import (
    AccessRequest,
    ConsentRecord,
    DataCategory,
    Decision,
    PhotoRecord,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
    decision_record,
)
from streams.errors import InvalidEventError, UnknownEnumSymbolError

SHARE: dict[str, Any] = {
    "event_id": "e1",
    "occurred_at": 1_790_000_000_000,
    "source": "app",
    "share_id": "s1",
    "photo_id": "p1",
    "owner_id": "u1",
    "requester": "partner-svc",
    "recipient_org": "acme-vision",
    "purpose": "ML_TRAINING",
    "categories": ["IMAGE", "FACE_BIOMETRIC"],
}
READ: dict[str, Any] = {
    "event_id": "e2",
    "occurred_at": 1_790_000_000_001,
    "source": "loader",
    "job_id": "job-7",
    "model_id": "m-3",
    "org": "acme-vision",
    "photo_id": "p1",
    "owner_id": "u1",
    "purpose": "RESEARCH",
    "categories": [],
}
CONSENT: dict[str, Any] = {
    "event_id": "c1",
    "occurred_at": 1_780_000_000_000,
    "source": "consent-svc",
    "user_id": "u1",
    "purpose": "ML_TRAINING",
    "recipient_org": None,
    "categories": ["IMAGE"],
    "granted": True,
    "notice_version": "2026-05",
    "expires_at": None,
}


def test_from_share() -> None:
    r = AccessRequest.from_share(SHARE)
    assert r.kind is SubjectKind.SHARE
    assert (r.event_id, r.photo_id, r.owner_id, r.actor, r.recipient_org, r.share_id) == (
        "e1", "p1", "u1", "partner-svc", "acme-vision", "s1",
    )  # fmt: skip
    assert r.purpose is Purpose.ML_TRAINING
    assert r.categories == {DataCategory.IMAGE, DataCategory.FACE_BIOMETRIC}
    assert r.occurred_at_ms == 1_790_000_000_000
    assert r.job_id is None


def test_from_training_read() -> None:
    r = AccessRequest.from_training_read(READ)
    assert r.kind is SubjectKind.TRAINING_READ
    assert (r.actor, r.job_id, r.model_id, r.recipient_org) == (
        "job-7",
        "job-7",
        "m-3",
        "acme-vision",
    )
    assert r.purpose is Purpose.RESEARCH and r.categories == frozenset()


def test_datetime_timestamps_are_accepted() -> None:
    moment = datetime(2026, 9, 21, 12, 0, tzinfo=UTC)
    r = AccessRequest.from_share({**SHARE, "occurred_at": moment})
    assert r.occurred_at_ms == int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    "field", ["event_id", "share_id", "photo_id", "owner_id", "requester", "recipient_org"]
)
@pytest.mark.parametrize("bad", [None, "", "   ", 7])
def test_share_ids_required(field: str, bad: Any) -> None:
    with pytest.raises(InvalidEventError, match=field):
        AccessRequest.from_share({**SHARE, field: bad})


@pytest.mark.parametrize("field", ["job_id", "model_id", "org", "photo_id", "owner_id", "event_id"])
def test_training_ids_required(field: str) -> None:
    record = dict(READ)
    del record[field]
    with pytest.raises(InvalidEventError, match=field):
        AccessRequest.from_training_read(record)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"purpose": "UNKNOWN"}, "purpose"),
        ({"purpose": "TELEPATHY"}, "purpose"),
        ({"categories": ["IMAGE", "UNKNOWN"]}, "categories"),
    ],
)
def test_unknown_enum_symbols_are_rejected(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(UnknownEnumSymbolError, match=field):
        AccessRequest.from_share({**SHARE, **patch})
    with pytest.raises(UnknownEnumSymbolError, match=field):
        AccessRequest.from_training_read({**READ, **patch})


@pytest.mark.parametrize("bad", [None, "1790000000000", True, 1.5])
def test_bad_timestamp(bad: Any) -> None:
    with pytest.raises(InvalidEventError, match="occurred_at"):
        AccessRequest.from_share({**SHARE, "occurred_at": bad})


def test_consent_from_record() -> None:
    c = ConsentRecord.from_record({**CONSENT, "expires_at": 1_800_000_000_000})
    assert c.purpose is Purpose.ML_TRAINING and c.recipient_org is None and c.granted
    assert c.categories == {DataCategory.IMAGE} and c.expires_at_ms == 1_800_000_000_000
    # An unknown category narrows a grant instead of losing the event.
    c = ConsentRecord.from_record({**CONSENT, "categories": ["UNKNOWN"], "granted": False})
    assert c.categories == {DataCategory.UNKNOWN} and not c.granted


@pytest.mark.parametrize(
    ("patch", "error"),
    [
        ({"purpose": "UNKNOWN"}, UnknownEnumSymbolError),
        ({"user_id": ""}, InvalidEventError),
        ({"granted": None}, InvalidEventError),
        ({"recipient_org": ""}, InvalidEventError),
        ({"expires_at": "never"}, InvalidEventError),
    ],
)
def test_consent_validation(patch: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ConsentRecord.from_record({**CONSENT, **patch})


def test_photo_from_record() -> None:
    record = {"event_id": "u-1", "occurred_at": 5, "photo_id": "p1", "owner_id": "u1",
              "content_sha256": "ab" * 32, "media_type": "image/jpeg",
              "size_bytes": 1234}  # fmt: skip
    p = PhotoRecord.from_record(record)
    assert (p.photo_id, p.owner_id, p.size_bytes) == ("p1", "u1", 1234)
    with pytest.raises(InvalidEventError):
        PhotoRecord.from_record({**record, "owner_id": None})


def test_decision_record_fields() -> None:
    request = AccessRequest.from_share(SHARE)
    decision = Decision(Verdict.DENY, Reason.NO_CONSENT, "x.", None, "v1", request)
    record = decision_record(
        decision, decision_id="d1", decided_at_ms=42, prev_hash=GENESIS_HASH, partition=3
    )
    assert set(record) == {
        "decision_id", "decided_at", "subject_event_id", "subject_kind", "photo_id", "owner_id",
        "actor", "recipient_org", "purpose", "verdict", "reason", "explanation", "policy_version",
        "consent_event_id", "prev_hash", "hash", "categories", "occurred_at", "partition",
        "model_id", "share_id",
    }  # fmt: skip
    assert record["model_id"] is None
    assert record["share_id"] == SHARE["share_id"]
    assert record["categories"] == ["FACE_BIOMETRIC", "IMAGE"]
    assert record["subject_kind"] == "SHARE" and type(record["subject_kind"]) is str
    assert record["verdict"] == "DENY" and record["reason"] == "NO_CONSENT"
    assert record["subject_event_id"] == "e1" and record["occurred_at"] == SHARE["occurred_at"]
    assert record["hash"] == chain_hash(record, GENESIS_HASH)
