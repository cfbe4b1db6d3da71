"""The Confluent wire-format codec against an in-memory registry (no network)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from streams.errors import (
    ConfigError,
    RegistryError,
    SchemaMismatchError,
    UndecodableBytesError,
    UnknownSchemaIdError,
)
from streams.serde.catalog import default_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.testing import SAMPLE_RECORDS as SAMPLES
from streams.serde.testing import InMemorySchemaSource
from streams.serde.wire import AvroCodec

TOPIC = "photo.share.requests"
T = 1_764_000_000_000


def share(**overrides: Any) -> dict[str, Any]:
    record = {
        "event_id": "e-1",
        "occurred_at": T,
        "source": "share-svc",
        "share_id": "s-1",
        "photo_id": "p-1",
        "owner_id": "u-1",
        "requester": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "categories": ["IMAGE", "FACE_BIOMETRIC"],
    }
    record.update(overrides)
    return record


@pytest.fixture
def source() -> InMemorySchemaSource:
    return InMemorySchemaSource()


@pytest.fixture
def codec(source: InMemorySchemaSource) -> AvroCodec:
    return AvroCodec(source)


def write_with(schema: dict[str, Any], schema_id: int, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


def test_round_trip_and_wire_header(codec: AvroCodec, source: InMemorySchemaSource) -> None:
    data = codec.encode(TOPIC, share())
    schema_id = source.subjects()[f"{TOPIC}-value"][0]
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    assert codec.decode(TOPIC, data) == share()
    assert codec.decode_with_id(TOPIC, data) == (schema_id, share())
    assert codec.schema_id(TOPIC) == schema_id


def test_every_topic_round_trips(codec: AvroCodec) -> None:
    for topic, record_name in default_catalog().topics.items():
        sample = SAMPLES[record_name]
        assert codec.decode(topic, codec.encode(topic, sample)) == sample


def test_timestamps_decode_as_int_millis(codec: AvroCodec) -> None:
    aware = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
    decoded = codec.decode(TOPIC, codec.encode(TOPIC, share(occurred_at=aware)))
    assert decoded["occurred_at"] == int(aware.timestamp() * 1000)
    assert type(decoded["occurred_at"]) is int

    consent = {
        "event_id": "e-2",
        "occurred_at": T,
        "source": "consent-service",
        "user_id": "u-1",
        "purpose": "ML_TRAINING",
        "recipient_org": None,
        "categories": [],
        "granted": True,
        "notice_version": "v1",
        "expires_at": T + 5,
    }
    decoded = codec.decode("consent.changes", codec.encode("consent.changes", consent))
    assert decoded == consent
    assert type(decoded["expires_at"]) is int


def test_writer_schema_fetched_once_per_id(codec: AvroCodec, source: InMemorySchemaSource) -> None:
    data = codec.encode(TOPIC, share())
    for _ in range(50):
        codec.decode(TOPIC, data)
        codec.decode("photo.share.approved", data)
    assert sum(source.schema_for_id_calls.values()) == 1
    for _ in range(10):
        codec.encode(TOPIC, share())
    assert source.id_for_calls[f"{TOPIC}-value"] == 1


def evolved_share_schema() -> dict[str, Any]:
    """Our PhotoShareRequested plus a new Purpose symbol and a new field (with a default)."""
    schema = copy.deepcopy(dict(default_catalog().record("PhotoShareRequested").raw))
    for field in schema["fields"]:
        if field["name"] == "purpose":
            field["type"]["symbols"].insert(-1, "BIOMETRIC_RESEARCH")
    schema["fields"].append(
        {"name": "ticket", "type": "string", "default": "", "doc": "A new field."}
    )
    return schema


def test_new_enum_symbol_reads_as_unknown(codec: AvroCodec, source: InMemorySchemaSource) -> None:
    evolved = evolved_share_schema()
    schema_id = source.register(f"{TOPIC}-value", json.dumps(evolved))
    data = write_with(evolved, schema_id, {**share(purpose="BIOMETRIC_RESEARCH"), "ticket": "T-1"})
    decoded = codec.decode(TOPIC, data)
    assert decoded["purpose"] == "UNKNOWN"
    assert "ticket" not in decoded
    assert decoded["occurred_at"] == T


def test_older_writer_without_optional_field_gets_default(
    codec: AvroCodec, source: InMemorySchemaSource
) -> None:
    older = copy.deepcopy(dict(default_catalog().record("Decision").raw))
    older["fields"] = [f for f in older["fields"] if f["name"] not in ("partition", "categories")]
    schema_id = source.register("governance.decisions-value", json.dumps(older))
    sample = {k: v for k, v in SAMPLES["Decision"].items() if k not in ("partition", "categories")}
    decoded = codec.decode("governance.decisions", write_with(older, schema_id, sample))
    assert decoded["partition"] == -1
    assert decoded["categories"] == []


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00", None])
def test_too_short_is_undecodable(codec: AvroCodec, data: bytes | None) -> None:
    with pytest.raises(UndecodableBytesError) as info:
        codec.decode(TOPIC, data)
    assert TOPIC in str(info.value)
    assert "Confluent wire format" in str(info.value)


def test_wrong_magic_byte_is_undecodable(codec: AvroCodec) -> None:
    with pytest.raises(UndecodableBytesError) as info:
        codec.decode(TOPIC, b'{"json": "not avro"}')
    message = str(info.value)
    assert "7b 22 6a 73" in message  # the first bytes, in hex
    assert "magic byte" in message
    assert info.value.error_kind == "UNDECODABLE_BYTES"


def test_unknown_schema_id(codec: AvroCodec, source: InMemorySchemaSource) -> None:
    data = b"\x00" + (4242).to_bytes(4, "big") + b"\x02a"
    with pytest.raises(UnknownSchemaIdError) as info:
        codec.decode(TOPIC, data)
    message = str(info.value)
    assert "4242" in message
    assert source.url in message
    assert TOPIC in message
    assert "another registry" in message
    # A burst of the same unknown id does not hammer the registry.
    for _ in range(5):
        with pytest.raises(UnknownSchemaIdError):
            codec.decode(TOPIC, data)
    assert source.schema_for_id_calls[4242] == 1


def test_truncated_body_is_a_schema_mismatch(
    codec: AvroCodec, source: InMemorySchemaSource
) -> None:
    data = codec.encode(TOPIC, share())
    schema_id = source.subjects()[f"{TOPIC}-value"][0]
    for cut in (6, len(data) // 2, len(data) - 1):
        with pytest.raises(SchemaMismatchError) as info:
            codec.decode(TOPIC, data[:cut])
        assert f"schema id {schema_id}" in str(info.value)
        assert TOPIC in str(info.value)


def test_garbled_and_overlong_bodies_are_schema_mismatches(codec: AvroCodec) -> None:
    data = codec.encode(TOPIC, share())
    with pytest.raises(SchemaMismatchError, match="left over"):
        codec.decode(TOPIC, data + b"\x00\x00")
    garbled = data[:5] + b"\xff" * 12 + data[17:]
    with pytest.raises(SchemaMismatchError):
        codec.decode(TOPIC, garbled)


def test_value_written_with_another_record_is_a_schema_mismatch(codec: AvroCodec) -> None:
    control = {
        "control_id": "c",
        "at": T,
        "kind": "SUSPEND_RECIPIENT",
        "recipient_org": "acme-vision",
        "reason": "r",
        "actor": "a",
    }
    data = codec.encode("governance.controls", control)
    with pytest.raises(SchemaMismatchError):
        codec.decode(TOPIC, data)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (share(purpose="SPYING"), "field purpose"),
        ({k: v for k, v in share().items() if k != "owner_id"}, "missing field(s) owner_id"),
        ({**share(), "colour": "red"}, "unknown field(s) colour"),
        (share(occurred_at="yesterday"), "field occurred_at"),
        (share(owner_id=None), "field owner_id"),
    ],
)
def test_encode_refuses_records_that_do_not_fit(
    codec: AvroCodec, source: InMemorySchemaSource, record: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(SchemaMismatchError) as info:
        codec.encode(TOPIC, record)
    message = str(info.value)
    assert fragment in message
    assert TOPIC in message
    assert f"schema id {source.subjects()[f'{TOPIC}-value'][0]}" in message


def test_unknown_topic_is_a_config_error(codec: AvroCodec) -> None:
    with pytest.raises(ConfigError, match="no Avro schema"):
        codec.encode("no.such.topic", share())


def test_failing_source_becomes_registry_error() -> None:
    class Broken(InMemorySchemaSource):
        def schema_for_id(self, schema_id: int) -> str:
            raise OSError("connection reset")

    codec = AvroCodec(Broken())
    with pytest.raises(RegistryError, match="connection reset"):
        codec.decode(TOPIC, b"\x00\x00\x00\x00\x07abc")


def test_unreachable_registry_names_url_and_hint() -> None:
    url = "http://127.0.0.1:9/apis/ccompat/v7"
    codec = AvroCodec(RegistrySchemaSource(url))
    with pytest.raises(RegistryError) as info:
        codec.decode(TOPIC, b"\x00\x00\x00\x00\x07abc")
    assert url in str(info.value)
    assert "consentinel stack up" in str(info.value)
    with pytest.raises(RegistryError, match="SCHEMA_REGISTRY_URL"):
        codec.encode(TOPIC, share())


def test_no_raw_exception_escapes_decode_of_random_bytes(codec: AvroCodec) -> None:
    import random

    from streams.errors import SerdeError

    data = codec.encode(TOPIC, share())
    rng = random.Random(7)
    for _ in range(2000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        with contextlib.suppress(SerdeError):
            codec.decode(TOPIC, data[:5] + body)
