"""The SDK and codec against the real broker and the real schema registry.

Each test run writes to its own scratch topics (``it-sdk-<token>-<contract topic>``) whose subjects
it registers itself, so it never touches the contract topics or subjects, and removes them after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient

from streams import topics
from streams.core.ack_signing import ack_problem, parse_ack_key
from streams.errors import (
    IncompatibleSchemaError,
    SchemaMismatchError,
    UndecodableBytesError,
    UnknownSchemaIdError,
)
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import TOPIC_RECORDS, Catalog, default_catalog
from streams.serde.registry import RegistrySchemaSource, register_all, register_schema
from streams.serde.wire import AvroCodec
from streams.settings import Settings
from tests.ack_support import ACK_KEY, public_pem

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def scratch(
    admin: AdminClient, registry_url: str, unique: str
) -> Iterator[tuple[dict[str, str], Catalog]]:
    """Scratch input topics and the acks topic (contract topic -> scratch name), then removed."""
    logicals = sorted(topics.GATE_INPUT_TOPICS | {topics.TOPIC_RECALL_ACKS})
    names = {logical: f"it-sdk-{unique}-{logical}" for logical in logicals}
    futures = admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names.values()])
    for future in futures.values():
        future.result(timeout=30)
    catalog = default_catalog().with_topics(
        {name: TOPIC_RECORDS[logical] for logical, name in names.items()}
    )
    registered = register_all(registry_url, catalog, topics=list(names.values()))
    assert [r.subject for r in registered] == [f"{n}-value" for n in names.values()]
    assert all(r.schema_id > 0 and r.version >= 1 for r in registered)
    try:
        yield names, catalog
    finally:
        admin.delete_topics(list(names.values()))
        client = SchemaRegistryClient({"url": registry_url})
        for name in names.values():
            try:
                client.delete_subject(f"{name}-value")
                client.delete_subject(f"{name}-value", permanent=True)
            except Exception:
                pass


def consume(kafka_config: dict[str, Any], names: list[str], count: int) -> list[Any]:
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"it-sdk-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(names)
    messages: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count, f"got {len(messages)} of {count} messages"
    return messages


def test_sdk_events_round_trip_through_broker_and_registry(
    settings: Settings,
    kafka_config: dict[str, Any],
    registry_url: str,
    unique: str,
    scratch: tuple[dict[str, str], Catalog],
) -> None:
    names, catalog = scratch
    owner = f"user-{unique}"
    producer = ConsentinelProducer(settings, source="it-sdk", topic_names=names)
    sent = {
        names[topics.TOPIC_PHOTO_UPLOADS]: producer.photo_uploaded(
            photo_id=f"photo-{unique}",
            owner_id=owner,
            content_sha256="ab" * 32,
            media_type="image/jpeg",
            size_bytes=2048,
            occurred_at=1_764_000_000_000,
        ),
        names[topics.TOPIC_CONSENT_CHANGES]: producer.consent_changed(
            user_id=owner,
            purpose="ML_TRAINING",
            granted=True,
            notice_version="2026-01",
            categories=["IMAGE", "FACE_BIOMETRIC"],
            recipient_org="acme-vision",
            expires_at=1_800_000_000_000,
            occurred_at=1_764_000_000_001,
        ),
        names[topics.TOPIC_SHARE_REQUESTS]: producer.share_requested(
            photo_id=f"photo-{unique}",
            owner_id=owner,
            requester="share-svc",
            recipient_org="acme-vision",
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=1_764_000_000_002,
        ),
        names[topics.TOPIC_TRAINING_READS]: producer.training_read(
            job_id=f"job-{unique}",
            model_id="m-1",
            org="acme-vision",
            photo_id=f"photo-{unique}",
            owner_id=owner,
            categories=["IMAGE", "FACE_BIOMETRIC"],
            occurred_at=1_764_000_000_003,
        ),
        names[topics.TOPIC_ERASURE_REQUESTS]: producer.request_erasure(
            user_id=owner,
            scope="PHOTO",
            photo_id=f"photo-{unique}",
            request_id=f"ticket-{unique}",
            occurred_at=1_764_000_000_004,
        ),
    }
    producer.flush(30)

    # A fresh codec: every writer schema must come from the real registry by id.
    source = RegistrySchemaSource(registry_url)
    codec = AvroCodec(source, catalog)
    messages = consume(kafka_config, list(names.values()), 5)
    partitions = set()
    for message in messages:
        record = codec.decode(message.topic(), message.value())
        assert record["event_id"] == sent[message.topic()]
        assert record["source"] == "it-sdk"
        assert type(record["occurred_at"]) is int
        assert message.timestamp()[1] == record["occurred_at"]
        assert message.key() == owner.encode()
        partitions.add(message.partition())
        if message.topic() == names[topics.TOPIC_CONSENT_CHANGES]:
            assert record["categories"] == ["IMAGE", "FACE_BIOMETRIC"]
            assert record["expires_at"] == 1_800_000_000_000
            assert record["granted"] is True
        if message.topic() == names[topics.TOPIC_ERASURE_REQUESTS]:
            assert record["scope"] == "PHOTO" and record["photo_id"] == f"photo-{unique}"
            assert record["request_id"] == f"ticket-{unique}"
    # murmur2 keying: one user lands on the same partition number in every input topic.
    assert len(partitions) == 1


def test_recall_ack_round_trips_keyed_by_recipient(
    settings: Settings,
    kafka_config: dict[str, Any],
    registry_url: str,
    unique: str,
    scratch: tuple[dict[str, str], Catalog],
) -> None:
    names, catalog = scratch
    producer = ConsentinelProducer(settings, source="it-sdk", topic_names=names)
    producer.acknowledge_recall(
        order_id=f"order-{unique}",
        recipient_org="acme-vision",
        deleted_photo_ids=["p1", "p2"],
        purged_model_ids=["m-1"],
        evidence=f"https://acme.example/proof/{unique}",
        acknowledged_at=1_764_000_000_100,
        signing_key=ACK_KEY,
    )
    producer.flush(30)
    topic = names[topics.TOPIC_RECALL_ACKS]
    [message] = consume(kafka_config, [topic], 1)
    record = AvroCodec(RegistrySchemaSource(registry_url), catalog).decode(topic, message.value())
    assert message.key() == b"acme-vision"
    assert message.timestamp()[1] == record["acknowledged_at"] == 1_764_000_000_100
    assert record["order_id"] == f"order-{unique}"
    assert (record["deleted_photo_ids"], record["purged_model_ids"]) == (["p1", "p2"], ["m-1"])
    key_id, raw = parse_ack_key(public_pem(ACK_KEY))
    assert ack_problem(record, {key_id: raw}) is None, "signed over what the broker delivered"


def test_bad_bytes_on_a_topic_raise_typed_errors(
    settings: Settings,
    kafka_config: dict[str, Any],
    registry_url: str,
    scratch: tuple[dict[str, str], Catalog],
) -> None:
    names, catalog = scratch
    topic = names[topics.TOPIC_SHARE_REQUESTS]
    codec = AvroCodec(RegistrySchemaSource(registry_url), catalog)
    good = codec.encode(
        topic,
        {
            "event_id": "e",
            "occurred_at": 1,
            "source": "s",
            "share_id": "sh",
            "photo_id": "p",
            "owner_id": "u",
            "requester": "r",
            "recipient_org": "o",
            "purpose": "RESEARCH",
            "categories": [],
        },
    )
    raw = Producer(dict(kafka_config))
    payloads = [
        b'{"not": "avro"}',
        b"\x00" + (2_000_000_000).to_bytes(4, "big") + good[5:],
        good[:-4],
    ]
    for payload in payloads:
        raw.produce(topic, payload, key=b"u")
    assert raw.flush(30) == 0

    messages = sorted(consume(kafka_config, [topic], 3), key=lambda m: m.offset())
    with pytest.raises(UndecodableBytesError, match="magic byte"):
        codec.decode(topic, messages[0].value())
    with pytest.raises(UnknownSchemaIdError) as info:
        codec.decode(topic, messages[1].value())
    assert "2000000000" in str(info.value)
    assert registry_url in str(info.value)
    with pytest.raises(SchemaMismatchError) as mismatch:
        codec.decode(topic, messages[2].value())
    assert f"schema id {codec.schema_id(topic)}" in str(mismatch.value)


def test_incompatible_schema_is_refused_with_the_registry_reason(
    registry_url: str, unique: str
) -> None:
    subject = f"scratch-it-sdk-{unique}-value"
    client = SchemaRegistryClient({"url": registry_url})
    v1 = {
        "type": "record",
        "name": "Scratch",
        "namespace": "consentinel.v1",
        "doc": "d",
        "fields": [{"name": "a", "type": "string", "doc": "d"}],
    }
    v2 = {**v1, "fields": [*v1["fields"], {"name": "b", "type": "int", "doc": "no default"}]}
    try:
        first = register_schema(client, subject, json.dumps(v1))
        assert register_schema(client, subject, json.dumps(v1)) == first  # idempotent
        with pytest.raises(IncompatibleSchemaError) as info:
            register_schema(client, subject, json.dumps(v2))
        assert subject in str(info.value)
        assert client.get_compatibility(subject) == "FULL_TRANSITIVE"
        assert [v for v in client.get_versions(subject)] == [first.version]
    finally:
        client.delete_subject(subject)
        client.delete_subject(subject, permanent=True)
