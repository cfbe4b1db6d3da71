"""Verify one partition's decision chain against its signed checkpoints (pure; no Kafka).

:func:`audit_partition` takes what was read from one partition of ``governance.decisions``
(offset-ordered ``(offset, record)`` pairs, ``None`` for a record that could not be decoded) and
the ``ChainCheckpoint`` records of that partition, and returns a :class:`PartitionAudit` whose
``findings`` list every sign of tampering or loss, each a plain sentence:

- a record that cannot be decoded, or a broken hash link (:func:`streams.core.audit.verify_chain`);
- a checkpoint whose signature does not verify under the public key (forged, altered, or signed
  by another key); such a checkpoint is not relied on;
- a checkpointed decision that is missing (no record at its offset) or altered (another hash);
- a log that no longer starts where the checkpoints say: the checkpointed decision is not the
  ``decisions``-th of the log (records removed before it, or the partition rewritten from its first
  record with a recomputed chain), or lies before the log's first offset.

Without a key the checkpoints are still compared, but unauthenticated (``signatures_checked`` is
false), and a reader must be told that only the hashes were verified.

``from_checkpoint`` (retention): verification starts at a checkpointed decision instead of the
genesis, for logs whose early records are gone. That decision must carry the checkpointed hash;
earlier records and checkpoints are ignored. ``True`` picks the earliest trusted checkpoint still in
the log; a string picks the checkpoint with that ``checkpoint_id``.

With a key, a non-empty partition that no checkpoint signed by it covers is a finding: its log may
have been rewritten from the first record with a recomputed chain, and nothing could tell. Without
a key it is a note (the hashes only were verified).

Not detectable: decisions removed after the latest checkpoint (only the gate's next checkpoint
covers them, within the contract's 10 s while it runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.core.audit import GENESIS_HASH, ChainBreak, verify_chain
from streams.core.checkpoint import VerifyKey, checkpoint_problem

Record = Mapping[str, Any]


@dataclass(frozen=True)
class PartitionAudit:
    """The outcome of auditing one partition.

    Attributes:
        partition: The ``governance.decisions`` partition.
        decisions: How many decision records were read (decodable or not).
        first_offset: The log's first offset, or ``None`` if it is empty.
        first_break: The first broken hash link, if any.
        unreadable_offset: The offset of the first record that could not be decoded, if any.
        findings: Every sign of tampering or loss, in plain language (empty: intact).
        notes: What the reader should know that is not a finding (e.g. unsigned coverage).
        checkpoints_checked: How many checkpoints the log was compared against.
        signatures_checked: Whether checkpoint signatures were verified with a public key.
    """

    partition: int
    decisions: int
    first_offset: int | None
    first_break: ChainBreak | None
    unreadable_offset: int | None
    findings: tuple[str, ...]
    notes: tuple[str, ...]
    checkpoints_checked: int
    signatures_checked: bool

    @property
    def intact(self) -> bool:
        """Whether nothing suggests tampering or loss."""
        return not self.findings


def _describe(checkpoint: Record) -> str:
    return (
        f"checkpoint {checkpoint.get('checkpoint_id')!r} (offset {checkpoint.get('offset')},"
        f" decision #{checkpoint.get('decisions')})"
    )


def audit_partition(
    partition: int,
    records: Sequence[tuple[int, Record | None]],
    checkpoints: Sequence[Record],
    key: VerifyKey | None,
    *,
    from_checkpoint: bool | str = False,
) -> PartitionAudit:
    """Audit one partition's chain against its checkpoints; see the module doc."""
    findings: list[str] = []
    notes: list[str] = []
    unreadable = next((off for off, rec in records if rec is None), None)
    readable = [(off, rec) for off, rec in records if rec is not None]
    if unreadable is not None:
        findings.append(
            f"the record at offset {unreadable} cannot be decoded: the chain cannot be checked"
            " past it"
        )
        readable = [(off, rec) for off, rec in readable if off < unreadable]
    first_offset = records[0][0] if records else None

    trusted: list[Record] = []
    for checkpoint in checkpoints:
        problem = checkpoint_problem(checkpoint, key) if key is not None else None
        if problem is None and checkpoint.get("partition") != partition:
            problem = f"it is for partition {checkpoint.get('partition')}"
        if problem is not None:
            findings.append(f"{_describe(checkpoint)}: {problem}")
        else:
            trusted.append(checkpoint)
    trusted.sort(key=lambda c: (int(c["offset"]), int(c["decisions"])))
    index_of = {off: i for i, (off, _) in enumerate(readable)}

    start, base = 0, 0
    start_prev: str | None = GENESIS_HASH
    anchor_missing = False  # --from-checkpoint found nothing to start at (a finding already)
    if from_checkpoint is not False:
        anchor = _anchor(trusted, first_offset, from_checkpoint)
        if anchor is None and not records and not trusted:
            pass  # an empty partition never checkpointed: nothing to verify, nothing wrong
        elif anchor is None:
            wanted = "" if from_checkpoint is True else f" with id {from_checkpoint!r}"
            findings.append(f"no trusted checkpoint{wanted} lies within the log: nothing to verify")
            readable, trusted, anchor_missing = [], [], True
        else:
            trusted = [c for c in trusted if int(c["offset"]) >= int(anchor["offset"])]
            start = index_of.get(int(anchor["offset"]), len(readable))
            start_prev, base = None, int(anchor["decisions"]) - 1
            notes.append(f"verified from {_describe(anchor)}; earlier records not checked")

    chain = [rec for _, rec in readable[start:]]
    first_break = verify_chain(chain, start_prev_hash=start_prev) if chain else None
    if first_break is not None:
        findings.append(f"offset {readable[start + first_break.index][0]}: {first_break}")

    last_offset = readable[-1][0] if readable else None
    for checkpoint in trusted:
        offset, claimed = int(checkpoint["offset"]), int(checkpoint["decisions"])
        i = index_of.get(offset)
        if i is None or i < start:
            findings.append(_missing(checkpoint, offset, first_offset, last_offset))
            continue
        if readable[i][1].get("hash") != checkpoint.get("hash"):
            findings.append(
                f"{_describe(checkpoint)}: the decision at offset {offset} does not carry the"
                " checkpointed hash: it was altered, or the chain was rewritten and recomputed"
            )
            continue
        position = base + (i - start) + 1
        if position != claimed:
            findings.append(
                f"{_describe(checkpoint)}: the log no longer starts where the checkpoints say:"
                f" the decision at offset {offset} is number {position} of the log, the"
                f" checkpoint says number {claimed}"
            )

    if not trusted and records and not anchor_missing:
        if key is not None:
            findings.append(
                "no checkpoint signed by the verify key covers this non-empty partition: a"
                " partition rewritten from its first record with a recomputed chain would look"
                " the same (its checkpoints were removed, or the gate ran --unsigned or with"
                " another key)"
            )
        else:
            notes.append(
                "no trusted checkpoint covers this partition: only its hashes were verified"
            )
    elif trusted and last_offset is not None and last_offset > int(trusted[-1]["offset"]):
        tail = len(readable) - 1 - index_of.get(int(trusted[-1]["offset"]), len(readable) - 1)
        notes.append(f"{tail} decision(s) after the latest checkpoint are covered by hashes only")
    return PartitionAudit(
        partition=partition,
        decisions=len(records),
        first_offset=first_offset,
        first_break=first_break,
        unreadable_offset=unreadable,
        findings=tuple(findings),
        notes=tuple(notes),
        checkpoints_checked=len(trusted),
        signatures_checked=key is not None,
    )


def _anchor(trusted: list[Record], first_offset: int | None, wanted: bool | str) -> Record | None:
    """Return the checkpoint to verify from (see ``from_checkpoint``), or ``None``."""
    if isinstance(wanted, str):
        return next((c for c in trusted if c.get("checkpoint_id") == wanted), None)
    if first_offset is None:
        return None
    return next((c for c in trusted if int(c["offset"]) >= first_offset), None)


def _missing(
    checkpoint: Record, offset: int, first_offset: int | None, last_offset: int | None
) -> str:
    """Describe a checkpointed decision that is not in the log."""
    if first_offset is None or last_offset is None:
        return f"{_describe(checkpoint)}: the checkpointed decision is missing: the log is empty"
    if offset < first_offset:
        return (
            f"{_describe(checkpoint)}: the log no longer starts where the checkpoints say: it"
            f" starts at offset {first_offset}, after the checkpointed decision (removed; if"
            " retention removed it, verify with --from-checkpoint)"
        )
    if offset > last_offset:
        return (
            f"{_describe(checkpoint)}: the checkpointed decision is missing: the log ends at"
            f" offset {last_offset} (decisions removed, or the partition rewritten)"
        )
    return f"{_describe(checkpoint)}: the checkpointed decision is missing: no decision there"
