"""Which recipients are suspended, from the ``governance.controls`` stream.

Controls are applied in the order they were written (one partition, compacted by recipient): the
latest control for a recipient decides. Unknown control kinds change nothing and are reported.
Recipient ids are compared in canonical form (:func:`~streams.core.model.canonical_recipient`):
a control for ``Acme-Vision`` suspends ``acme-vision``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.core.governance import ControlKind
from streams.core.model import canonical_recipient


@dataclass(frozen=True, slots=True)
class Suspension:
    """A recipient's current suspension and the control that set it."""

    recipient_org: str
    control_id: str
    reason: str
    actor: str
    at_ms: int


class SuspensionRegistry:
    """The set of suspended recipients as of the controls applied so far."""

    def __init__(self) -> None:
        self._suspended: dict[str, Suspension] = {}

    def apply(self, control: dict[str, Any]) -> bool:
        """Apply one decoded ``Control`` record; return False if its kind is not understood."""
        recipient = canonical_recipient(control["recipient_org"])
        kind = control["kind"]
        if kind == ControlKind.SUSPEND_RECIPIENT:
            self._suspended[recipient] = Suspension(
                recipient_org=recipient,
                control_id=control["control_id"],
                reason=control.get("reason") or "",
                actor=control.get("actor") or "",
                at_ms=int(control["at"]),
            )
            return True
        if kind == ControlKind.RESUME_RECIPIENT:
            self._suspended.pop(recipient, None)
            return True
        return False

    def hold(self, suspension: Suspension) -> None:
        """Suspend a recipient without a control (fail closed on an unreadable one)."""
        self._suspended[canonical_recipient(suspension.recipient_org)] = suspension

    def suspension(self, recipient_org: str) -> Suspension | None:
        """Return the recipient's suspension, or None if it may receive data."""
        return self._suspended.get(recipient_org)

    def __len__(self) -> int:
        return len(self._suspended)
