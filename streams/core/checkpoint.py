"""Signed chain heads (``ChainCheckpoint``, topic ``governance.checkpoints``; contract section 6).

A hash chain shows that records were altered, removed or reordered, but not that the *whole*
partition was rewritten with a recomputed chain. The gate therefore signs its chain heads with an
Ed25519 key only it holds: a checkpoint says "on partition P, the decision at offset O has hash H
and is the N-th of the chain". ``consentinel audit verify`` checks the log against them with the
public key (see :mod:`streams.core.anchored`).

**What is signed.** :func:`signed_bytes`: the ASCII domain tag :data:`SIGNING_DOMAIN`, a newline,
then the JSON of every field but ``signature`` (``checkpoint_id, at, partition, offset, hash,
decisions, key_id``) with sorted keys, no whitespace, timestamps as integer epoch milliseconds. The
tag keeps a checkpoint signature from being valid for any other message signed with the same key.

**Keys.** The private key is a PKCS#8 PEM file (``CONSENTINEL_SIGNING_KEY``), the public key a
SubjectPublicKeyInfo PEM file (``CONSENTINEL_VERIFY_KEY``); :func:`generate_key_pair` writes both
(``consentinel audit keygen``). ``key_id`` is :func:`key_fingerprint` of the public key, so a
verifier can tell "signed by another key" (rotation) from "forged". Key material never appears in
a message, ``repr`` or log line: only paths and fingerprints do.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.core.times import to_millis
from streams.errors import SigningKeyError
from streams.secretfile import refuse_shared_secret_file

SIGNING_DOMAIN = b"consentinel.v1.ChainCheckpoint"
"""Prefix of every signed message (domain separation)."""

SIGNED_FIELDS = ("checkpoint_id", "at", "partition", "offset", "hash", "decisions", "key_id")
"""The fields a checkpoint's signature covers: every field of the record but ``signature``."""

CHECKPOINT_INTERVAL_MS = 10_000
"""The contract's bound: a deciding gate signs each partition's head at least this often."""

PRIVATE_KEY_FILE = "consentinel-signing.pem"
PUBLIC_KEY_FILE = "consentinel-verify.pem"


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """Return ``ed25519:`` + the first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class VerifyKey:
    """A public Ed25519 key and its ``key_id``; checks signatures."""

    public_key: Ed25519PublicKey = field(repr=False)
    key_id: str

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's valid signature of ``message``."""
        try:
            self.public_key.verify(signature, message)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key and its ``key_id`` (the fingerprint of its public half).

    Its ``repr`` shows the ``key_id`` only.
    """

    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> SigningKey:
        """Wrap ``private_key``, computing its ``key_id``."""
        return cls(private_key, key_fingerprint(private_key.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a fresh random key (tests, :func:`generate_key_pair`)."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    @property
    def verify_key(self) -> VerifyKey:
        """The matching public key."""
        return VerifyKey(self.private_key.public_key(), self.key_id)


def _read_pem(path: str | os.PathLike[str], what: str, setting: str) -> bytes:
    """Return a key file's bytes, or raise a ``SigningKeyError`` naming it (not its content)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the {what} at {os.fspath(path)}: {exc.strerror or type(exc).__name__}",
            hint=f"set {setting} to the file `consentinel audit keygen --out DIR` wrote",
        ) from None


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """Load the gate's private key (PKCS#8 PEM, unencrypted Ed25519) from ``path``.

    Like ssh, it refuses a key file readable (or writable) by its group or by others.

    Raises:
        SigningKeyError: the file is missing, unreadable, accessible by group or others, or not
            an Ed25519 private key.
    """
    refuse_shared_secret_file(
        Path(path),
        "CONSENTINEL_SIGNING_KEY",
        "the gate's private signing key",
        error=SigningKeyError,
        hint=f"run `chmod 600 {os.fspath(path)}`; if others could read it, make a new pair with"
        " `consentinel audit keygen` and give auditors the new verify key",
    )
    data = _read_pem(path, "signing key", "CONSENTINEL_SIGNING_KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"{os.fspath(path)} is not an unencrypted PEM private key ({type(exc).__name__})",
            hint="generate one with `consentinel audit keygen --out DIR`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"{os.fspath(path)} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519"
            " private key",
            hint="generate one with `consentinel audit keygen --out DIR`",
        )
    return SigningKey.from_private_key(key)


def load_verify_key(path: str | os.PathLike[str]) -> VerifyKey:
    """Load the public key ``audit verify`` checks signatures with (SubjectPublicKeyInfo PEM).

    Raises:
        SigningKeyError: the file is missing, unreadable, or not an Ed25519 public key.
    """
    data = _read_pem(path, "verify key", "CONSENTINEL_VERIFY_KEY")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(
            f"{os.fspath(path)} is not a PEM public key ({type(exc).__name__})",
            hint=f"use the {PUBLIC_KEY_FILE} written by `consentinel audit keygen`",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(
            f"{os.fspath(path)} is not an Ed25519 public key",
            hint=f"use the {PUBLIC_KEY_FILE} written by `consentinel audit keygen`",
        )
    return VerifyKey(key, key_fingerprint(key))


def generate_key_pair(out_dir: str | os.PathLike[str]) -> tuple[Path, Path, str]:
    """Write a new key pair into ``out_dir``; return ``(private path, public path, key_id)``.

    The private key file is created with mode 0600 (never readable by others, even briefly);
    existing files are never overwritten.

    Raises:
        SigningKeyError: a key file already exists there, or the directory is not writable.
    """
    directory = Path(out_dir)
    key = SigningKey.generate()
    private_pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path in (private_path, public_path):
            if path.exists():
                raise FileExistsError(17, "exists", str(path))
        for path, data, mode in (
            (private_path, private_pem, 0o600),
            (public_path, public_pem, 0o644),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(path, mode)  # the umask may have narrowed it; never widen the private key
    except FileExistsError as exc:
        raise SigningKeyError(
            f"{exc.filename} already exists: refusing to overwrite a key",
            hint="choose another --out directory, or move the old keys away first",
        ) from None
    except OSError as exc:
        raise SigningKeyError(
            f"cannot write keys into {directory}: {exc.strerror or type(exc).__name__}"
        ) from None
    return private_path, public_path, key.key_id


def _millis(value: Any) -> Any:
    """Return a timestamp as epoch milliseconds (``datetime`` or ``int``)."""
    return to_millis(value) if isinstance(value, datetime) else value


def signed_bytes(checkpoint: Mapping[str, Any]) -> bytes:
    """Return the exact bytes a checkpoint's signature covers (see the module doc).

    Raises:
        KeyError: a signed field is missing.
    """
    content = {name: _millis(checkpoint[name]) for name in SIGNED_FIELDS}
    body = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SIGNING_DOMAIN + b"\n" + body.encode("utf-8")


def build_checkpoint(
    key: SigningKey,
    *,
    partition: int,
    offset: int,
    hash: str,
    decisions: int,
    at_ms: int,
    checkpoint_id: str | None = None,
) -> dict[str, Any]:
    """Return a signed ``ChainCheckpoint`` record for one partition's chain head.

    Args:
        key: The gate's signing key.
        partition: The ``governance.decisions`` partition.
        offset: The offset there of the decision whose hash is the head.
        hash: That decision's ``hash``.
        decisions: How many decisions the partition's chain holds up to and including it.
        at_ms: When it is signed (epoch milliseconds).
        checkpoint_id: Defaults to a fresh UUID.

    The gate writes it to ``governance.checkpoints`` with the key ``str(partition)``, in the same
    transaction as (or after) the decisions it covers, never before.
    """
    if partition < 0 or offset < 0 or decisions < 1:
        raise ValueError("partition and offset must be >= 0 and decisions >= 1")
    record: dict[str, Any] = {
        "checkpoint_id": checkpoint_id or str(uuid.uuid4()),
        "at": at_ms,
        "partition": partition,
        "offset": offset,
        "hash": hash,
        "decisions": decisions,
        "key_id": key.key_id,
    }
    record["signature"] = key.sign(signed_bytes(record))
    return record


def checkpoint_problem(checkpoint: Mapping[str, Any], key: VerifyKey) -> str | None:
    """Return why ``checkpoint``'s signature does not hold under ``key``, or ``None`` if it does."""
    try:
        message = signed_bytes(checkpoint)
    except (KeyError, TypeError, ValueError) as exc:
        return f"the checkpoint is malformed ({type(exc).__name__}: {exc})"
    signature = checkpoint.get("signature")
    if not isinstance(signature, bytes):
        return "the checkpoint has no signature"
    if key.verify(message, signature):
        return None
    if checkpoint.get("key_id") != key.key_id:
        return (
            f"signed by key {checkpoint.get('key_id')!r}, not by the verify key {key.key_id}"
            " (a rotated key, or a forgery)"
        )
    return "the signature does not match its content: the checkpoint was forged or altered"


def verify_checkpoint(checkpoint: Mapping[str, Any], key: VerifyKey) -> bool:
    """Return whether ``checkpoint`` carries a valid signature by ``key``."""
    return checkpoint_problem(checkpoint, key) is None


class CheckpointPolicy:
    """Says when the gate must sign a partition's chain head (at least every 10 s while deciding).

    Call :meth:`due` whenever the gate could write one (at each transaction commit, and on idle
    polls: a partition that decided once and then went quiet must still get its checkpoint), and
    :meth:`emitted` once it is written. A checkpoint is due when the partition's chain grew since
    the last checkpoint and either none was written yet by this worker or ``interval_ms`` passed.
    With the default interval (half the contract's 10 s) and calls at least every 5 s, every
    decision is covered by a signed head within 10 s of being written. Call :meth:`forget` when a
    partition is revoked.
    """

    def __init__(self, interval_ms: int = CHECKPOINT_INTERVAL_MS // 2) -> None:
        if not 0 < interval_ms <= CHECKPOINT_INTERVAL_MS:
            raise ValueError(f"interval_ms must be in (0, {CHECKPOINT_INTERVAL_MS}]")
        self.interval_ms = interval_ms
        self._last: dict[int, tuple[int, int]] = {}  # partition -> (decisions, at_ms)

    def due(self, partition: int, decisions: int, now_ms: int) -> bool:
        """Whether the head of ``partition`` (``decisions`` in its chain) must be signed now."""
        last = self._last.get(partition)
        if last is None:
            return decisions > 0
        return decisions > last[0] and now_ms - last[1] >= self.interval_ms

    def emitted(self, partition: int, decisions: int, now_ms: int) -> None:
        """Record that a checkpoint of ``partition`` at ``decisions`` was written at ``now_ms``."""
        self._last[partition] = (decisions, now_ms)

    def forget(self, partition: int) -> None:
        """Drop what is known of ``partition`` (revoked from this worker)."""
        self._last.pop(partition, None)
