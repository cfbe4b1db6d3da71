"""The gate's Prometheus metrics (see the README's metric catalog).

Label values are bounded: verdicts, reasons and kinds are enums; ``recipient`` is a recipient named
in the policy or ``_unregistered`` — never a user, photo or free-text value.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from streams import topics
from streams.core.model import Reason, SubjectKind
from streams.runtime.metrics import runtime_metrics

UNREGISTERED_RECIPIENT = "_unregistered"

RUNTIME = runtime_metrics("consentinel_gate")
"""The runtime's series for the gate (transactions, batches, lag, restore, readiness, DLQ)."""
DEAD_LETTERS = RUNTIME.dead_letters
RESTORE_DURATION = RUNTIME.restore_duration
RESTORED_RECORDS = RUNTIME.restored_records
ASSIGNED_PARTITIONS = RUNTIME.assigned_partitions
READY = RUNTIME.ready
TRANSACTIONS = RUNTIME.transactions
BATCH_SIZE = RUNTIME.batch_size
CONSUMER_LAG = RUNTIME.consumer_lag

DECISIONS = Counter(
    "consentinel_gate_decisions_total",
    "Decisions written, by verdict, reason and subject kind.",
    ["verdict", "reason", "subject_kind"],
)
PHOTOS_OUT = Counter(
    "consentinel_gate_photos_out_total",
    "Photos allowed to leave (approved shares and allowed training reads), by recipient.",
    ["recipient", "subject_kind"],
)
DECISION_LATENCY = Histogram(
    "consentinel_gate_decision_latency_seconds",
    "Time from a request's occurred_at to its decision being committed.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RETROACTIVE_VIOLATIONS = Counter(
    "consentinel_gate_retroactive_violations_total",
    "Allowed requests later found to predate a consent withdrawal (alerts raised).",
)
SUSPENDED_RECIPIENTS = Gauge(
    "consentinel_gate_suspended_recipients", "Recipients currently suspended by a control."
)
POLICY_INFO = Gauge(
    "consentinel_gate_policy_info", "The policy version in force (value is always 1).", ["version"]
)
UNSIGNED = Gauge(
    "consentinel_gate_unsigned",
    "1 when the gate runs --unsigned (no signed chain checkpoints: a partition rewritten with a"
    " recomputed chain goes unnoticed), 0 when it signs its chain heads.",
)

_ALLOW_REASONS = ("CONSENTED", "NOT_CONSENT_BASED")
DEAD_LETTER_KINDS = (
    "UNDECODABLE_BYTES",
    "UNKNOWN_SCHEMA_ID",
    "SCHEMA_MISMATCH",
    "INVALID_EVENT",
    "UNKNOWN_ENUM_SYMBOL",
    "UNEXPECTED_TOPIC",
    "INPUT_TOO_LARGE",
    "OUTPUT_TOO_LARGE",
)
"""The error kinds the gate dead-letters input with (``ConsentinelError.error_kind``)."""


def initialise(recipients: Iterable[str]) -> None:
    """Create every bounded labelled series at 0, so panels show 0 and ``increase()`` sees 1.

    Idempotent. The (verdict, reason) pairs are the ones the rules can produce: ALLOW with the
    two allowing reasons, HOLD with ``RECIPIENT_SUSPENDED``, DENY with every other reason.
    """
    pairs = [("ALLOW", r) for r in _ALLOW_REASONS] + [("HOLD", "RECIPIENT_SUSPENDED")]
    pairs += [
        ("DENY", r.value)
        for r in Reason
        if r.value not in _ALLOW_REASONS and r is not Reason.RECIPIENT_SUSPENDED
    ]
    for verdict, reason in pairs:
        for kind in SubjectKind:
            DECISIONS.labels(verdict, reason, kind.value)
    for dead_letter_kind in DEAD_LETTER_KINDS:
        for topic in topics.INPUT_TOPICS:
            DEAD_LETTERS.labels(dead_letter_kind, topic)
    DEAD_LETTERS.labels("UNKNOWN_RECIPIENT", topics.TOPIC_CONSENT_CHANGES)
    DEAD_LETTERS.labels("MISROUTED", topics.TOPIC_CONTROLS)
    for outcome in ("committed", "aborted"):
        TRANSACTIONS.labels(outcome)
    for recipient in recipients:
        for kind in SubjectKind:
            PHOTOS_OUT.labels(recipient, kind.value)
