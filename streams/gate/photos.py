"""Photo identity across partitions (CONTRACT §3): a photo belongs to its first uploader.

A user's uploads and requests live on the user's partition, but two users' data can live on any
two partitions. So ownership is settled by a **photo index** partitioned by photo id (and by
content hash), itself a stage of the gate:

1. an upload on the owner's partition records the photo as *pending* (with its content hash) and
   sends a claim for its ``photo_id`` and one for its ``content_sha256`` to
   ``consentinel-gate.photo-claims`` (keyed ``id:<photo_id>`` / ``sha:<hash>``, so every claim of
   one photo meets in one partition);
2. the index partition records the first claimant of each key and answers every claim on
   ``consentinel-gate.photo-verdicts``, keyed by the claimant (back to the owner's partition);
3. the owner's partition marks the photo *owned* once both claims are accepted, or *foreign*
   (owned by the first uploader) if either is refused, or *erased* if either key was erased.

**Erasure** (CONTRACT §3: the gate forgets the erased photos, and for an account the user's
state). The owner's partition forgets the photo and sends an ``erase`` for each of its keys
(:func:`erase_claims`), in the erasure's transaction. The index partition replaces an entry of
the eraser's (or an empty one) by :data:`ERASED_ENTRY`, which names nobody, and leaves another
user's entry alone. An erased key is never claimed again: a later claim of it is refused with
``erased``, so a copy of an erased photo (same id, or same content under another id) uploaded by
anyone is *erased* on its uploader's partition, and every request for it, or a lookup of the
erased id, is decided ``DENY``/``ERASED`` (not ``OWNER_MISMATCH``: the gate no longer knows an
owner to name, and the contract decides requests for erased photos ``ERASED``; see
:func:`streams.core.recall.erased_decision`). An upload by a user whose account, or that photo,
is erased is not recorded; its keys are erased instead, so that it never puts the user's id back.

A request for a pending photo, or for a photo its partition does not know, waits in its user's
queue (:mod:`streams.gate.user_queues`) and is decided when the verdicts (or the index's answer
to a lookup) arrive: never allowed on a guess, never decided ``UNKNOWN_PHOTO`` merely because the
index is a few milliseconds behind.
Each message here is a compact record on an internal topic (:func:`encode_message`; JSON for a
field holding a NUL, and JSON is still read); all of it is written in the runtime's
transactions, so a crash neither loses nor repeats a claim, an erase, a verdict or a waiting
request. When the index partition is assigned to the same process, the runtime hands it the
message at once, in the same transaction (``RuntimeOptions.local_loopback``): same records, no
broker round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from streams import topics
from streams.core.partitioning import partition_for
from streams.runtime.records import Output

OWNED, PENDING, FOREIGN, ERASED = b"\x01", b"\x02", b"\x03", b"\x04"
"""Tags of a photo record's value on the owner's partition (an untagged value is owned).

A tag plus :data:`_DIGEST` is followed by the 32 bytes of the photo's SHA-256 (a 64-hex-digit
``content_sha256``), a tag plus :data:`_TEXT` by ``<length>:<content hash>`` (any other text);
the record as before follows. Records without a hash (written before it was kept) still read."""

_DIGEST, _TEXT = 0x10, 0x18

ERASED_ENTRY = b"\xff"
"""An erased photo index entry: names nobody, refuses every claim (never a UTF-8 user id)."""

INDEX_PREFIX = b"I:"
PHOTO_PREFIX = b"p:"

_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class PhotoStatus:
    """What the owner's partition knows of a photo: its owner, or that it is still pending."""

    owner: str
    pending: bool = False
    first_owner: str | None = None  # set when another user uploaded it first
    content: str | None = None
    """The content hash its claim named (lower case), to erase that index entry too."""
    erased: bool = False
    """The index refused it: its id or content is an erased photo's (requests are ``ERASED``)."""

    @property
    def effective_owner(self) -> str:
        """The owner that requests are checked against (the first uploader wins)."""
        return self.first_owner or self.owner


def settle(
    status: PhotoStatus, outstanding: int, first: str | None, *, erased: bool
) -> tuple[PhotoStatus, int]:
    """Return a photo's status and claims outstanding once the index answered one of its claims.

    ``first`` is the key's first claimant, ``erased`` whether the key is an erased photo's.
    Erased wins (either key), then foreign (either key claimed first by another user); the photo
    is owned once every claim is accepted.
    """
    if erased or status.erased:
        return replace(status, pending=False, erased=True), 0
    if first is not None and first != status.owner:
        return replace(status, pending=False, first_owner=first), 0
    if not status.pending:
        return status, 0
    if outstanding > 1:
        return status, outstanding - 1
    return replace(status, pending=False), 0


def encode_status(status: PhotoStatus, outstanding: int = 0) -> bytes:
    """Return the stored value of a photo record."""
    if status.pending:
        tag, body = PENDING, str(outstanding).encode() + b"\x00" + status.owner.encode()
    elif status.erased:
        tag, body = ERASED, status.owner.encode()
    elif status.first_owner is not None:
        tag, body = FOREIGN, status.first_owner.encode() + b"\x00" + status.owner.encode()
    else:
        tag, body = OWNED, status.owner.encode()
    if status.content is None:
        return tag + body
    digest = _digest(status.content)
    if digest is not None:
        return bytes([tag[0] + _DIGEST]) + digest + body
    text = status.content.encode()
    return bytes([tag[0] + _TEXT]) + str(len(text)).encode() + b":" + text + body


def decode_status(value: bytes) -> tuple[PhotoStatus, int]:
    """Return a stored photo record as ``(status, claims outstanding)``."""
    code, content = value[0] if value else 0, None
    if OWNED[0] + _DIGEST <= code <= ERASED[0] + _DIGEST:
        content, value = value[1:33].hex(), bytes([code - _DIGEST]) + value[33:]
    elif OWNED[0] + _TEXT <= code <= ERASED[0] + _TEXT:
        colon = value.index(b":", 1)
        end = colon + 1 + int(value[1:colon])
        content, value = value[colon + 1 : end].decode(), bytes([code - _TEXT]) + value[end:]
    tag = value[:1]
    if tag == PENDING:
        count, _, owner = value[1:].partition(b"\x00")
        return PhotoStatus(owner.decode(), pending=True, content=content), int(count)
    if tag == FOREIGN:
        first, _, owner = value[1:].partition(b"\x00")
        return PhotoStatus(owner.decode(), first_owner=first.decode(), content=content), 0
    if tag == ERASED:
        return PhotoStatus(value[1:].decode(), content=content, erased=True), 0
    if tag == OWNED:
        return PhotoStatus(value[1:].decode(), content=content), 0
    return PhotoStatus(value.decode()), 0  # written before the index existed: owned


def _digest(content: str) -> bytes | None:
    """Return a 64-hex-digit content hash as its 32 bytes, or None for any other text."""
    if len(content) != 64:
        return None
    try:
        digest = bytes.fromhex(content)
    except ValueError:
        return None
    return digest if digest.hex() == content else None


def content_key(content_sha256: str | None) -> str | None:
    """Return the hash an upload's content claim names (lower case), or None if it has none."""
    return content_sha256.lower() if content_sha256 else None


def index_keys(photo_id: str, content: str | None) -> list[str]:
    """Return a photo's keys in the index: its id and, if known, its content hash."""
    return [f"id:{photo_id}"] if content is None else [f"id:{photo_id}", f"sha:{content}"]


def claims(
    photo_id: str, owner_id: str, content_sha256: str | None, partitions: int
) -> list[Output]:
    """Return the claims an upload sends to the photo index."""
    return _to_index("claim", photo_id, owner_id, content_key(content_sha256), partitions)


def erase_claims(
    photo_id: str, owner_id: str, content: str | None, partitions: int
) -> list[Output]:
    """Return the messages that erase ``owner_id``'s entries of a photo from the index.

    ``content`` is the hash its claim named (:attr:`PhotoStatus.content`; None: unknown, only the
    id's entry is erased). The index partition erases an entry of ``owner_id``'s or an empty one,
    and leaves another user's alone; nothing is answered.
    """
    return _to_index("erase", photo_id, owner_id, content, partitions)


def _to_index(
    kind: str, photo_id: str, owner_id: str, content: str | None, partitions: int
) -> list[Output]:
    return [
        _message(
            topics.TOPIC_GATE_PHOTO_CLAIMS,
            key,
            {"t": kind, "k": key, "p": photo_id, "o": owner_id},
            partitions,
        )
        for key in index_keys(photo_id, content)
    ]


def lookup(photo_id: str, requester_owner: str, partitions: int) -> Output:
    """Return the index query for a photo the requester's partition does not know."""
    key = f"id:{photo_id}"
    body = {"t": "lookup", "k": key, "p": photo_id, "o": requester_owner}
    return _message(topics.TOPIC_GATE_PHOTO_CLAIMS, key, body, partitions)


def answer(
    message: dict[str, Any], first_owner: str | None, partitions: int, *, erased: bool = False
) -> Output:
    """Return the index's answer to a claim or lookup, addressed to the asker's partition.

    ``erased``: the key is an erased photo's (the claim is refused; ``first_owner`` is None).
    """
    body = {**message, "first": first_owner}
    if erased:
        body["erased"] = True
    return _message(topics.TOPIC_GATE_PHOTO_VERDICTS, message["o"], body, partitions)


_COMPACT = b"\x01"
_FIELDS = ("t", "k", "p", "o")


def encode_message(body: dict[str, Any]) -> bytes:
    """Return an index message's bytes: ``0x01`` then its fields joined by NUL.

    Fields in order ``t`` (``claim``, ``lookup``, ``erase``), ``k``, ``p``, ``o`` and, in an
    answer, ``first`` (empty: no first owner; ids are never empty), then ``1`` if the key is
    erased. A message with a NUL in a field is written as JSON instead.
    """
    fields = [body[name] for name in _FIELDS]
    if "first" in body:
        fields.append(body["first"] or "")
        if body.get("erased"):
            fields.append("1")
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
    if len(fields) > 5 and fields[5] == "1":
        body["erased"] = True
    return body


def _message(topic: str, key: str, body: dict[str, Any], partitions: int) -> Output:
    key_bytes = key.encode()
    return Output(topic, partition_for(key_bytes, partitions), key_bytes, encode_message(body))
