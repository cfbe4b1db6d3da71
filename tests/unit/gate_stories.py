"""The gate's rules as stories (one request and what came before it): one list for every test.

``tests/integration/test_gate_rules.py`` writes them to the real broker; the unit tests run them on
:class:`~streams.runtime.testing.TopologyDriver` (:class:`Writer`). Every event is appended at its
own ``occurred_at`` (within the policy's time bounds), keyed by its owner.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from streams import topics
from streams.core.partitioning import partition_for
from streams.gate.topology import GateTopology
from streams.runtime.testing import TopologyDriver, sample_record

HOUR = 3_600_000


@dataclass
class Story:
    """One request and the events before it, with the verdict and reason the contract demands."""

    name: str
    verdict: str
    reason: str
    recipient: str = "acme-vision"
    purpose: str = "ML_TRAINING"
    categories: tuple[str, ...] = ("IMAGE",)
    upload: bool = True
    consents: list[dict[str, Any]] = field(default_factory=list)
    training: bool = False
    uploader: bool = False  # another user of the same partition uploaded the photo


def grant(**extra: Any) -> dict[str, Any]:
    """A consent change (granted, ML_TRAINING, IMAGE unless ``extra`` says otherwise)."""
    return {"granted": True, "purpose": "ML_TRAINING", "categories": ["IMAGE"], **extra}


STORIES = [
    Story("consented", "ALLOW", "CONSENTED", consents=[grant()]),
    Story(
        "for this recipient", "ALLOW", "CONSENTED", consents=[grant(recipient_org="acme-vision")]
    ),
    Story(
        "for another recipient",
        "DENY",
        "NO_CONSENT",
        consents=[grant(recipient_org="lovebird-partners")],
    ),
    Story(
        "not consent based",
        "ALLOW",
        "NOT_CONSENT_BASED",
        recipient="photo-cdn",
        purpose="SERVICE_OPERATION",
    ),
    Story("no consent", "DENY", "NO_CONSENT"),
    Story(
        "withdrawn",
        "DENY",
        "CONSENT_REVOKED",
        consents=[grant(at=-3 * HOUR), {**grant(at=-2 * HOUR), "granted": False}],
    ),
    Story("expired", "DENY", "CONSENT_EXPIRED", consents=[grant(expires=-HOUR)]),
    Story(
        "biometric without biometric consent",
        "DENY",
        "CATEGORY_NOT_CONSENTED",
        categories=("IMAGE", "FACE_BIOMETRIC"),
        consents=[grant()],
    ),
    Story(
        "biometric with explicit consent",
        "ALLOW",
        "CONSENTED",
        categories=("IMAGE", "FACE_BIOMETRIC"),
        consents=[grant(categories=["IMAGE", "FACE_BIOMETRIC"])],
    ),
    Story(
        "empty categories cover non-sensitive",
        "ALLOW",
        "CONSENTED",
        categories=("IMAGE", "DEMOGRAPHIC"),
        consents=[grant(categories=[])],
    ),
    Story("unknown photo", "DENY", "UNKNOWN_PHOTO", upload=False, consents=[grant()]),
    Story("owner mismatch", "DENY", "OWNER_MISMATCH", uploader=True, consents=[grant()]),
    Story("unknown recipient", "DENY", "RECIPIENT_UNKNOWN", recipient="shady-ai"),
    Story(
        "lapsed agreement",
        "DENY",
        "NO_AGREEMENT",
        recipient="old-lab",
        purpose="RESEARCH",
        consents=[grant(purpose="RESEARCH")],
    ),
    Story(
        "purpose not in agreement",
        "DENY",
        "PURPOSE_NOT_PERMITTED",
        purpose="ADVERTISING",
        consents=[grant(purpose="ADVERTISING")],
    ),
    Story(
        "internal-only purpose to outsider", "DENY", "PURPOSE_NOT_PERMITTED", purpose="ANALYTICS"
    ),
    Story("training read consented", "ALLOW", "CONSENTED", training=True, consents=[grant()]),
    Story("training read without consent", "DENY", "NO_CONSENT", training=True),
]


def twin(owner: str, partitions: int) -> str:
    """Return another user id whose events land on ``owner``'s partition."""
    target = partition_for(owner, partitions)
    return next(
        candidate
        for candidate in (f"{owner}-twin{i}" for i in range(10_000))
        if partition_for(candidate, partitions) == target
    )


class Writer:
    """Writes stories and single events to a gate driver, as the services' producers would."""

    def __init__(self, driver: TopologyDriver[GateTopology]) -> None:
        self.driver = driver
        """Where events go: set it to a restarted driver to go on writing the same sequence."""
        self.codec = driver.codec
        self._ids = itertools.count()
        self._tags = itertools.count()

    def event(self, topic: str, owner: str, at: int, **fields: Any) -> str:
        """Append one event of ``topic`` for ``owner`` at ``at``; return its event id."""
        event_id = f"ev-{next(self._ids)}"
        owner_field = "user_id" if topic == topics.TOPIC_CONSENT_CHANGES else "owner_id"
        record = sample_record(
            self.codec, topic, event_id=event_id, occurred_at=at, **{owner_field: owner}, **fields
        )
        self.driver.feed(topic, owner, record, timestamp_ms=at)
        return event_id

    def upload(self, owner: str, photo: str, at: int) -> str:
        """Append ``owner``'s upload of ``photo`` (its content hash is the photo id's)."""
        digest = hashlib.sha256(photo.encode()).hexdigest()
        return self.event(
            topics.TOPIC_PHOTO_UPLOADS, owner, at, photo_id=photo, content_sha256=digest
        )

    def consent(self, owner: str, at: int, **change: Any) -> str:
        """Append a consent change (fields as :func:`grant`'s, no expiry unless given)."""
        change.setdefault("recipient_org", None)
        change.setdefault("expires_at", None)
        return self.event(topics.TOPIC_CONSENT_CHANGES, owner, at, **change)

    def request(self, story: Story, owner: str, photo: str, at: int) -> str:
        """Append the story's share request or training read."""
        common = {
            "photo_id": photo,
            "purpose": story.purpose,
            "categories": list(story.categories),
        }
        if story.training:
            return self.event(
                topics.TOPIC_TRAINING_READS,
                owner,
                at,
                job_id=f"job-{owner}",
                model_id=f"model-{owner}",
                org=story.recipient,
                **common,
            )
        return self.event(
            topics.TOPIC_SHARE_REQUESTS,
            owner,
            at,
            share_id=f"share-{owner}",
            requester="share-svc",
            recipient_org=story.recipient,
            **common,
        )

    def story(self, story: Story, now: int, *, request_first: bool = True) -> tuple[str, str]:
        """Append a story's events; return ``(owner, request event id)``; the photo is
        ``"p" + owner[1:]``.

        With ``request_first`` the request is appended before the upload and consents that
        happened before it: the gate must still order them by event time. Owners and event ids
        are numbered per writer, so two writers write the same records.
        """
        tag = next(self._tags)
        owner, photo = f"u-{tag}", f"p-{tag}"
        event_id = self.request(story, owner, photo, now) if request_first else ""
        if story.upload:
            uploader = twin(owner, self.driver.partitions) if story.uploader else owner
            self.upload(uploader, photo, now - 5 * HOUR)
        for consent in story.consents:
            change = dict(consent)
            at = now + change.pop("at", -4 * HOUR)
            expires = change.pop("expires", None)
            change["expires_at"] = None if expires is None else now + expires
            self.consent(owner, at, **change)
        if not request_first:
            event_id = self.request(story, owner, photo, now)
        return owner, event_id


def share(writer: Writer, owner: str, photo: str, at: int) -> str:
    """Write a request that ``photo`` go to acme-vision for ML_TRAINING; return its event id."""
    return writer.event(
        topics.TOPIC_SHARE_REQUESTS,
        owner,
        at,
        share_id=f"share-{photo}-{at}",
        photo_id=photo,
        requester="share-svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
    )


def decisions_by_subject(driver: TopologyDriver[GateTopology]) -> dict[str, list[dict[str, Any]]]:
    """Return the committed decisions grouped by the request they decide."""
    found: dict[str, list[dict[str, Any]]] = {}
    for decision in driver.outputs(topics.TOPIC_DECISIONS):
        found.setdefault(decision["subject_event_id"], []).append(decision)
    return found
