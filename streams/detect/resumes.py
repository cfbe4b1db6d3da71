"""The controls topic as a global table of the detectors: which recipients an operator resumed.

A ``RESUME_RECIPIENT`` ends a ``BULK_EXPORT`` episode (contract §5): the detector that counts the
recipient (stage 2, the partition of the recipient's key) applies it at its next punctuation,
within a second, in a transaction with its state, and raises a new alert and suspension if the
recipient is still above its limit
(:meth:`~streams.detect.core.bulk_export.BulkExportDetector.resume`).
Each resume applies once: the recipient's state keeps the id of the last one applied, so reading
the (compacted) topic again after a restart changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from streams.core.governance import ControlKind
from streams.runtime.records import RawInput
from streams.serde.wire import AvroCodec

log = logging.getLogger(__name__)


class ResumesTable:
    """Keeps the latest ``RESUME_RECIPIENT`` per recipient not yet looked at (a table handler)."""

    def __init__(self, codec: AvroCodec, physical_topic: str) -> None:
        self.codec = codec
        self.physical_topic = physical_topic
        self.pending: dict[str, tuple[str, int]] = {}
        """Recipient → (control id, issued at ms) of a resume to apply."""

    @property
    def whole(self) -> bool:
        """Always: an unreadable control holds nothing here (the gate fails closed on it)."""
        return True

    def apply(self, raw: RawInput) -> bool:
        """Note a resume; other controls change nothing here."""
        control = self.codec.decode(self.physical_topic, raw.value)
        if control.get("kind") != ControlKind.RESUME_RECIPIENT:
            return False
        recipient = control["recipient_org"]
        self.pending[recipient] = (str(control["control_id"]), int(control["at"]))
        return True

    def broken(self, raw: RawInput, error: str) -> None:
        """Log an unreadable control (the runtime dead-letters it)."""
        log.warning(
            "unreadable control at offset %s ignored by the detector: %s", raw.offset, error
        )

    def take(self, owns: Callable[[str], bool]) -> list[tuple[str, str, int]]:
        """Remove and return the resumes of the recipients ``owns(recipient)`` accepts."""
        taken = [(org, cid, at) for org, (cid, at) in self.pending.items() if owns(org)]
        for org, _, _ in taken:
            del self.pending[org]
        return taken
