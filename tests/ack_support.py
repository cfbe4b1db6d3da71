"""Fixed Ed25519 keys for recipients' signed recall acks in tests, and policies listing them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams.core.ack_signing import ack_key_id

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = REPO / "deploy" / "policy.example.yaml"


def fixed_key(seed: int) -> Ed25519PrivateKey:
    """Return a deterministic private key (tests only)."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def public_pem(key: Ed25519PrivateKey) -> str:
    """Return the PEM text of ``key``'s public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


ACK_KEY = fixed_key(7)
"""acme-vision's ack key in the tests' policies."""
ACK_PUBLIC_PEM = public_pem(ACK_KEY)
OTHER_KEY = fixed_key(9)
"""lovebird-partners' ack key in the tests' policies."""


def with_ack_keys(text: str, keys: dict[str, Ed25519PrivateKey] | None = None) -> str:
    """Return policy ``text`` with ``ack_keys`` under each named recipient (default: acme-vision
    with :data:`ACK_KEY`, lovebird-partners with :data:`OTHER_KEY`)."""
    keys = keys if keys is not None else {"acme-vision": ACK_KEY, "lovebird-partners": OTHER_KEY}
    lines = text.splitlines()
    out = []
    for line in lines:
        out.append(line)
        for org, key in keys.items():
            if line.rstrip().split("#")[0].strip() == f"{org}:" and line.startswith("  "):
                pem = public_pem(key).strip().splitlines()
                out.append("    ack_keys:")
                out.append("      - |")
                out.extend(f"        {row}" for row in pem)
    return "\n".join(out) + "\n"


def ack_keys_of(keys: dict[str, Ed25519PrivateKey]) -> Callable[[str], dict[str, bytes]]:
    """Return each recipient's ack keys (key id -> raw public key), as a policy lists them."""
    listed = {
        org: {
            ack_key_id(key.public_key()): key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        }
        for org, key in keys.items()
    }
    return lambda org: listed.get(org, {})
