"""Refuse secret files that anyone but their owner may read, as ssh refuses such private keys.

A private key or a password file readable by its group or by others has leaked already, or will:
every process of that group (or on the machine) can copy it. Consentinel refuses to load one and
says how to fix it (``chmod 600``), so the mistake is caught at start-up, not in an incident review.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from streams.errors import ConfigError


def refuse_shared_secret_file(
    path: Path,
    setting: str,
    holds: str,
    *,
    error: type[ConfigError] = ConfigError,
    hint: str | None = None,
) -> None:
    """Raise ``error`` if the file at ``path`` is readable (or writable) by group or others.

    The mode is that of the file a symbolic link points to (a Kubernetes secret volume's files are
    links). A missing file passes (the caller reports it when it reads it). The message names the
    file, the setting and the mode, never the content.

    Args:
        path: The secret file.
        setting: Where it was configured (an environment variable or a flag), for the message.
        holds: What it holds, in words ("Kafka passwords", "the gate's signing key").
        error: The :class:`ConfigError` subclass to raise.
        hint: What to do; default: ``chmod 600 <path>`` and rotate the secret.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(
            f"cannot inspect {setting} file {os.fspath(path)}: {exc.strerror or type(exc).__name__}"
        ) from None
    if mode & 0o077:
        shown = os.fspath(path)
        raise error(
            f"{shown} ({setting}) is readable by others or by its group (mode {mode:o});"
            f" it holds {holds}, so it is refused, as ssh refuses such keys",
            hint=hint
            or f"run `chmod 600 {os.fspath(path)}`, and rotate it if others could read it",
        )
