"""The canonical signing form of a recall ack, its key id, and ``ack_keys`` in the policy."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from streams.core.ack_signing import (
    ack_key_id,
    ack_problem,
    ack_signing_bytes,
    parse_ack_key,
    raw_public_key,
    sign_ack,
)
from streams.core.policy import parse_policy
from streams.errors import PolicyError
from tests.ack_support import ACK_KEY, EXAMPLE_POLICY, OTHER_KEY, public_pem, with_ack_keys

RECORD = {
    "order_id": "o-1",
    "recipient_org": "acme-vision",
    "acknowledged_at": 1_764_000_000_000,
    "deleted_photo_ids": ["p-2", "p-1"],
    "purged_model_ids": ["m-1"],
    "evidence": "https://dpa.example/é",
    "key_id": "0123456789abcdef",
}


def test_the_signing_form_is_the_documented_bytes() -> None:
    assert ack_signing_bytes(RECORD) == (
        b"consentinel.v1.RecallAcknowledged\n"
        b'{"acknowledged_at":1764000000000,"deleted_photo_ids":["p-2","p-1"],'
        b'"evidence":"https://dpa.example/\xc3\xa9","key_id":"0123456789abcdef",'
        b'"order_id":"o-1","purged_model_ids":["m-1"],"recipient_org":"acme-vision"}'
    )
    assert ack_signing_bytes({**RECORD, "signature": b"x"}) == ack_signing_bytes(RECORD)


def test_key_id_is_the_first_16_hex_of_sha256_of_the_raw_key() -> None:
    raw = raw_public_key(ACK_KEY.public_key())
    assert len(raw) == 32
    assert ack_key_id(ACK_KEY.public_key()) == hashlib.sha256(raw).hexdigest()[:16]
    assert parse_ack_key(public_pem(ACK_KEY)) == (ack_key_id(raw), raw)


def test_any_change_to_a_signed_field_breaks_the_signature() -> None:
    signed = sign_ack(RECORD, ACK_KEY)
    keys = dict([parse_ack_key(public_pem(ACK_KEY))])
    assert ack_problem(signed, keys) is None
    for name, value in [
        ("order_id", "o-2"),
        ("recipient_org", "lovebird-partners"),
        ("acknowledged_at", 1),
        ("deleted_photo_ids", ["p-1", "p-2"]),
        ("purged_model_ids", []),
        ("evidence", "x"),
    ]:
        assert "does not verify" in (ack_problem({**signed, name: value}, keys) or ""), name
    assert "not one of" in (ack_problem(sign_ack(RECORD, OTHER_KEY), keys) or "")
    assert "not signed" in (ack_problem(RECORD, keys) or "")
    assert "no ack_keys" in (ack_problem(signed, {}) or "")


def test_the_policy_reads_ack_keys_and_refuses_what_is_not_an_ed25519_pem() -> None:
    policy = parse_policy(with_ack_keys(EXAMPLE_POLICY.read_text()))
    assert dict(policy.recipients["acme-vision"].ack_keys) == dict(
        [parse_ack_key(public_pem(ACK_KEY))]
    )
    assert dict(policy.recipients["photo-cdn"].ack_keys) == {}
    text = EXAMPLE_POLICY.read_text()
    bad = text.replace(
        "    recall_within_days: 14", "    recall_within_days: 14\n    ack_keys: [not-a-key]"
    )
    with pytest.raises(PolicyError, match=r":\d+:\d+: recipients.acme-vision.ack_keys: not a PEM"):
        parse_policy(bad)
    ecdsa = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    block = "\n".join("        " + line for line in ecdsa.strip().splitlines())
    wrong = text.replace(
        "    recall_within_days: 14",
        f"    recall_within_days: 14\n    ack_keys:\n      - |\n{block}",
    )
    with pytest.raises(PolicyError, match="not an Ed25519 public key"):
        parse_policy(wrong)
