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

TOPIC_ERASURE_REQUESTS: Final = "privacy.erasure.requests"
"""``ErasureRequested`` events from the app and the privacy team; key ``user_id``; an input
co-partitioned with the other four (see :data:`GATE_INPUT_TOPICS`)."""

TOPIC_RECALLS: Final = "governance.recalls"
"""``RecallOrder`` records written by the gate only; key ``recipient_org``; infinite retention."""

TOPIC_RECALL_ACKS: Final = "governance.recall.acks"
"""``RecallAcknowledged`` records written by recipients (via the acks service); key
``recipient_org``."""

TOPIC_CHECKPOINTS: Final = "governance.checkpoints"
"""``ChainCheckpoint`` records (signed chain heads) written by the gate only; key the partition
number; infinite retention."""

INPUT_TOPICS: Final[frozenset[str]] = frozenset(
    {TOPIC_PHOTO_UPLOADS, TOPIC_CONSENT_CHANGES, TOPIC_SHARE_REQUESTS, TOPIC_TRAINING_READS}
)
"""The four original input topics (uploads, consents, share requests, training reads).

Kept as exactly these four because the simulator and benchmarks produce to them as "the inputs".
Every input the gate consumes, ``privacy.erasure.requests`` included, is :data:`GATE_INPUT_TOPICS`.
All of them are co-partitioned: same partition count, keyed by the owner's id.
"""

GATE_INPUT_TOPICS: Final[frozenset[str]] = INPUT_TOPICS | {TOPIC_ERASURE_REQUESTS}
"""Every input topic of the contract: :data:`INPUT_TOPICS` plus ``privacy.erasure.requests``.

All are co-partitioned (same partition count, key the owner's id) and read by the gate.
"""

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
    TOPIC_ERASURE_REQUESTS,
    TOPIC_RECALLS,
    TOPIC_RECALL_ACKS,
    TOPIC_CHECKPOINTS,
)
"""Every topic of the contract, in the order of the contract's table (section 2)."""


def value_subject(topic: str) -> str:
    """Return the registry subject of a topic's values (TopicNameStrategy: ``<topic>-value``)."""
    return f"{topic}-value"


# -- internal topics: written and read by Consentinel's own processors only ------------------------

TOPIC_GATE_CHANGELOG: Final = "consentinel.gate.state-changelog"
"""The gate's state (consents, photo owners, chain heads); compacted; co-partitioned with inputs."""

TOPIC_GATE_PHOTO_CLAIMS: Final = "consentinel-gate.photo-claims"
"""Uploads' ownership claims and lookups, keyed by photo id or content hash (the photo index)."""

TOPIC_GATE_PHOTO_VERDICTS: Final = "consentinel-gate.photo-verdicts"
"""The photo index's answers, keyed by the asking owner (back to the owner's partition)."""

DETECTOR_APP: Final = "consentinel-detector"
"""The detectors' default application name: consumer group, transactional ids, internal topics."""


def detector_topics(app_name: str = DETECTOR_APP) -> tuple[str, str, str]:
    """Return a detector application's (by-recipient, by-actor, changelog) internal topics.

    by-recipient: decisions re-keyed by recipient; by-actor: decisions and training jobs re-keyed
    by requester or job; changelog: the detectors' state (compacted). Created by the runtime.
    """
    return (f"{app_name}.by-recipient", f"{app_name}.by-actor", f"{app_name}.state-changelog")


TOPIC_DETECTOR_BY_RECIPIENT, TOPIC_DETECTOR_BY_ACTOR, TOPIC_DETECTOR_CHANGELOG = detector_topics()

INTERNAL_TOPICS: Final[tuple[str, ...]] = (
    TOPIC_GATE_CHANGELOG,
    TOPIC_GATE_PHOTO_CLAIMS,
    TOPIC_GATE_PHOTO_VERDICTS,
    TOPIC_DETECTOR_BY_RECIPIENT,
    TOPIC_DETECTOR_BY_ACTOR,
    TOPIC_DETECTOR_CHANGELOG,
)
"""Every internal topic; deleting a test environment removes these too."""
