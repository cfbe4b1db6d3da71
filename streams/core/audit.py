"""The hash chain that makes each partition's decisions tamper-evident.

Every ``Decision`` record carries ``prev_hash`` (the ``hash`` of the decision before it on the same
partition of ``governance.decisions``, or :data:`GENESIS_HASH` for the first) and ``hash``::

    hash = sha256( canonical_content(record) || prev_hash )   # hex, lower case

where ``canonical_content`` is the record's fields *except* ``hash`` (so ``prev_hash`` is included)
as JSON with sorted keys, no whitespace, UTF-8 (non-ASCII characters kept as-is), and ``||`` is byte
concatenation with ``prev_hash`` encoded as ASCII. Timestamps are hashed as integer epoch
milliseconds whether the record holds an ``int`` or a :class:`~datetime.datetime` (as a default
fastavro reader returns them), so a decision verifies the same however it was read back.

Altering any field breaks that record's ``hash``; removing, inserting or reordering records
breaks the next record's ``prev_hash``. Someone who rewrites the tail *and* recomputes every later
hash is caught only by comparing the last hash with a copy kept elsewhere (an anchor), as with any
hash chain.

Caution for schema evolution: the hash covers every field present in the record, so a verifier must
read decisions with the schema they were written with (or drop fields added later) before verifying.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from streams.core.times import to_millis

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first decision on a partition."""

HASH_FIELD = "hash"
PREV_HASH_FIELD = "prev_hash"


def _normalize(value: Any) -> Any:
    """Return ``value`` as plain JSON data (datetimes become epoch milliseconds)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return to_millis(value)
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_normalize(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


HASHED_ONLY_WHEN_SET = frozenset({"share_id"})
"""Fields added to ``Decision`` after decisions were first chained: hashed only when not null.

A reader fills a missing field with its default (null), so a decision written before the field
existed hashes as it did when it was written, and ``audit verify`` still passes after an upgrade.
"""


def canonical_content(record: Mapping[str, Any]) -> bytes:
    """Return the deterministic bytes hashed for ``record``: every field but ``hash``.

    Fields of :data:`HASHED_ONLY_WHEN_SET` are left out while null.

    The result is JSON with sorted keys and no whitespace, UTF-8 encoded. Two records with equal
    field values give equal bytes regardless of key order or of how timestamps were decoded.
    """
    content = {
        k: _normalize(v)
        for k, v in record.items()
        if k != HASH_FIELD and not (v is None and k in HASHED_ONLY_WHEN_SET)
    }
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


_PLAIN_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def plain_chain_hash(record_without_hash: Mapping[str, Any], prev_hash: str) -> str:
    """Return :func:`chain_hash` of a record whose values are plain JSON already.

    Plain means str, int, bool, None and lists of those: nothing :func:`canonical_content` would
    normalise. The hash is the same; skipping the normalisation is half of the cost, which
    matters on the gate's hot path. The record must not hold a ``hash`` key.
    """
    if record_without_hash.get("share_id", "") is None:  # see HASHED_ONLY_WHEN_SET
        record_without_hash = {k: v for k, v in record_without_hash.items() if k != "share_id"}
    digest = hashlib.sha256(_PLAIN_JSON.encode(record_without_hash).encode("utf-8"))
    digest.update(prev_hash.encode("ascii"))
    return digest.hexdigest()


def chain_hash(record_without_hash: Mapping[str, Any], prev_hash: str) -> str:
    """Return the hex SHA-256 of ``canonical_content(record) || prev_hash``.

    A ``hash`` key in the record, if present, is ignored, so this also recomputes a stored hash.
    """
    digest = hashlib.sha256(canonical_content(record_without_hash))
    digest.update(prev_hash.encode("ascii"))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place where a partition's decision chain does not verify.

    ``index`` is the 0-based position of the offending record in the sequence given to
    :func:`verify_chain`; ``expected`` is what the chain requires there and ``found`` what the
    record holds; ``why`` says in plain language what that means.
    """

    index: int
    decision_id: str | None
    expected: str
    found: str
    why: str

    def __str__(self) -> str:
        return (
            f"chain broken at record {self.index} (decision {self.decision_id}): {self.why}; "
            f"expected {self.expected}, found {self.found}"
        )


def verify_chain(
    records: Iterable[Mapping[str, Any]], *, start_prev_hash: str | None = GENESIS_HASH
) -> ChainBreak | None:
    """Verify one partition's decisions, in offset order, and return the first break or ``None``.

    ``start_prev_hash`` is the ``prev_hash`` the first record must carry: :data:`GENESIS_HASH` when
    verifying from the start of the partition, a trusted earlier ``hash`` when resuming, or ``None``
    to accept whatever the first record says. Also reported: a record whose ``partition`` differs
    from the first record's, and a record that lacks a hash or cannot be canonicalized. Never raises
    on bad records.
    """
    expected_prev = start_prev_hash
    partition: Any = None
    for index, record in enumerate(records):
        decision_id = record.get("decision_id")
        decision_id = decision_id if isinstance(decision_id, str) else None
        found_prev = record.get(PREV_HASH_FIELD)
        found_hash = record.get(HASH_FIELD)
        if not isinstance(found_prev, str) or not isinstance(found_hash, str):
            return ChainBreak(
                index,
                decision_id,
                "prev_hash and hash strings",
                repr((found_prev, found_hash)),
                "the record lacks its prev_hash or hash",
            )
        if index == 0:
            partition = record.get("partition")
        elif record.get("partition") != partition:
            return ChainBreak(
                index,
                decision_id,
                f"partition {partition}",
                f"partition {record.get('partition')}",
                "the record belongs to another partition's chain",
            )
        if expected_prev is not None and found_prev != expected_prev:
            why = (
                "the first record does not continue from the expected starting hash"
                if index == 0
                else "prev_hash does not match the previous record's hash: a decision was "
                "removed, inserted or reordered here"
            )
            return ChainBreak(index, decision_id, expected_prev, found_prev, why)
        try:
            recomputed = chain_hash(record, found_prev)
        except (TypeError, ValueError, UnicodeError) as exc:
            return ChainBreak(
                index,
                decision_id,
                "a hashable record",
                type(exc).__name__,
                f"the record cannot be canonicalized: {exc}",
            )
        if recomputed != found_hash:
            return ChainBreak(
                index,
                decision_id,
                recomputed,
                found_hash,
                "the record's content does not match its hash: a field was altered",
            )
        expected_prev = found_hash
    return None
