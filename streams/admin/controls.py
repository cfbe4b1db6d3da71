"""Suspend or resume a recipient: ``Control`` records on ``governance.controls``.

:func:`control_record` builds a record (pure; detectors reuse it for auto-suspension);
:func:`issue_control` (and :func:`suspend_recipient` / :func:`resume_recipient`) write one, keyed
by the recipient, to the controls topic -- under ``CONSENTINEL_TOPIC_PREFIX`` through the SDK's
topic mapping -- and wait until Kafka acknowledged it. Every gate worker reads the whole topic and
applies the latest control per recipient: a suspended recipient's requests get ``HOLD`` /
``RECIPIENT_SUSPENDED`` until it is resumed.
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import uuid
from typing import TYPE_CHECKING, Any, Final

from streams.core.governance import ControlKind
from streams.core.times import iso_moment
from streams.errors import ConfigError, InvalidEventError
from streams.topics import TOPIC_CONTROLS

if TYPE_CHECKING:
    from streams.core.policy import Policy
    from streams.sdk.producer import ConsentinelProducer
    from streams.settings import Settings

SUSPEND: Final = ControlKind.SUSPEND_RECIPIENT.value
"""The control kind that makes the gate hold a recipient's requests."""

RESUME: Final = ControlKind.RESUME_RECIPIENT.value
"""The control kind that lifts a suspension."""

KINDS: Final = (SUSPEND, RESUME)

DEFAULT_RESUME_REASON: Final = "resumed by an operator"


def default_actor() -> str:
    """Return ``operator:<login>`` from ``$USER`` (or the login name; ``unknown`` if none)."""
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # no login name on this machine (e.g. a bare container)
            user = "unknown"
    return f"operator:{user}"


def control_record(
    kind: str, recipient: str, reason: str, actor: str, at_ms: int | None = None
) -> dict[str, Any]:
    """Return a ``Control`` record (schemas/control.avsc) with a fresh ``control_id``.

    Args:
        kind: ``SUSPEND_RECIPIENT`` or ``RESUME_RECIPIENT``.
        recipient: The ``recipient_org`` it applies to (also the message key).
        reason: Why, in plain language.
        actor: Who issues it, e.g. ``operator:alice`` or a detector's name.
        at_ms: When, in epoch milliseconds UTC (default: now).

    Raises:
        InvalidEventError: an unknown kind, or an empty recipient, reason or actor.
    """
    if kind not in KINDS:
        raise InvalidEventError(f"Control.kind has {kind!r}; allowed: {', '.join(KINDS)}")
    for name, value in (("recipient_org", recipient), ("reason", reason), ("actor", actor)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidEventError(f"Control.{name} must be a non-empty string")
    if at_ms is None:
        from streams.sdk.producer import now_millis

        at_ms = now_millis()
    return {
        "control_id": str(uuid.uuid4()),
        "at": int(at_ms),
        "kind": kind,
        "recipient_org": recipient,
        "reason": reason,
        "actor": actor,
    }


def check_recipient(recipient: str, policy: Policy) -> None:
    """Raise :class:`ConfigError` unless ``recipient`` is registered in ``policy``."""
    if policy.recipient(recipient) is not None:
        return
    known = sorted(policy.recipients)
    close = difflib.get_close_matches(recipient, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known recipients: {', '.join(known)}"
    raise ConfigError(f"recipient {recipient!r} is not in the policy {policy.source}", hint=hint)


def write_control(producer: ConsentinelProducer, record: dict[str, Any]) -> str:
    """Produce ``record`` keyed by its recipient to the controls topic and flush it.

    Returns:
        The topic actually written (the contract name under the producer's prefix).

    Raises:
        DeliveryError: Kafka did not acknowledge the record.
    """
    topic = producer.topic(TOPIC_CONTROLS)
    producer.produce(topic, record["recipient_org"], record, timestamp_ms=record["at"])
    producer.flush()
    return topic


def issue_control(
    kind: str,
    recipient: str,
    reason: str,
    *,
    actor: str | None = None,
    policy: Policy | None = None,
    settings: Settings | None = None,
    producer: ConsentinelProducer | None = None,
    at_ms: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """Build, check and write one control; return ``(topic written, record)``.

    With a ``policy``, a recipient it does not register is refused before anything is written.
    Without a ``producer``, one is made from ``settings`` (default: the environment).

    Raises:
        ConfigError: the recipient is not in ``policy``.
        InvalidEventError: see :func:`control_record`.
        DeliveryError: Kafka did not acknowledge the record.
    """
    record = control_record(kind, recipient, reason, actor or default_actor(), at_ms)
    if policy is not None:
        check_recipient(recipient, policy)
    if producer is None:
        from streams.sdk.producer import ConsentinelProducer

        producer = ConsentinelProducer(settings, source="consentinel-controls")
    return write_control(producer, record), record


def suspend_recipient(
    recipient: str,
    reason: str,
    *,
    actor: str | None = None,
    policy: Policy | None = None,
    settings: Settings | None = None,
    producer: ConsentinelProducer | None = None,
) -> tuple[str, dict[str, Any]]:
    """Write a ``SUSPEND_RECIPIENT`` control; see :func:`issue_control`."""
    return issue_control(
        SUSPEND,
        recipient,
        reason,
        actor=actor,
        policy=policy,
        settings=settings,
        producer=producer,
    )


def resume_recipient(
    recipient: str,
    reason: str = DEFAULT_RESUME_REASON,
    *,
    actor: str | None = None,
    policy: Policy | None = None,
    settings: Settings | None = None,
    producer: ConsentinelProducer | None = None,
) -> tuple[str, dict[str, Any]]:
    """Write a ``RESUME_RECIPIENT`` control; see :func:`issue_control`."""
    return issue_control(
        RESUME,
        recipient,
        reason,
        actor=actor,
        policy=policy,
        settings=settings,
        producer=producer,
    )


def describe_control(topic: str, record: dict[str, Any]) -> str:
    """Return what was written, for an operator: a summary line and the record as JSON."""
    effect = (
        "its shares and training reads now get HOLD (RECIPIENT_SUSPENDED)"
        if record["kind"] == SUSPEND
        else "its requests are decided normally again"
    )
    return (
        f"{record['kind']} {record['recipient_org']} written to {topic} "
        f"(key {record['recipient_org']!r}) at {iso_moment(record['at'])} "
        f"by {record['actor']}: {effect} once each gate reads it (seconds).\n"
        + json.dumps(record, sort_keys=True)
    )
