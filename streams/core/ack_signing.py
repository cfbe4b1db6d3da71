r"""Signed recall acknowledgements (contract §2 ``RecallAcknowledged``, §5): pure, no Kafka.

An acknowledgement closes (part of) a recall order only when the recipient signed it with one of
the Ed25519 keys the policy lists for it (``recipients.<org>.ack_keys``, public keys in PEM).

**key_id.** The first 16 hex digits (lower case) of the SHA-256 of the raw 32-byte Ed25519
public key (:func:`ack_key_id`). It names the key in the ack's ``key_id`` field, so a recipient
can rotate keys by listing the new one beside the old.

**Canonical signing form.** The signature covers these bytes (:func:`ack_signing_bytes`)::

    b"consentinel.v1.RecallAcknowledged\n" + UTF-8( JCS({
        "acknowledged_at": <epoch milliseconds, integer>,
        "deleted_photo_ids": [<string>, ...],      # in the record's order
        "evidence": <string>,
        "key_id": <string>,
        "order_id": <string>,
        "purged_model_ids": [<string>, ...],       # in the record's order
        "recipient_org": <string>,
    }) )

i.e. every field of the record but ``signature``, as a JSON object with keys sorted, no
whitespace, non-ASCII characters written as themselves (UTF-8) and only ``"``, ``\`` and control
characters escaped -- RFC 8785 (JCS) for these types, which any language can reproduce. The
domain prefix keeps the signature from being replayed as any other signed Consentinel record.
The signature is Ed25519 (RFC 8032, 64 bytes) over those bytes.

Guarantees: :func:`ack_problem` returns ``None`` only for an ack whose ``key_id`` is one of the
given keys and whose signature over its canonical form verifies with that key; any change to a
signed field (another order, recipient, photo, time or evidence) breaks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.core.times import to_millis

ACK_SIGNING_DOMAIN = b"consentinel.v1.RecallAcknowledged\n"
"""Prefix of every signed acknowledgement (domain separation)."""

ACK_SIGNED_FIELDS = (
    "order_id",
    "recipient_org",
    "acknowledged_at",
    "deleted_photo_ids",
    "purged_model_ids",
    "evidence",
    "key_id",
)
"""The fields the signature covers: every field of ``RecallAcknowledged`` but ``signature``."""


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """Return the raw 32 bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ack_key_id(public_key: Ed25519PublicKey | bytes) -> str:
    """Return the key id: first 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key if isinstance(public_key, bytes) else raw_public_key(public_key)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_ack_key(pem: str) -> tuple[str, bytes]:
    """Return ``(key_id, raw public key)`` of one PEM Ed25519 public key.

    Raises:
        ValueError: the text is not a PEM public key, or not an Ed25519 one (the message says
            which, for the policy loader to point at the line).
    """
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm, UnicodeEncodeError) as exc:
        raise ValueError(
            "not a PEM public key (expected '-----BEGIN PUBLIC KEY-----' ...)"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')}, not an Ed25519 public key")
    raw = raw_public_key(key)
    return ack_key_id(raw), raw


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"acknowledged_at must be epoch milliseconds, not {value!r}")
    return value


def _strings(value: Any, name: str) -> list[str]:
    items = list(value or ())
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"{name} must be a list of strings")
    return items


def ack_signing_bytes(record: Mapping[str, Any]) -> bytes:
    """Return the exact bytes an acknowledgement's signature covers (see the module doc).

    Raises:
        KeyError: a signed field other than the lists is missing.
        TypeError: a field has the wrong type.
    """
    content: dict[str, Any] = {}
    for name in ("order_id", "recipient_org", "evidence", "key_id"):
        value = record[name]
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string")
        content[name] = value
    content["acknowledged_at"] = _millis(record["acknowledged_at"])
    content["deleted_photo_ids"] = _strings(record.get("deleted_photo_ids"), "deleted_photo_ids")
    content["purged_model_ids"] = _strings(record.get("purged_model_ids"), "purged_model_ids")
    body = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return ACK_SIGNING_DOMAIN + body.encode("utf-8")


def sign_ack(record: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of ``record`` with ``key_id`` and ``signature`` set by ``private_key``."""
    signed = dict(record)
    signed["key_id"] = ack_key_id(private_key.public_key())
    signed["signature"] = private_key.sign(ack_signing_bytes(signed))
    return signed


def ack_problem(record: Mapping[str, Any], keys: Mapping[str, bytes]) -> str | None:
    """Return why ``record`` is not a valid signed ack under ``keys`` (key id -> raw key), or None.

    ``keys`` are the ack keys of the recipient the ack names; empty when the policy lists none.
    """
    org = record.get("recipient_org")
    key_id = record.get("key_id") or ""
    signature = record.get("signature") or b""
    if not key_id or not signature:
        return "it is not signed (empty key_id or signature)"
    if not keys:
        return f"the policy lists no ack_keys for recipient {org!r}"
    raw = keys.get(str(key_id))
    if raw is None:
        return f"key {key_id!r} is not one of the ack_keys the policy lists for {org!r}"
    if not isinstance(signature, bytes):
        return "its signature is not bytes"
    try:
        message = ack_signing_bytes(record)
    except (KeyError, TypeError) as exc:
        return f"it cannot be put in its signing form: {exc}"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return f"its signature does not verify with key {key_id!r} (altered, or not {org}'s)"
    return None
