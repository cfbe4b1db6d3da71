"""The per-partition hash chain over decisions."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.core.audit import GENESIS_HASH, canonical_content, chain_hash, verify_chain
from streams.core.model import (
    AccessRequest,
    DataCategory,
    Decision,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
    decision_record,
)


def chain(n: int, *, partition: int = 0) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for i in range(n):
        request = AccessRequest(
            f"e{i}", SubjectKind.SHARE, 1_000 + i, f"p{i}", "u1", "svc", "acme", Purpose.RESEARCH,
            frozenset({DataCategory.IMAGE}),
        )  # fmt: skip
        decision = Decision(
            Verdict.ALLOW if i % 2 else Verdict.DENY,
            Reason.CONSENTED if i % 2 else Reason.NO_CONSENT,
            f"décision {i} ✓.",
            "c1" if i % 2 else None,
            "v1",
            request,
        )
        record = decision_record(
            decision, decision_id=f"d{i}", decided_at_ms=2_000 + i, prev_hash=prev,
            partition=partition,
        )  # fmt: skip
        records.append(record)
        prev = record["hash"]
    return records


def test_chain_verifies() -> None:
    records = chain(6)
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    assert verify_chain(records) is None
    assert verify_chain([]) is None
    assert verify_chain(records[3:], start_prev_hash=records[2]["hash"]) is None
    assert verify_chain(records[3:], start_prev_hash=None) is None


def test_hash_definition() -> None:
    record = chain(1)[0]
    expected = hashlib.sha256(canonical_content(record) + GENESIS_HASH.encode()).hexdigest()
    assert record["hash"] == expected
    content = canonical_content(record)
    assert b'"hash"' not in content and b" " not in content.replace(b"d\xc3\xa9cision 0 ", b"")
    assert content == canonical_content(dict(reversed(list(record.items()))))
    assert "décision".encode() in content  # UTF-8, not \u escapes


def test_datetime_timestamps_hash_like_millis() -> None:
    record = chain(1)[0]
    as_read = dict(record)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    as_read["decided_at"] = epoch + timedelta(milliseconds=record["decided_at"])
    as_read["occurred_at"] = epoch + timedelta(milliseconds=record["occurred_at"])
    assert chain_hash(as_read, GENESIS_HASH) == record["hash"]
    assert verify_chain([as_read]) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("verdict", "ALLOW"), ("explanation", "nothing to see."), ("consent_event_id", "c-forged"),
     ("categories", ["IMAGE", "FACE_BIOMETRIC"]), ("decided_at", 1)],
)  # fmt: skip
def test_tampered_field_is_the_first_break(field: str, value: Any) -> None:
    records = chain(5)
    records[2] = {**records[2], field: value}
    found = verify_chain(records)
    assert found is not None
    assert (found.index, found.decision_id) == (2, "d2")
    assert "altered" in found.why
    assert found.found == chain(5)[2]["hash"]
    assert "record 2" in str(found)


def test_rehashed_tampering_breaks_the_next_link() -> None:
    records = chain(5)
    forged = {**records[2], "verdict": "ALLOW"}
    forged["hash"] = chain_hash(forged, forged["prev_hash"])
    records[2] = forged
    found = verify_chain(records)
    assert found is not None and found.index == 3
    assert (found.expected, found.found) == (forged["hash"], records[3]["prev_hash"])


def test_reordered_records() -> None:
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    found = verify_chain(records)
    assert found is not None and found.index == 1 and "reordered" in found.why


def test_deleted_record() -> None:
    records = chain(5)
    del records[3]
    found = verify_chain(records)
    assert found is not None and (found.index, found.decision_id) == (3, "d4")
    assert "removed" in found.why


def test_deleted_first_record() -> None:
    found = verify_chain(chain(3)[1:])
    assert found is not None and found.index == 0 and found.expected == GENESIS_HASH


def test_other_partition_and_malformed_records() -> None:
    mixed = chain(3) + chain(1, partition=1)
    found = verify_chain(mixed)
    assert found is not None and found.index == 3 and "partition" in found.why
    records = chain(3)
    del records[1]["hash"]
    found = verify_chain(records)
    assert found is not None and found.index == 1 and "lacks" in found.why
    records = chain(3)
    records[2] = {**records[2], "explanation": object()}
    found = verify_chain(records)
    assert found is not None and found.index == 2 and "canonicalized" in found.why


@given(st.integers(min_value=0, max_value=7), st.sampled_from(["drop", "swap", "edit", "dup"]))
def test_any_single_tampering_is_caught_at_its_position(index: int, how: str) -> None:
    records = chain(8)
    if how == "drop":
        del records[index]
        expected = index if index < 7 else None  # dropping the tail needs an anchor
    elif how == "swap":
        j = (index + 1) % 8
        records[index], records[j] = records[j], records[index]
        expected = min(index, j)
    elif how == "edit":
        records[index] = {**records[index], "owner_id": "u2"}
        expected = index
    else:
        records.insert(index + 1, records[index])
        expected = index + 1
    found = verify_chain(records)
    assert (found.index if found else None) == expected


def test_a_decision_written_before_share_id_existed_still_verifies() -> None:
    """A reader fills ``share_id`` with null on an older decision: its hash must not change."""
    from streams.core.audit import GENESIS_HASH, chain_hash, plain_chain_hash

    older = {"decision_id": "d1", "verdict": "DENY", "prev_hash": GENESIS_HASH}
    stored = chain_hash(older, GENESIS_HASH)
    as_read_today = {**older, "share_id": None}
    assert chain_hash(as_read_today, GENESIS_HASH) == stored
    assert plain_chain_hash(as_read_today, GENESIS_HASH) == stored
    assert chain_hash({**older, "share_id": "s1"}, GENESIS_HASH) != stored
