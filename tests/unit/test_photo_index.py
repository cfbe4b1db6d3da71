"""The photo index's compact records: photo statuses on the owner's partition, index messages."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from streams import topics
from streams.gate.photos import (
    PhotoStatus,
    answer,
    claims,
    decode_message,
    decode_status,
    encode_message,
    encode_status,
    erase_claims,
)

HASH = hashlib.sha256(b"photo").hexdigest()

STATUSES = [
    (PhotoStatus("alice", pending=True), 2),
    (PhotoStatus("alice"), 0),
    (PhotoStatus("bob", first_owner="alice"), 0),
    (PhotoStatus("bob", erased=True), 0),
]


@pytest.mark.parametrize("content", [None, HASH, "not-a-hash", "a:b\x00c", "é" * 64, "0" * 63])
@pytest.mark.parametrize(("status", "outstanding"), STATUSES)
def test_a_photo_status_round_trips_with_its_content_hash(
    status: PhotoStatus, outstanding: int, content: str | None
) -> None:
    status = PhotoStatus(
        status.owner,
        pending=status.pending,
        first_owner=status.first_owner,
        content=content,
        erased=status.erased,
    )
    assert decode_status(encode_status(status, outstanding)) == (status, outstanding)


def test_a_sha256_is_kept_as_its_32_bytes() -> None:
    plain = encode_status(PhotoStatus("alice"))
    assert len(encode_status(PhotoStatus("alice", content=HASH))) == len(plain) + 32


@pytest.mark.parametrize(
    ("stored", "status", "outstanding"),
    [
        (b"\x01alice", PhotoStatus("alice"), 0),
        (b"\x022\x00alice", PhotoStatus("alice", pending=True), 2),
        (b"\x03alice\x00bob", PhotoStatus("bob", first_owner="alice"), 0),
        (b"alice", PhotoStatus("alice"), 0),
    ],
)
def test_records_written_before_the_hash_was_kept_still_read(
    stored: bytes, status: PhotoStatus, outstanding: int
) -> None:
    assert decode_status(stored) == (status, outstanding)


def _bodies(outputs: list[Any]) -> list[dict[str, Any]]:
    return [decode_message(output.value) for output in outputs]


def test_an_erasure_erases_the_keys_the_claims_named() -> None:
    claimed = claims("p1", "alice", HASH.upper(), 8)
    erased = erase_claims("p1", "alice", HASH, 8)
    assert [(o.topic, o.partition, o.key) for o in erased] == [
        (o.topic, o.partition, o.key) for o in claimed
    ]
    assert {o.topic for o in erased} == {topics.TOPIC_GATE_PHOTO_CLAIMS}
    assert _bodies(erased) == [
        {"t": "erase", "k": "id:p1", "p": "p1", "o": "alice"},
        {"t": "erase", "k": f"sha:{HASH}", "p": "p1", "o": "alice"},
    ]
    assert _bodies(erase_claims("p1", "alice", None, 8)) == [_bodies(erased)[0]]


@pytest.mark.parametrize("owner", ["alice", "al\x00ice"], ids=["compact", "json"])
def test_an_erased_answer_round_trips_and_names_nobody(owner: str) -> None:
    (claim, _) = _bodies(claims("p1", owner, HASH, 8))
    refused = answer(claim, None, 8, erased=True)
    assert decode_message(refused.value) == {**claim, "first": None, "erased": True}
    accepted = answer(claim, owner, 8)
    assert decode_message(accepted.value) == {**claim, "first": owner}
    assert isinstance(refused.value, bytes)
    assert refused.value.startswith(b"\x01") == (owner == "alice")
    assert encode_message(decode_message(refused.value)) == refused.value
