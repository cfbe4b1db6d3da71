"""A fake schema registry for unit tests: :class:`InMemorySchemaSource`.

It behaves like a Confluent-compatible registry as far as the codec can tell: ids are assigned from
1 upwards, the same schema text gets the same id under any subject, and an unknown id raises the
same :class:`~streams.errors.UnknownSchemaIdError` as the real adapter. It counts calls so tests can
prove that the codec fetches each writer schema only once.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from streams.errors import RegistryError
from streams.serde.wire import unknown_schema_id_error

_T = 1_764_000_000_000  # 2025-11-24T16:00:00Z

SAMPLE_RECORDS: dict[str, dict[str, Any]] = {
    "PhotoUploaded": {
        "event_id": "e1",
        "occurred_at": _T,
        "source": "app",
        "photo_id": "p1",
        "owner_id": "u1",
        "content_sha256": "ab" * 32,
        "media_type": "image/jpeg",
        "size_bytes": 123_456,
    },
    "ConsentChanged": {
        "event_id": "e2",
        "occurred_at": _T,
        "source": "consent-service",
        "user_id": "u1",
        "purpose": "ML_TRAINING",
        "recipient_org": None,
        "categories": ["IMAGE", "FACE_BIOMETRIC"],
        "granted": True,
        "notice_version": "2026-01",
        "expires_at": _T + 1000,
    },
    "PhotoShareRequested": {
        "event_id": "e3",
        "occurred_at": _T,
        "source": "share-svc",
        "share_id": "s1",
        "photo_id": "p1",
        "owner_id": "u1",
        "requester": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "PARTNER_SHARING",
        "categories": ["IMAGE"],
    },
    "TrainingRead": {
        "event_id": "e4",
        "occurred_at": _T,
        "source": "loader",
        "job_id": "j1",
        "model_id": "m1",
        "org": "acme-vision",
        "photo_id": "p1",
        "owner_id": "u1",
        "purpose": "ML_TRAINING",
        "categories": [],
    },
    "Decision": {
        "decision_id": "d1",
        "decided_at": _T,
        "subject_event_id": "e3",
        "subject_kind": "SHARE",
        "photo_id": "p1",
        "owner_id": "u1",
        "actor": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "PARTNER_SHARING",
        "verdict": "DENY",
        "reason": "NO_CONSENT",
        "explanation": "The owner has not consented to partner sharing.",
        "policy_version": "2026-11-26.1",
        "consent_event_id": None,
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
        "categories": ["IMAGE"],
        "occurred_at": _T,
        "partition": 3,
        "model_id": None,
        "share_id": "s1",
    },
    "Alert": {
        "alert_id": "a1",
        "raised_at": _T,
        "kind": "BULK_EXPORT",
        "severity": "CRITICAL",
        "subject": "acme-vision",
        "window_start": _T - 3_600_000,
        "window_end": _T,
        "observed": 9000,
        "threshold": 5000.0,
        "baseline": None,
        "summary": "acme-vision received 9000 photos in an hour (limit 5000).",
        "sample_event_ids": ["e3", "e4"],
        "action": "RECIPIENT_SUSPENDED",
    },
    "Control": {
        "control_id": "c1",
        "at": _T,
        "kind": "SUSPEND_RECIPIENT",
        "recipient_org": "acme-vision",
        "reason": "alert a1",
        "actor": "bulk-export-detector",
    },
    "DeadLetter": {
        "dead_letter_id": "x1",
        "at": _T,
        "source_topic": "photo.uploads",
        "partition": 0,
        "offset": 42,
        "key": b"u1",
        "value": b"\x01garbage",
        "error_kind": "UNDECODABLE_BYTES",
        "error": "value does not start with 0x00",
    },
    "ErasureRequested": {
        "event_id": "e5",
        "occurred_at": _T,
        "source": "privacy-team",
        "request_id": "ticket-77",
        "user_id": "u1",
        "scope": "PHOTO",
        "photo_id": "p1",
        "reason": "USER_REQUEST",
    },
    "RecallOrder": {
        "order_id": "o1",
        "issued_at": _T,
        "recipient_org": "acme-vision",
        "user_id": "u1",
        "photo_ids": ["p1"],
        "model_ids": ["m1"],
        "cause": "ERASURE_REQUESTED",
        "decision_ids": ["d1"],
        "due_at": _T + 30 * 86_400_000,
    },
    "RecallAcknowledged": {
        "order_id": "o1",
        "recipient_org": "acme-vision",
        "acknowledged_at": _T + 86_400_000,
        "deleted_photo_ids": ["p1"],
        "purged_model_ids": ["m1"],
        "evidence": "https://acme-vision.example/deletions/77",
        "key_id": "fe812c12f3ab4ce6",
        "signature": b"\x00" * 64,
    },
    "ChainCheckpoint": {
        "checkpoint_id": "k1",
        "at": _T,
        "partition": 3,
        "offset": 1041,
        "hash": "f" * 64,
        "decisions": 1042,
        "key_id": "ed25519:4f2a",
        "signature": b"\x01" * 64,
    },
}

"""One valid record of each contract record (by record name), for tests and examples."""


def _canonical(schema_str: str) -> str:
    """Return a whitespace- and key-order-insensitive form of a JSON schema text."""
    return json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))


class InMemorySchemaSource:
    """An in-process :class:`~streams.serde.wire.SchemaSource` that assigns ids itself.

    Attributes:
        schema_for_id_calls: How many times each id was asked for by :meth:`schema_for_id`.
        id_for_calls: How many times each subject was asked for by :meth:`id_for`.
    """

    def __init__(self, url: str = "mem://schema-registry", *, auto_register: bool = True) -> None:
        self._url = url
        self._auto_register = auto_register
        self._schemas: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, list[int]] = {}
        self.schema_for_id_calls: Counter[int] = Counter()
        self.id_for_calls: Counter[str] = Counter()

    @property
    def url(self) -> str:
        """The fake's address, as it appears in error messages."""
        return self._url

    def register(self, subject: str, schema_str: str) -> int:
        """Register ``schema_str`` under ``subject`` (no compatibility check) and return its id."""
        key = _canonical(schema_str)
        schema_id = self._ids.get(key)
        if schema_id is None:
            schema_id = self._ids[key] = len(self._schemas) + 1
            self._schemas[schema_id] = schema_str
        versions = self._subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def subjects(self) -> dict[str, list[int]]:
        """Return subject → ids of its versions, oldest first."""
        return {subject: list(ids) for subject, ids in self._subjects.items()}

    def schema_for_id(self, schema_id: int) -> str:
        """Return the schema text with ``schema_id``; :class:`UnknownSchemaIdError` if none."""
        self.schema_for_id_calls[schema_id] += 1
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise unknown_schema_id_error(schema_id, self._url) from None

    def id_for(self, subject: str, schema_str: str) -> int:
        """Return the id of ``schema_str`` under ``subject``, registering it if allowed."""
        self.id_for_calls[subject] += 1
        schema_id = self._ids.get(_canonical(schema_str))
        if schema_id is not None and schema_id in self._subjects.get(subject, ()):
            return schema_id
        if self._auto_register:
            return self.register(subject, schema_str)
        raise RegistryError(f"schema is not registered under {subject!r} at {self._url}")
