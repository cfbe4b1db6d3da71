"""The recipient's private key that signs its recall acknowledgements (contract §5).

:func:`resolve_ack_key` accepts an Ed25519 private key object, or the path of a PKCS#8 PEM file
holding one (unencrypted; refused when group or others can read it, as the gate's signing key).
The matching public key goes into the policy under ``recipients.<org>.ack_keys``.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streams.core.checkpoint import SigningKey, load_signing_key

AckKey = Ed25519PrivateKey | SigningKey | str | os.PathLike[str]
"""What may sign an ack: a private key, a :class:`~streams.core.checkpoint.SigningKey` or a path."""


def resolve_ack_key(key: AckKey) -> Ed25519PrivateKey:
    """Return the Ed25519 private key ``key`` is or names (``SigningKeyError`` if unusable)."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, SigningKey):
        return key.private_key
    return load_signing_key(key).private_key
