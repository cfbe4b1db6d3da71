"""The detector's Prometheus metrics (the dashboards and alert rules depend on these names).

Label values are bounded: ``kind``, ``severity`` and ``subject_kind`` are enum symbols;
``recipient`` is a recipient named in the policy or :data:`UNREGISTERED_RECIPIENT` (see
:func:`recipient_label`) — never a user, photo, job or free-text value.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Gauge, Histogram

from streams import topics
from streams.runtime.metrics import runtime_metrics

UNREGISTERED_RECIPIENT = "_unregistered"
"""The ``recipient`` label of every recipient the policy does not name."""

ALERTS = Counter(
    "consentinel_detector_alerts_total",
    "Alerts raised (one per episode; updates of an alert are not counted), by kind and severity.",
    ["kind", "severity"],
)
ALERT_UPDATES = Counter(
    "consentinel_detector_alert_updates_total",
    "Updates of an already raised alert (same alert_id, refreshed counts), by kind.",
    ["kind"],
)
RECIPIENT_PHOTOS_LAST_HOUR = Gauge(
    "consentinel_detector_recipient_photos_last_hour",
    "Photos allowed to leave to the recipient in the sliding hour ending at its latest event.",
    ["recipient"],
)
RECIPIENT_LIMIT = Gauge(
    "consentinel_detector_recipient_limit_photos_per_hour",
    "The policy's bulk_export.max_photos_per_hour for the recipient (absent when it has none).",
    ["recipient"],
)
RECIPIENT_BASELINE = Gauge(
    "consentinel_detector_recipient_baseline_photos_per_hour",
    "The recipient's learned normal hourly volume around this hour of day (NaN while warming up).",
    ["recipient"],
)
RECIPIENT_THRESHOLD = Gauge(
    "consentinel_detector_recipient_threshold_photos_per_hour",
    "The hourly volume above which a BULK_EXPORT alert is raised now (the lower of the static"
    " limit and the learned threshold).",
    ["recipient"],
)
SUSPENSIONS = Counter(
    "consentinel_detector_suspensions_total",
    "SUSPEND_RECIPIENT controls written by the detector, by recipient.",
    ["recipient"],
)
DECISIONS_CONSUMED = Counter(
    "consentinel_detector_decisions_consumed_total",
    "Decision records read from governance.decisions.",
)
EPISODE_ACTIVE = Gauge(
    "consentinel_detector_episode_active",
    "Episodes currently active (alert raised, volume not yet back below the re-arm level), by"
    " alert kind and subject kind (recipient, requester, job).",
    ["kind", "subject_kind"],
)
EVENT_LAG = Gauge(
    "consentinel_detector_event_lag_seconds",
    "Wall-clock time minus the event time of the latest decision processed.",
)
DETECTION_LATENCY = Histogram(
    "consentinel_detector_alert_latency_seconds",
    "Wall-clock time from the crossing event's decision (decided_at) to the alert being produced.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
RECALL_ORDERS = Gauge(
    "consentinel_detector_recall_orders",
    "Recall orders not fully acknowledged, by recipient and state (open, or overdue: past due_at).",
    ["recipient", "state"],
)
RUNTIME = runtime_metrics("consentinel_detector")
"""The runtime's series for the detectors (transactions, batches, lag, restore, readiness, DLQ)."""
DEAD_LETTERS = RUNTIME.dead_letters
READY = RUNTIME.ready


#: The ``(kind, severity)`` pairs the detectors raise (bulk_export.py, denied_burst.py,
#: unconsented_training.py); RETROACTIVE_VIOLATION is raised by the gate, not here.
RAISED: tuple[tuple[str, str], ...] = (
    ("BULK_EXPORT", "WARNING"),
    ("BULK_EXPORT", "CRITICAL"),
    ("DENIED_BURST", "WARNING"),
    ("UNCONSENTED_TRAINING", "CRITICAL"),
    ("RECALL_OVERDUE", "CRITICAL"),
)
#: The ``(kind, subject_kind)`` pairs of :data:`EPISODE_ACTIVE`.
EPISODES: tuple[tuple[str, str], ...] = (
    ("BULK_EXPORT", "recipient"),
    ("DENIED_BURST", "recipient"),
    ("DENIED_BURST", "requester"),
)
#: The ``error_kind`` of a decision record the detector cannot decode or use.
DEAD_LETTER_KINDS: tuple[str, ...] = (
    "UNDECODABLE_BYTES",
    "UNKNOWN_SCHEMA_ID",
    "SCHEMA_MISMATCH",
    "INVALID_EVENT",
    "UNKNOWN_ENUM_SYMBOL",
)


def initialise(limited_recipients: Collection[str]) -> None:
    """Create every bounded labelled series at 0, so that it exists before its first event.

    Without this a counter appears only at its first increment: its panel says "No data" until
    then, and ``increase()`` cannot see that first increment. Gauges that carry a recipient's
    window state (photos in the last hour, baseline, threshold) are *not* created here: a
    restarted detector would show 0 until the recipient's next decision. Idempotent.
    """
    for kind, severity in RAISED:
        ALERTS.labels(kind, severity)
    for kind in dict.fromkeys(kind for kind, _ in RAISED):
        ALERT_UPDATES.labels(kind)
    for kind, subject_kind in EPISODES:
        EPISODE_ACTIVE.labels(kind, subject_kind)
    for kind in DEAD_LETTER_KINDS:
        DEAD_LETTERS.labels(kind, topics.TOPIC_DECISIONS)
    DEAD_LETTERS.labels("UNVERIFIED_ACK", topics.TOPIC_RECALL_ACKS)
    for recipient in limited_recipients:
        SUSPENSIONS.labels(recipient)


def recipient_label(recipient: str, registered: Collection[str]) -> str:
    """Return the ``recipient`` label for ``recipient``: itself if the policy names it."""
    return recipient if recipient in registered else UNREGISTERED_RECIPIENT
