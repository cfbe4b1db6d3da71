"""Helpers shared by the detector unit tests: decisions and a naive sliding-window oracle."""

from __future__ import annotations

import io
import itertools
from typing import Any

import fastavro

from streams import topics
from streams.detect.core.records import DecisionEvent
from streams.serde.catalog import default_catalog

T0 = 1_790_000_000_000 // 86_400_000 * 86_400_000  # a midnight UTC (2026-09-21)
MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000

_ids = itertools.count()


def decision(
    at_ms: int,
    *,
    verdict: str = "ALLOW",
    recipient: str = "acme-vision",
    actor: str = "job-1",
    kind: str = "TRAINING_READ",
    owner: str | None = None,
    photo: str | None = None,
    reason: str | None = None,
    model_id: str | None = None,
) -> DecisionEvent:
    n = next(_ids)
    return DecisionEvent(
        decision_id=f"d-{n}",
        subject_event_id=f"e-{n}",
        subject_kind=kind,
        photo_id=photo or f"p-{n}",
        owner_id=owner or f"u-{n}",
        actor=actor,
        recipient_org=recipient,
        purpose="ML_TRAINING" if kind == "TRAINING_READ" else "PARTNER_SHARING",
        verdict=verdict,
        reason=reason or ("CONSENTED" if verdict == "ALLOW" else "NO_CONSENT"),
        at_ms=at_ms,
        model_id=model_id,
    )


def fits_schema(topic: str, record: dict[str, Any]) -> bool:
    """Encode and decode ``record`` with the topic's Avro schema; True if it round-trips."""
    schema = default_catalog().for_topic(topic)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    buffer.seek(0)
    back = fastavro.schemaless_reader(buffer, schema.parsed_plain)
    return bool(back == record)


ALERTS = topics.TOPIC_ALERTS
CONTROLS = topics.TOPIC_CONTROLS
