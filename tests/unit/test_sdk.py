"""The producer SDK with a fake librdkafka producer and an in-memory registry (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streams.core.ack_signing import ack_problem, parse_ack_key
from streams.errors import ConfigError, DeliveryError, InvalidEventError
from streams.sdk import REQUIRED_PRODUCER_CONFIG, ConsentinelProducer
from streams.serde.testing import InMemorySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import load_settings
from tests.ack_support import ACK_KEY, ACK_PUBLIC_PEM


class FakeMessage:
    def __init__(self, topic: str, key: bytes | None) -> None:
        self._topic, self._key = topic, key

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key


class FakeProducer:
    """Records produce() calls; fails deliveries to topics listed in ``failing``."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.pending: list[tuple[Any, FakeMessage]] = []
        self.failing = failing or set()

    def produce(self, topic: str, value: bytes, **kwargs: Any) -> None:
        self.sent.append({"topic": topic, "value": value, **kwargs})
        self.pending.append((kwargs["on_delivery"], FakeMessage(topic, kwargs.get("key"))))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        for callback, message in self.pending:
            callback("broker said no" if message.topic() in self.failing else None, message)
        self.pending.clear()
        return 0


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec(InMemorySchemaSource())


def make(codec: AvroCodec, fake: FakeProducer) -> ConsentinelProducer:
    return ConsentinelProducer(load_settings(), source="test", codec=codec, producer=fake)  # type: ignore[arg-type]


def test_each_event_kind_is_keyed_timestamped_and_decodable(codec: AvroCodec) -> None:
    fake = FakeProducer()
    producer = make(codec, fake)
    at = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    ids = [
        producer.photo_uploaded(
            photo_id="p1",
            owner_id="u1",
            content_sha256="ab" * 32,
            media_type="image/jpeg",
            size_bytes=10,
            occurred_at=at,
        ),
        producer.consent_changed(
            user_id="u1",
            purpose="ML_TRAINING",
            granted=True,
            notice_version="v1",
            categories=["IMAGE"],
            occurred_at=1_000,
        ),
        producer.share_requested(
            photo_id="p1",
            owner_id="u1",
            requester="svc",
            recipient_org="acme-vision",
            purpose="PARTNER_SHARING",
            event_id="fixed-id",
        ),
        producer.training_read(
            job_id="j1", model_id="m1", org="acme-vision", photo_id="p1", owner_id="u1"
        ),
    ]
    producer.flush()
    assert ids[2] == "fixed-id"
    assert [s["topic"] for s in fake.sent] == [
        "photo.uploads",
        "consent.changes",
        "photo.share.requests",
        "training.reads",
    ]
    for sent, event_id in zip(fake.sent, ids, strict=True):
        assert sent["key"] == b"u1"
        record = codec.decode(sent["topic"], sent["value"])
        assert record["event_id"] == event_id
        assert record["source"] == "test"
        assert sent["timestamp"] == record["occurred_at"]
    assert fake.sent[0]["timestamp"] == int(at.timestamp() * 1000)
    assert fake.sent[1]["timestamp"] == 1_000
    assert codec.decode("training.reads", fake.sent[3]["value"])["purpose"] == "ML_TRAINING"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"purpose": "SPYING"}, "purpose has 'SPYING'; allowed: SERVICE_OPERATION"),
        ({"purpose": "UNKNOWN"}, "purpose has 'UNKNOWN'"),
        ({"categories": ["IMAGE", "SOUL"]}, "categories has 'SOUL'"),
        ({"categories": "IMAGE"}, "list of symbols"),
        ({"owner_id": ""}, "owner_id must be a non-empty string"),
        ({"recipient_org": "  "}, "recipient_org must be a non-empty string"),
        ({"occurred_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"occurred_at": "today"}, "occurred_at must be int epoch milliseconds"),
    ],
)
def test_invalid_events_are_refused_before_producing(
    codec: AvroCodec, kwargs: dict[str, Any], fragment: str
) -> None:
    fake = FakeProducer()
    producer = make(codec, fake)
    base: dict[str, Any] = {
        "photo_id": "p1",
        "owner_id": "u1",
        "requester": "svc",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "categories": ["IMAGE"],
    }
    with pytest.raises(InvalidEventError) as info:
        producer.share_requested(**{**base, **kwargs})
    assert fragment in str(info.value)
    assert fake.sent == []


def test_flush_reports_failed_deliveries(codec: AvroCodec) -> None:
    fake = FakeProducer(failing={"consent.changes"})
    producer = make(codec, fake)
    producer.consent_changed(user_id="u9", purpose="RESEARCH", granted=False, notice_version="v")
    with pytest.raises(DeliveryError) as info:
        producer.flush()
    assert "consent.changes" in str(info.value)
    assert "u9" in str(info.value)
    assert "broker said no" in str(info.value)
    producer.flush()  # failures are reported once


def test_required_config_cannot_be_weakened(codec: AvroCodec) -> None:
    producer = ConsentinelProducer(
        load_settings(),
        codec=codec,
        config={"acks": "1", "enable.idempotence": False, "linger.ms": 20},
        producer=FakeProducer(),  # type: ignore[arg-type]
    )
    assert producer.config["acks"] == "all"
    assert producer.config["enable.idempotence"] is True
    assert producer.config["partitioner"] == "murmur2_random"
    assert producer.config["linger.ms"] == 20
    assert REQUIRED_PRODUCER_CONFIG["partitioner"] == "murmur2_random"


def test_erasure_request_is_keyed_by_user_and_decodable(codec: AvroCodec) -> None:
    fake = FakeProducer()
    producer = make(codec, fake)
    photo = producer.request_erasure(
        user_id="u1", scope="PHOTO", photo_id="p1", request_id="ticket-9", occurred_at=5_000
    )
    account = producer.request_erasure(user_id="u2", scope="ACCOUNT", reason="REGULATOR_ORDER")
    producer.flush()
    assert [s["topic"] for s in fake.sent] == ["privacy.erasure.requests"] * 2
    assert [s["key"] for s in fake.sent] == [b"u1", b"u2"]
    first = codec.decode("privacy.erasure.requests", fake.sent[0]["value"])
    assert first["event_id"] == photo and first["request_id"] == "ticket-9"
    assert (first["scope"], first["photo_id"], first["reason"]) == ("PHOTO", "p1", "USER_REQUEST")
    assert fake.sent[0]["timestamp"] == 5_000
    second = codec.decode("privacy.erasure.requests", fake.sent[1]["value"])
    assert second["event_id"] == account and second["photo_id"] is None
    assert second["scope"] == "ACCOUNT" and second["reason"] == "REGULATOR_ORDER"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"scope": "PHOTO"}, "PHOTO erasure needs photo_id"),
        ({"scope": "ACCOUNT", "photo_id": "p1"}, "do not pass photo_id"),
        ({"scope": "EVERYTHING"}, "scope has 'EVERYTHING'; allowed: PHOTO, ACCOUNT"),
        ({"scope": "ACCOUNT", "reason": "BORED"}, "reason has 'BORED'"),
        ({"scope": "ACCOUNT", "user_id": ""}, "user_id must be a non-empty string"),
    ],
)
def test_invalid_erasure_requests_are_refused(
    codec: AvroCodec, kwargs: dict[str, Any], fragment: str
) -> None:
    fake = FakeProducer()
    with pytest.raises(InvalidEventError, match=fragment):
        make(codec, fake).request_erasure(**{"user_id": "u1", **kwargs})
    assert fake.sent == []


def test_recall_ack_is_keyed_by_recipient_and_decodable(codec: AvroCodec) -> None:
    fake = FakeProducer()
    producer = make(codec, fake)
    returned = producer.acknowledge_recall(
        order_id="o1",
        recipient_org="acme-vision",
        deleted_photo_ids=["p1", "p2"],
        purged_model_ids=["m1"],
        evidence="https://acme.example/proof/1",
        acknowledged_at=datetime(2026, 12, 1, tzinfo=UTC),
        signing_key=ACK_KEY,
    )
    producer.flush()
    assert returned == "o1"
    [sent] = fake.sent
    assert (sent["topic"], sent["key"]) == ("governance.recall.acks", b"acme-vision")
    record = codec.decode("governance.recall.acks", sent["value"])
    assert record["deleted_photo_ids"] == ["p1", "p2"] and record["purged_model_ids"] == ["m1"]
    assert sent["timestamp"] == record["acknowledged_at"] == 1_796_083_200_000
    key_id, raw = parse_ack_key(ACK_PUBLIC_PEM)
    assert record["key_id"] == key_id and len(record["signature"]) == 64
    assert ack_problem(record, {key_id: raw}) is None
    assert ack_problem({**record, "deleted_photo_ids": ["p1"]}, {key_id: raw}) is not None


def test_recall_ack_without_a_key_is_not_sent(codec: AvroCodec) -> None:
    fake = FakeProducer()
    with pytest.raises(ConfigError, match="cannot be signed"):
        make(codec, fake).acknowledge_recall(
            order_id="o1", recipient_org="acme", deleted_photo_ids=["p1"], evidence="ticket-1"
        )
    assert fake.sent == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "names nothing deleted"),
        ({"deleted_photo_ids": "p1"}, "list of ids"),
        ({"deleted_photo_ids": ["p1", ""]}, "non-empty string ids"),
        ({"deleted_photo_ids": ["p1"], "evidence": " "}, "evidence must be a non-empty string"),
        ({"deleted_photo_ids": ["p1"], "recipient_org": ""}, "recipient_org must be"),
    ],
)
def test_invalid_recall_acks_are_refused(
    codec: AvroCodec, kwargs: dict[str, Any], fragment: str
) -> None:
    fake = FakeProducer()
    base: dict[str, Any] = {"order_id": "o1", "recipient_org": "acme", "evidence": "ticket-1"}
    with pytest.raises(InvalidEventError, match=fragment):
        make(codec, fake).acknowledge_recall(**{**base, **kwargs}, signing_key=ACK_KEY)
    assert fake.sent == []
