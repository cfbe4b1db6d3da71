"""Poison input lands in governance.dlq by kind, is never ALLOWed, and the next is decided."""

from __future__ import annotations

import io
import json
import struct
import time

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from streams import topics
from streams.serde.catalog import default_catalog
from streams.topics import value_subject
from tests.integration.harness import GateEnv, content_hash

pytestmark = pytest.mark.integration


def evolved_share_schema() -> str:
    """PhotoShareRequested as a newer producer might write it: one more Purpose symbol."""
    schema = json.loads(default_catalog().record("PhotoShareRequested").schema_str)
    for field in schema["fields"]:
        if field["name"] == "purpose":
            field["type"]["symbols"] = [*field["type"]["symbols"], "BIOMETRIC_RESALE"]
    return json.dumps(schema)


def test_poison_goes_to_dlq_and_the_next_event_is_decided(gate_env: GateEnv) -> None:
    env = gate_env
    now = int(time.time() * 1000)
    requests = topics.TOPIC_SHARE_REQUESTS
    share = {
        "event_id": "e-valid-template",
        "occurred_at": now,
        "source": "it",
        "share_id": "s1",
        "photo_id": "p1",
        "owner_id": "u1",
        "requester": "svc",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "categories": ["IMAGE"],
    }
    valid_bytes = env.codec.encode(env.topic(requests), share)

    env.produce_raw(requests, b"u1", b"this is not avro")
    env.produce_raw(requests, b"u1", b"\x00" + struct.pack(">I", 987_654_321) + b"\x02\x04")
    env.produce_raw(requests, b"u1", valid_bytes[: len(valid_bytes) // 2])

    client = SchemaRegistryClient({"url": env.settings.schema_registry_url})
    evolved = evolved_share_schema()
    new_id = client.register_schema(value_subject(env.topic(requests)), Schema(evolved, "AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(
        body,
        fastavro.parse_schema(json.loads(evolved)),
        {**share, "event_id": "e-enum", "purpose": "BIOMETRIC_RESALE"},
    )
    env.produce_raw(requests, b"u1", b"\x00" + struct.pack(">I", new_id) + body.getvalue())

    env.producer.photo_uploaded(
        photo_id="p1",
        owner_id="u1",
        content_sha256=content_hash("p1"),
        media_type="image/jpeg",
        size_bytes=1,
        occurred_at=now - 10,
    )
    valid = env.producer.share_requested(
        photo_id="p1",
        owner_id="u1",
        requester="svc",
        recipient_org="acme-vision",
        purpose="ML_TRAINING",
        categories=["IMAGE"],
        occurred_at=now + 1,
    )
    env.producer.flush()

    with env.gate_thread():
        dead = env.read_exactly(topics.TOPIC_DLQ, 4)
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        approved = env.assert_approved()

    kinds = sorted(d["error_kind"] for d in dead)
    assert kinds == sorted(
        ["UNDECODABLE_BYTES", "UNKNOWN_SCHEMA_ID", "SCHEMA_MISMATCH", "UNKNOWN_ENUM_SYMBOL"]
    )
    for letter in dead:
        assert letter["source_topic"] == requests and letter["key"] == b"u1"
        assert letter["value"] and letter["error"]
    assert [d["subject_event_id"] for d in decisions] == [valid]
    assert decisions[0]["verdict"] == "DENY"  # no consent: the valid one is decided normally
    assert approved == []
