"""Signed chain heads: keys, signatures, the emission policy, and the audit against them."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from streams.core.anchored import audit_partition
from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.checkpoint import (
    SIGNED_FIELDS,
    CheckpointPolicy,
    SigningKey,
    build_checkpoint,
    checkpoint_problem,
    generate_key_pair,
    load_signing_key,
    load_verify_key,
    signed_bytes,
    verify_checkpoint,
)
from streams.errors import ConfigError, SigningKeyError

T = 1_790_000_000_000
KEY = SigningKey.generate()
VERIFY = KEY.verify_key


# ---------------------------------------------------------------- keys and signatures


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    private, public, key_id = generate_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    signing = load_signing_key(private)
    verify = load_verify_key(public)
    assert signing.key_id == verify.key_id == key_id
    assert key_id.startswith("ed25519:") and len(key_id) == len("ed25519:") + 16
    checkpoint = build_checkpoint(signing, partition=0, offset=5, hash="ab", decisions=6, at_ms=T)
    assert verify_checkpoint(checkpoint, verify)


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    generate_key_pair(tmp_path)
    with pytest.raises(SigningKeyError, match="refusing to overwrite"):
        generate_key_pair(tmp_path)


def test_key_material_is_not_in_repr_or_errors(tmp_path: Path) -> None:
    private, _, _ = generate_key_pair(tmp_path)
    pem = private.read_text()
    body = "".join(pem.splitlines()[1:-1])
    key = load_signing_key(private)
    assert body not in repr(key) and "private_key" not in repr(key)
    assert key.key_id in repr(key)
    wrong = tmp_path / "wrong.pem"
    wrong.write_text(pem.replace(body[:10], "AAAAAAAAAA"))
    wrong.chmod(0o600)
    with pytest.raises(SigningKeyError) as caught:
        load_signing_key(wrong)
    assert body[10:30] not in str(caught.value)
    assert caught.value.__cause__ is None  # the parser's exception is not chained either


@pytest.mark.parametrize("loader", [load_signing_key, load_verify_key])
def test_key_errors_are_config_errors_naming_the_file(tmp_path: Path, loader: Any) -> None:
    with pytest.raises(SigningKeyError, match=r"absent\.pem") as caught:
        loader(tmp_path / "absent.pem")
    assert isinstance(caught.value, ConfigError) and "keygen" in str(caught.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(SigningKeyError, match=r"junk\.pem"):
        loader(junk)


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    ec = generate_private_key(SECP256R1())
    private = tmp_path / "ec.pem"
    private.write_bytes(
        ec.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public = tmp_path / "ec.pub.pem"
    public.write_bytes(
        ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519"):
        load_signing_key(private)
    with pytest.raises(SigningKeyError, match="not an Ed25519"):
        load_verify_key(public)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o660])
def test_a_signing_key_group_or_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    private, public, _ = generate_key_pair(tmp_path)
    pem = private.read_text()
    os.chmod(private, mode)
    with pytest.raises(SigningKeyError, match=f"mode {mode:o}") as refused:
        load_signing_key(private)
    message = str(refused.value)
    assert "CONSENTINEL_SIGNING_KEY" in message and "chmod 600" in message
    assert "".join(pem.splitlines()[1:-1])[:20] not in message
    os.chmod(private, 0o400)  # read-only by its owner is fine
    assert load_signing_key(private).key_id == load_verify_key(public).key_id


def test_a_verify_key_is_public_and_may_be_world_readable(tmp_path: Path) -> None:
    _, public, key_id = generate_key_pair(tmp_path)
    os.chmod(public, 0o644)
    assert load_verify_key(public).key_id == key_id


def test_signature_covers_every_other_field() -> None:
    checkpoint = build_checkpoint(
        KEY, partition=3, offset=41, hash="f" * 64, decisions=42, at_ms=T, checkpoint_id="c1"
    )
    assert set(checkpoint) == {*SIGNED_FIELDS, "signature"}
    assert checkpoint["key_id"] == KEY.key_id and len(checkpoint["signature"]) == 64
    assert checkpoint_problem(checkpoint, VERIFY) is None
    changes = {
        "checkpoint_id": "c2",
        "at": T + 1,
        "partition": 4,
        "offset": 40,
        "hash": "e" * 64,
        "decisions": 41,
        "key_id": "ed25519:0000000000000000",
    }
    for name, value in changes.items():
        altered = {**checkpoint, name: value}
        assert not verify_checkpoint(altered, VERIFY), name
    flipped = bytearray(checkpoint["signature"])
    flipped[0] ^= 1
    assert not verify_checkpoint({**checkpoint, "signature": bytes(flipped)}, VERIFY)


def test_signed_bytes_are_domain_separated_and_timestamp_agnostic() -> None:
    from datetime import UTC, datetime

    checkpoint = build_checkpoint(KEY, partition=0, offset=0, hash="a", decisions=1, at_ms=T)
    as_datetime = {**checkpoint, "at": datetime.fromtimestamp(T / 1000, tz=UTC)}
    assert signed_bytes(as_datetime) == signed_bytes(checkpoint)
    assert signed_bytes(checkpoint).startswith(b"consentinel.v1.ChainCheckpoint\n")
    assert verify_checkpoint(as_datetime, VERIFY)


def test_another_key_is_named_as_such() -> None:
    checkpoint = build_checkpoint(KEY, partition=0, offset=0, hash="a", decisions=1, at_ms=T)
    other = SigningKey.generate().verify_key
    problem = checkpoint_problem(checkpoint, other)
    assert problem is not None and "not by the verify key" in problem
    forged = {**checkpoint, "hash": "b"}
    problem = checkpoint_problem(forged, VERIFY)
    assert problem is not None and "forged or altered" in problem
    assert "malformed" in (checkpoint_problem({"signature": b""}, VERIFY) or "")
    assert "no signature" in (checkpoint_problem({**checkpoint, "signature": None}, VERIFY) or "")


def test_build_checkpoint_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        build_checkpoint(KEY, partition=0, offset=0, hash="a", decisions=0, at_ms=T)


# ---------------------------------------------------------------- when to emit


def test_checkpoint_policy_every_interval_while_deciding() -> None:
    policy = CheckpointPolicy()
    assert policy.interval_ms == 5_000
    assert not policy.due(0, 0, T)  # nothing decided yet
    assert policy.due(0, 1, T)  # first decision on this worker: sign at once
    policy.emitted(0, 1, T)
    assert not policy.due(0, 1, T + 60_000)  # idle: nothing new to sign
    assert not policy.due(0, 5, T + 4_999)
    assert policy.due(0, 5, T + 5_000)
    assert policy.due(1, 1, T)  # partitions are independent
    policy.emitted(0, 5, T + 5_000)
    policy.forget(0)
    assert policy.due(0, 5, T + 5_001)


def test_checkpoint_policy_interval_is_bounded_by_the_contract() -> None:
    with pytest.raises(ValueError):
        CheckpointPolicy(interval_ms=10_001)
    with pytest.raises(ValueError):
        CheckpointPolicy(interval_ms=0)


# ---------------------------------------------------------------- audit against checkpoints


def chain(
    n: int, partition: int = 0, start_offset: int = 0, tag: str = ""
) -> list[tuple[int, Any]]:
    """A valid chain of n decisions at offsets start_offset, +2, +4 (transaction markers)."""
    out: list[tuple[int, Any]] = []
    prev = GENESIS_HASH
    for i in range(n):
        record: dict[str, Any] = {
            "decision_id": f"d{i}{tag}",
            "partition": partition,
            "verdict": "DENY",
            "prev_hash": prev,
        }
        record["hash"] = chain_hash(record, prev)
        prev = record["hash"]
        out.append((start_offset + 2 * i, record))
    return out


def checkpoints_for(
    records: list[tuple[int, Any]], *indexes: int, key: SigningKey = KEY
) -> list[Any]:
    return [
        build_checkpoint(
            key,
            partition=records[i][1]["partition"],
            offset=records[i][0],
            hash=records[i][1]["hash"],
            decisions=i + 1,
            at_ms=T + i,
            checkpoint_id=f"cp{i}",
        )
        for i in indexes
    ]


def test_intact_chain_with_checkpoints() -> None:
    records = chain(10)
    audit = audit_partition(0, records, checkpoints_for(records, 3, 9), VERIFY)
    assert audit.intact, audit.findings
    assert audit.checkpoints_checked == 2 and audit.signatures_checked
    assert audit.decisions == 10 and audit.first_offset == 0


def test_tail_after_latest_checkpoint_is_noted() -> None:
    records = chain(10)
    audit = audit_partition(0, records, checkpoints_for(records, 3), VERIFY)
    assert audit.intact
    assert any("6 decision(s) after the latest checkpoint" in n for n in audit.notes)


def test_without_a_key_and_checkpoints_only_hashes_are_verified() -> None:
    audit = audit_partition(0, chain(4), [], None)
    assert audit.intact and any("only its hashes" in n for n in audit.notes)


def test_with_a_key_a_partition_no_checkpoint_covers_is_a_finding() -> None:
    # a partition rewritten from genesis with a recomputed chain, its checkpoints gone
    audit = audit_partition(0, chain(4, tag="forged"), [], VERIFY)
    assert not audit.intact
    assert any("no checkpoint signed by the verify key covers" in f for f in audit.findings)


def test_with_a_key_checkpoints_by_another_key_cover_nothing() -> None:
    records = chain(4)
    other = checkpoints_for(records, 3, key=SigningKey.generate())
    audit = audit_partition(0, records, other, VERIFY)
    assert any("no checkpoint signed by the verify key covers" in f for f in audit.findings)
    assert any("not by the verify key" in f for f in audit.findings)


def test_with_a_key_an_empty_unsigned_partition_is_intact() -> None:
    assert audit_partition(2, [], [], VERIFY).intact


def test_altered_checkpointed_decision() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5)
    offset, record = records[2]
    records[2] = (offset, {**record, "verdict": "ALLOW"})
    audit = audit_partition(0, records, cps, VERIFY)
    assert not audit.intact
    assert audit.first_break is not None and audit.first_break.decision_id == "d2"


def test_missing_checkpointed_decision_at_the_tail() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5)
    audit = audit_partition(0, records[:4], cps, VERIFY)
    assert not audit.intact
    assert any("is missing: the log ends at offset 6" in f for f in audit.findings)


def test_removed_decision_in_the_middle() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5)
    audit = audit_partition(0, records[:2] + records[3:], cps, VERIFY)
    assert not audit.intact
    assert (
        audit.first_break is not None and "removed, inserted or reordered" in audit.first_break.why
    )


def test_truncated_from_the_start() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 1, 5)
    audit = audit_partition(0, records[2:], cps, VERIFY)
    assert not audit.intact
    assert any("no longer starts where the checkpoints say" in f for f in audit.findings)


def test_rewritten_from_the_first_record_with_a_recomputed_chain() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5)
    forged = chain(6, tag="-forged")  # a valid chain, same offsets, other content
    audit = audit_partition(0, forged, cps, VERIFY)
    assert audit.first_break is None  # the hashes alone cannot see it
    assert not audit.intact
    assert any("does not carry the checkpointed hash" in f for f in audit.findings)


def test_rewritten_log_that_dropped_early_records_and_recomputed() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5)
    # drop d0,d1 and recompute a chain from genesis for the rest, placed at the same offsets
    shorter = chain(4, tag="-rewritten")
    moved = [(records[i + 2][0], shorter[i][1]) for i in range(4)]
    audit = audit_partition(0, moved, cps, VERIFY)
    assert not audit.intact


def test_same_records_fewer_decisions_before_is_a_moved_start() -> None:
    # the checkpointed record is there with its hash, but fewer decisions precede it than signed
    records = chain(6)
    cps = checkpoints_for(records, 5)
    cps[0] = build_checkpoint(
        KEY, partition=0, offset=10, hash=records[5][1]["hash"], decisions=9, at_ms=T
    )
    audit = audit_partition(0, records, cps, VERIFY)
    assert any("is number 6 of the log, the checkpoint says number 9" in f for f in audit.findings)


def test_forged_checkpoint_signature_is_a_finding_and_not_relied_on() -> None:
    records = chain(6)
    good = checkpoints_for(records, 2)
    forged = checkpoints_for(records, 5, key=SigningKey.generate())
    audit = audit_partition(0, records, good + forged, VERIFY)
    assert not audit.intact
    assert any("cp5" in f and "not by the verify key" in f for f in audit.findings)
    assert audit.checkpoints_checked == 1


def test_checkpoint_of_another_partition_is_a_finding() -> None:
    records = chain(3, partition=1)
    audit = audit_partition(0, chain(3), checkpoints_for(records, 2), VERIFY)
    assert any("for partition 1" in f for f in audit.findings)


def test_without_key_checkpoints_are_compared_unauthenticated() -> None:
    records = chain(6)
    cps = checkpoints_for(records, 5, key=SigningKey.generate())
    audit = audit_partition(0, records, cps, None)
    assert audit.intact and not audit.signatures_checked and audit.checkpoints_checked == 1
    rewritten = audit_partition(0, chain(6, tag="x"), cps, None)
    assert not rewritten.intact


def test_undecodable_record_is_a_finding() -> None:
    records: list[tuple[int, Any]] = chain(4)
    records[1] = (records[1][0], None)
    audit = audit_partition(0, records, [], VERIFY)
    assert not audit.intact and audit.unreadable_offset == 2
    assert any("cannot be decoded" in f for f in audit.findings)


def test_empty_log_with_checkpoints_is_missing_everything() -> None:
    cps = checkpoints_for(chain(3), 2)
    audit = audit_partition(0, [], cps, VERIFY)
    assert any("the log is empty" in f for f in audit.findings)


def test_from_checkpoint_verifies_a_log_whose_start_was_removed_by_retention() -> None:
    records = chain(10)
    cps = checkpoints_for(records, 1, 4, 9)
    kept = records[3:]  # retention removed d0..d2 (and the checkpointed d1)
    full = audit_partition(0, kept, cps, VERIFY)
    assert not full.intact
    audit = audit_partition(0, kept, cps, VERIFY, from_checkpoint=True)
    assert audit.intact, audit.findings
    assert audit.checkpoints_checked == 2
    assert any("verified from checkpoint 'cp4'" in n for n in audit.notes)
    by_id = audit_partition(0, kept, cps, VERIFY, from_checkpoint="cp9")
    assert by_id.intact and by_id.checkpoints_checked == 1


def test_from_checkpoint_still_catches_tampering_after_it() -> None:
    records = chain(10)
    cps = checkpoints_for(records, 4, 9)
    kept = records[3:]
    offset, record = kept[4]
    kept[4] = (offset, {**record, "verdict": "ALLOW"})
    assert not audit_partition(0, kept, cps, VERIFY, from_checkpoint=True).intact
    rewritten = [(off, rec) for (off, _), (_, rec) in zip(kept, chain(7, tag="r"), strict=True)]
    assert not audit_partition(0, rewritten, cps, VERIFY, from_checkpoint=True).intact


def test_from_checkpoint_without_a_usable_checkpoint_is_a_finding() -> None:
    records = chain(5)
    audit = audit_partition(0, records, [], VERIFY, from_checkpoint=True)
    assert any("nothing to verify" in f for f in audit.findings)
    audit = audit_partition(0, records, checkpoints_for(records, 2), VERIFY, from_checkpoint="x")
    assert any("with id 'x'" in f for f in audit.findings)


def test_from_checkpoint_on_an_empty_unsigned_partition_is_not_a_finding() -> None:
    assert audit_partition(1, [], [], VERIFY, from_checkpoint=True).intact
