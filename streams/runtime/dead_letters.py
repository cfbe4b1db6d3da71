"""The one builder of ``governance.dlq`` records for every processor (CONTRACT §2).

A dead letter keeps the input verbatim (key and value) so that it can be replayed once the cause
is fixed, names the *logical* source topic (the contract's name, not a deployment's prefixed
one), and carries a readable error. Its id is derived from where the input sits, in one id
namespace for the whole project, so a replay after an aborted transaction writes the same id.
Values larger than :data:`MAX_DEAD_LETTER_VALUE_BYTES` are cut, and the error says so: a record
too large to write must not stop the processor that dead-letters it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from streams.runtime.records import Output, RawInput

DEAD_LETTER_NAMESPACE = uuid.UUID("6f1c1f0e-6a43-4d55-9d0f-5d3b3c1e0a01")
"""The namespace of every id the processors derive (decisions, alerts, dead letters, orders)."""

_NAMESPACE_BYTES = DEAD_LETTER_NAMESPACE.bytes

MAX_DEAD_LETTER_VALUE_BYTES = 64 * 1024
"""Largest value kept verbatim in a dead letter; longer values are cut to this length."""

MAX_ERROR_CHARS = 4000
"""Longest error text kept in a dead letter."""

MAX_KEY_BYTES = 1024
"""Longest key kept in a dead letter."""


def derived_id(name: str) -> str:
    """Return ``str(uuid.uuid5(DEAD_LETTER_NAMESPACE, name))``, three times faster.

    ``uuid.UUID`` validates and converts its argument in Python; this formats the same SHA-1
    digest (version 5, RFC 4122 variant) directly.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def dead_letter(
    raw: RawInput, kind: str, error: str, *, at_ms: int, partition: int | None = None
) -> Output:
    """Return the ``governance.dlq`` output for an input that cannot be handled.

    ``kind`` is the error's ``error_kind`` (a small fixed vocabulary: it labels a counter).
    ``partition`` is where the dead letter goes (default: the input's partition number).
    """
    from streams import topics  # here: topics imports nothing from the runtime

    value = raw.value or b""
    key = raw.key
    notes = []
    if len(value) > MAX_DEAD_LETTER_VALUE_BYTES:
        notes.append(f"value cut from {len(value)} to {MAX_DEAD_LETTER_VALUE_BYTES} bytes")
        value = value[:MAX_DEAD_LETTER_VALUE_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        notes.append(f"key cut from {len(key)} to {MAX_KEY_BYTES} bytes")
        key = key[:MAX_KEY_BYTES]
    if notes:
        error = f"{error} [{'; '.join(notes)}]"
    ident = f"{raw.topic}/{raw.partition}/{raw.offset}"
    record: dict[str, Any] = {
        "dead_letter_id": derived_id("dlq:" + ident),
        "at": at_ms,
        "source_topic": raw.topic,
        "partition": raw.partition,
        "offset": raw.offset,
        "key": key,
        "value": value,
        "error_kind": kind,
        "error": error[:MAX_ERROR_CHARS],
    }
    target = raw.partition if partition is None else partition
    return Output(topics.TOPIC_DLQ, target, key, record)


def oversize_input(raw: RawInput, limit: int, *, at_ms: int) -> Output | None:
    """Return the dead letter for an input larger than ``limit`` bytes, or None if it fits."""
    if raw.value is None or len(raw.value) <= limit:
        return None
    error = f"record of {len(raw.value)} bytes exceeds the {limit} bytes a processor accepts"
    return dead_letter(raw, "INPUT_TOO_LARGE", error, at_ms=at_ms)


def oversize_output(
    source: RawInput, topic: str, size: int, limit: int, *, at_ms: int
) -> Output | None:
    """Return the dead letter that replaces an output of ``size`` bytes over ``limit``, or None.

    The input that produced it is kept in the dead letter instead (its payload cut), so the
    processor goes on and nothing is lost.
    """
    if size <= limit:
        return None
    error = f"an output to {topic} of {size} bytes exceeds {limit} bytes; the input is kept here"
    return dead_letter(source, "OUTPUT_TOO_LARGE", error, at_ms=at_ms)
