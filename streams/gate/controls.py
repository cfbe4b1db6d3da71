"""The controls topic as a global table of the gate: who is suspended, failing closed.

Every gate instance reads all of ``governance.controls`` (see
:mod:`streams.runtime.global_table`) into one :class:`~streams.core.controls.SuspensionRegistry`.
A control that cannot be decoded is not skipped: its recipient (the record's key) is held as if
suspended, and the gate is not ready, until a readable control for that recipient supersedes it
(the topic is compacted by recipient, so the operator's fix is to write the control again).

A control whose key is not its ``recipient_org`` (both compared in canonical form) is
dead-lettered ``MISROUTED`` and not applied (CONTRACT §3): compaction keeps the latest record
*per key*, so a SUSPEND under another key could be dropped by a later, unrelated control, and
the gate would then decide differently after a restart than before it.
"""

from __future__ import annotations

import logging

from streams import topics
from streams.core.controls import Suspension, SuspensionRegistry
from streams.core.model import canonical_recipient
from streams.errors import InvalidEventError, MisroutedError
from streams.runtime.records import RawInput
from streams.serde.wire import AvroCodec

log = logging.getLogger(__name__)


class ControlsTable:
    """Applies control records to a suspension registry (a global table handler)."""

    def __init__(self, codec: AvroCodec, physical_topic: str, registry: SuspensionRegistry) -> None:
        self.codec = codec
        self.physical_topic = physical_topic
        self.registry = registry
        self._broken: dict[str, str] = {}
        self._unattributed = 0
        self._misrouted: set[tuple[int, int]] = set()

    @property
    def whole(self) -> bool:
        """Whether every control read so far could be applied (or was superseded)."""
        return not self._broken and self._unattributed == 0

    def apply(self, raw: RawInput) -> bool:
        """Decode and apply one control; raises for an unreadable one (see the runtime)."""
        control = self.codec.decode(self.physical_topic, raw.value)
        problem = misrouted(raw.key, control.get("recipient_org"))
        if problem is not None:
            self._misrouted.add((raw.partition, raw.offset))
            raise MisroutedError(
                f"control {control.get('control_id')} ({control.get('kind')}): {problem}, so"
                " compaction could drop it; it is not applied",
                hint="key every control by its recipient_org (`consentinel recipients suspend`"
                " does), and write it again",
            )
        if not self.registry.apply(control):
            raise InvalidEventError(
                f"control {control.get('control_id')} has an unknown kind {control.get('kind')!r}",
                hint="write SUSPEND_RECIPIENT or RESUME_RECIPIENT for that recipient again",
            )
        recipient = canonical_recipient(control["recipient_org"])
        if self._broken.pop(recipient, None) is not None:
            log.info("control for %s readable again: %s applied", recipient, control["kind"])
        log.info("control %s: %s %s", control["control_id"], control["kind"], recipient)
        return True

    def broken(self, raw: RawInput, error: str) -> None:
        """Hold the control's recipient (fail closed) until a readable control replaces it.

        A misrouted control (see :func:`misrouted`) holds nobody: it is only dead-lettered.
        """
        if (raw.partition, raw.offset) in self._misrouted:
            self._misrouted.discard((raw.partition, raw.offset))
            log.error("misrouted control at %d/%d: dead-lettered", raw.partition, raw.offset)
            return
        recipient = raw.key.decode("utf-8", "replace") if raw.key else None
        if not recipient:
            self._unattributed += 1
            log.error(
                "unreadable control without a key at %s: the gate stays not ready", raw.offset
            )
            return
        recipient = canonical_recipient(recipient)
        self._broken[recipient] = error
        self.registry.hold(
            Suspension(
                recipient_org=recipient,
                control_id=f"unreadable-control@{topics.TOPIC_CONTROLS}/{raw.partition}/{raw.offset}",
                reason=f"an unreadable control ({error[:200]}): held until it is written again",
                actor="consentinel-gate",
                at_ms=raw.timestamp_ms,
            )
        )


def misrouted(key: bytes | None, recipient_org: object) -> str | None:
    """Return why a control keyed ``key`` naming ``recipient_org`` is misrouted, or ``None``.

    Both are compared in canonical form: key ``Acme-Vision`` for ``acme-vision`` is fine.
    """
    if not isinstance(recipient_org, str) or not canonical_recipient(recipient_org):
        return "it names no recipient_org"
    if key is None:
        return f"it has no key; it must be keyed by its recipient_org {recipient_org!r}"
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return f"its key is not UTF-8; it must be its recipient_org {recipient_org!r}"
    if canonical_recipient(text) != canonical_recipient(recipient_org):
        shown = text if len(text) <= 80 else text[:80] + "..."
        return f"its key {shown!r} is not its recipient_org {recipient_org!r}"
    return None
