"""The single source of Kafka topic names for the whole project (fixed by the contract, section 2).

Every module that reads or writes a topic imports its name from here; nothing else spells a topic
name. Subjects in the schema registry follow ``TopicNameStrategy``: see :func:`value_subject`.
"""

from __future__ import annotations

from typing import Final

TOPIC_PHOTO_UPLOADS: Final = "photo.uploads"
"""``PhotoUploaded`` events from the app; key ``owner_id``."""

TOPIC_CONSENT_CHANGES: Final = "consent.changes"
"""``ConsentChanged`` events from the consent service; key ``user_id``; infinite retention."""

TOPIC_SHARE_REQUESTS: Final = "photo.share.requests"
"""``PhotoShareRequested`` events from any service that wants a photo to leave; key ``owner_id``."""

TOPIC_TRAINING_READS: Final = "training.reads"
"""``TrainingRead`` events from training data loaders, one per photo read; key ``owner_id``."""

TOPIC_DECISIONS: Final = "governance.decisions"
"""``Decision`` records written by the gate only: the audit trail; infinite retention."""

TOPIC_SHARE_APPROVED: Final = "photo.share.approved"
"""Each ``ALLOW``ed share's original ``PhotoShareRequested``; the only topic egress ships from."""

TOPIC_ALERTS: Final = "governance.alerts"
"""``Alert`` records written by detectors; key the alert's subject."""

TOPIC_CONTROLS: Final = "governance.controls"
"""``Control`` records (suspend/resume a recipient); compacted; every gate worker reads it all."""

TOPIC_DLQ: Final = "governance.dlq"
"""``DeadLetter`` records: every input a processor could not handle, kept verbatim."""

INPUT_TOPICS: Final[frozenset[str]] = frozenset(
    {TOPIC_PHOTO_UPLOADS, TOPIC_CONSENT_CHANGES, TOPIC_SHARE_REQUESTS, TOPIC_TRAINING_READS}
)
"""The four input topics. They are co-partitioned: same partition count, keyed by the owner's id."""

ALL_TOPICS: Final[tuple[str, ...]] = (
    TOPIC_PHOTO_UPLOADS,
    TOPIC_CONSENT_CHANGES,
    TOPIC_SHARE_REQUESTS,
    TOPIC_TRAINING_READS,
    TOPIC_DECISIONS,
    TOPIC_SHARE_APPROVED,
    TOPIC_ALERTS,
    TOPIC_CONTROLS,
    TOPIC_DLQ,
)
"""Every topic of the contract, inputs first, in the order of the contract's table."""


def value_subject(topic: str) -> str:
    """Return the registry subject of a topic's values (TopicNameStrategy: ``<topic>-value``)."""
    return f"{topic}-value"
