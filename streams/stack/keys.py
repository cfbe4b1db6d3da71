"""The local stack's key pair for signed chain heads (contract section 6).

The gate refuses to start without ``CONSENTINEL_SIGNING_KEY``; on a developer's machine
``consentinel stack up`` makes one pair under the stack home (``keys/``, the directory mode 0700,
the private key 0600) with :func:`streams.core.checkpoint.generate_key_pair` (what ``consentinel
audit keygen`` writes), and ``consentinel demo`` runs its gate with it. An existing pair is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from streams.core.checkpoint import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_key_pair
from streams.errors import StackError


def key_paths(home: Path) -> tuple[Path, Path]:
    """Return ``(signing key, verify key)`` paths of the stack at ``home``."""
    directory = home.expanduser() / "keys"
    return directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE


def ensure_key_pair(home: Path, *, say: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Return the stack's key pair, making it first if there is none.

    Raises:
        StackError: only one of the two files exists (a half pair is never completed silently).
        SigningKeyError: the directory is not writable.
    """
    private, public = key_paths(home)
    if private.exists() and public.exists():
        return private, public
    if private.exists() or public.exists():
        raise StackError(
            f"{private.parent} holds half a key pair ({'signing' if private.exists() else 'verify'}"
            " key only)",
            hint=f"move {private.parent} away; `consentinel stack up` then makes a new pair",
        )
    private.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(private.parent, 0o700)
    _, _, key_id = generate_key_pair(private.parent)
    say(
        f"signing keys: a new local pair ({key_id}): CONSENTINEL_SIGNING_KEY={private}"
        f"  CONSENTINEL_VERIFY_KEY={public}"
    )
    return private, public
