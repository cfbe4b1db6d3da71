"""Photo identity across partitions (CONTRACT §3): a photo belongs to its first uploader.

A user's uploads and requests live on the user's partition, but two users' data can live on any
two partitions. So ownership is settled by a **photo index** partitioned by photo id (and by
content hash), itself a stage of the gate:

1. an upload on the owner's partition records the photo as *pending* and sends a claim for its
   ``photo_id`` and one for its ``content_sha256`` to ``consentinel-gate.photo-claims`` (keyed
   ``id:<photo_id>`` / ``sha:<hash>``, so every claim of one photo meets in one partition);
2. the index partition records the first claimant of each key and answers every claim on
   ``consentinel-gate.photo-verdicts``, keyed by the claimant (back to the owner's partition);
3. the owner's partition marks the photo *owned* once both claims are accepted, or *foreign*
   (owned by the first uploader) if either is refused.

A request for a pending photo, or for a photo its partition does not know, is *parked* in the
state and decided when the verdicts (or the index's answer to a lookup) arrive: never allowed on
a guess, never decided ``UNKNOWN_PHOTO`` merely because the index is a few milliseconds behind.
Each message here is a compact record on an internal topic (:func:`encode_message`; JSON for a
field holding a NUL, and JSON is still read); all of it is written in the runtime's
transactions, so a crash neither loses nor repeats a claim, a verdict or a parked request. When
the index partition is assigned to the same process, the runtime hands it the claim at once, in
the same transaction (``RuntimeOptions.local_loopback``): same records, no broker round trip.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from streams import topics
from streams.core.partitioning import partition_for
from streams.runtime.records import Output, RawInput

OWNED, PENDING, FOREIGN = b"\x01", b"\x02", b"\x03"
"""Tags of a photo record's value on the owner's partition (an untagged value is owned)."""

INDEX_PREFIX = b"I:"
PARKED_PREFIX = b"w:"
PHOTO_PREFIX = b"p:"

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PhotoStatus:
    """What the owner's partition knows of a photo: its owner, or that it is still pending."""

    owner: str
    pending: bool = False
    first_owner: str | None = None  # set when another user uploaded it first

    @property
    def effective_owner(self) -> str:
        """The owner that requests are checked against (the first uploader wins)."""
        return self.first_owner or self.owner


def encode_status(status: PhotoStatus, outstanding: int = 0) -> bytes:
    """Return the stored value of a photo record."""
    if status.pending:
        return PENDING + str(outstanding).encode() + b"\x00" + status.owner.encode()
    if status.first_owner is not None:
        return FOREIGN + status.first_owner.encode() + b"\x00" + status.owner.encode()
    return OWNED + status.owner.encode()


def decode_status(value: bytes) -> tuple[PhotoStatus, int]:
    """Return a stored photo record as ``(status, claims outstanding)``."""
    tag = value[:1]
    if tag == PENDING:
        count, _, owner = value[1:].partition(b"\x00")
        return PhotoStatus(owner.decode(), pending=True), int(count)
    if tag == FOREIGN:
        first, _, owner = value[1:].partition(b"\x00")
        return PhotoStatus(owner.decode(), first_owner=first.decode()), 0
    if tag == OWNED:
        return PhotoStatus(value[1:].decode()), 0
    return PhotoStatus(value.decode()), 0  # written before the index existed: owned


def claims(
    photo_id: str, owner_id: str, content_sha256: str | None, partitions: int
) -> list[Output]:
    """Return the claims an upload sends to the photo index."""
    keys = [f"id:{photo_id}"]
    if content_sha256:
        keys.append(f"sha:{content_sha256.lower()}")
    return [
        _message(
            topics.TOPIC_GATE_PHOTO_CLAIMS,
            key,
            {"t": "claim", "k": key, "p": photo_id, "o": owner_id},
            partitions,
        )
        for key in keys
    ]


def lookup(photo_id: str, requester_owner: str, partitions: int) -> Output:
    """Return the index query for a photo the requester's partition does not know."""
    key = f"id:{photo_id}"
    body = {"t": "lookup", "k": key, "p": photo_id, "o": requester_owner}
    return _message(topics.TOPIC_GATE_PHOTO_CLAIMS, key, body, partitions)


def answer(message: dict[str, Any], first_owner: str | None, partitions: int) -> Output:
    """Return the index's answer to a claim or lookup, addressed to the asker's partition."""
    body = {**message, "first": first_owner}
    return _message(topics.TOPIC_GATE_PHOTO_VERDICTS, message["o"], body, partitions)


_COMPACT = b"\x01"
_FIELDS = ("t", "k", "p", "o")


def encode_message(body: dict[str, Any]) -> bytes:
    """Return an index message's bytes: ``0x01`` then its fields joined by NUL.

    Fields in order ``t``, ``k``, ``p``, ``o`` and, in an answer, ``first`` (empty: no first
    owner; ids are never empty). A message with a NUL in a field is written as JSON instead.
    """
    fields = [body[name] for name in _FIELDS]
    if "first" in body:
        fields.append(body["first"] or "")
    joined = "\x00".join(fields)
    if joined.count("\x00") != len(fields) - 1:
        return _JSON.encode(body).encode()
    return _COMPACT + joined.encode()


def decode_message(value: bytes | None) -> dict[str, Any]:
    """Return an index message (either encoding of :func:`encode_message`)."""
    if value is None or value[:1] != _COMPACT:
        message: dict[str, Any] = json.loads(value or b"{}")
        return message
    fields = value[1:].decode().split("\x00")
    body: dict[str, Any] = dict(zip(_FIELDS, fields, strict=False))
    if len(fields) > 4:
        body["first"] = fields[4] or None
    return body


def _message(topic: str, key: str, body: dict[str, Any], partitions: int) -> Output:
    key_bytes = key.encode()
    return Output(topic, partition_for(key_bytes, partitions), key_bytes, encode_message(body))


def park_entry(raw: RawInput, effective_at_ms: int) -> dict[str, Any]:
    """Return what is kept of a parked request to decide it later exactly as now."""
    return {
        "topic": raw.topic,
        "partition": raw.partition,
        "offset": raw.offset,
        "ts": raw.timestamp_ms,
        "key": None if raw.key is None else base64.b64encode(raw.key).decode(),
        "value": None if raw.value is None else base64.b64encode(raw.value).decode(),
        "eff": effective_at_ms,
    }


def unpark_entry(entry: dict[str, Any]) -> tuple[RawInput, int]:
    """Return a parked request's input and effective time."""
    raw = RawInput(
        topic=entry["topic"],
        partition=entry["partition"],
        offset=entry["offset"],
        timestamp_ms=entry["ts"],
        key=None if entry["key"] is None else base64.b64decode(entry["key"]),
        value=None if entry["value"] is None else base64.b64decode(entry["value"]),
    )
    return raw, int(entry["eff"])
