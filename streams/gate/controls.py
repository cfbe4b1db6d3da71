"""The controls topic as a global table of the gate: who is suspended, failing closed.

Every gate instance reads all of ``governance.controls`` (see
:mod:`streams.runtime.global_table`) into one :class:`~streams.core.controls.SuspensionRegistry`.
A control that cannot be decoded is not skipped: its recipient (the record's key) is held as if
suspended, and the gate is not ready, until a readable control for that recipient supersedes it
(the topic is compacted by recipient, so the operator's fix is to write the control again).
"""

from __future__ import annotations

import logging

from streams import topics
from streams.core.controls import Suspension, SuspensionRegistry
from streams.errors import InvalidEventError
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

    @property
    def whole(self) -> bool:
        """Whether every control read so far could be applied (or was superseded)."""
        return not self._broken and self._unattributed == 0

    def apply(self, raw: RawInput) -> bool:
        """Decode and apply one control; raises for an unreadable one (see the runtime)."""
        control = self.codec.decode(self.physical_topic, raw.value)
        if not self.registry.apply(control):
            raise InvalidEventError(
                f"control {control.get('control_id')} has an unknown kind {control.get('kind')!r}",
                hint="write SUSPEND_RECIPIENT or RESUME_RECIPIENT for that recipient again",
            )
        recipient = control["recipient_org"]
        if self._broken.pop(recipient, None) is not None:
            log.info("control for %s readable again: %s applied", recipient, control["kind"])
        log.info("control %s: %s %s", control["control_id"], control["kind"], recipient)
        return True

    def broken(self, raw: RawInput, error: str) -> None:
        """Hold the control's recipient (fail closed) until a readable control replaces it."""
        recipient = raw.key.decode("utf-8", "replace") if raw.key else None
        if not recipient:
            self._unattributed += 1
            log.error(
                "unreadable control without a key at %s: the gate stays not ready", raw.offset
            )
            return
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
