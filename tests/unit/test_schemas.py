"""The .avsc files against the contract: names, docs, enum defaults, and a round trip each."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from streams import topics
from streams.serde.catalog import RECORD_FILES, TOPIC_RECORDS, default_catalog, schemas_dir
from streams.serde.testing import SAMPLE_RECORDS

# The contract (CONTRACT.md), hard-coded: record -> fields it names.
COMMON = ["event_id", "occurred_at", "source"]
CONTRACT_FIELDS: dict[str, list[str]] = {
    "PhotoUploaded": [
        *COMMON,
        "photo_id",
        "owner_id",
        "content_sha256",
        "media_type",
        "size_bytes",
    ],
    "ConsentChanged": [
        *COMMON,
        "user_id",
        "purpose",
        "recipient_org",
        "categories",
        "granted",
        "notice_version",
        "expires_at",
    ],
    "PhotoShareRequested": [
        *COMMON,
        "share_id",
        "photo_id",
        "owner_id",
        "requester",
        "recipient_org",
        "purpose",
        "categories",
    ],
    "TrainingRead": [
        *COMMON,
        "job_id",
        "model_id",
        "org",
        "photo_id",
        "owner_id",
        "purpose",
        "categories",
    ],
    "Decision": [
        "decision_id",
        "decided_at",
        "subject_event_id",
        "subject_kind",
        "photo_id",
        "owner_id",
        "actor",
        "recipient_org",
        "purpose",
        "verdict",
        "reason",
        "explanation",
        "policy_version",
        "consent_event_id",
        "prev_hash",
        "hash",
    ],
    "Alert": [
        "alert_id",
        "raised_at",
        "kind",
        "severity",
        "subject",
        "window_start",
        "window_end",
        "observed",
        "threshold",
        "baseline",
        "summary",
        "sample_event_ids",
        "action",
    ],
    "Control": ["control_id", "at", "kind", "recipient_org", "reason", "actor"],
    "DeadLetter": [
        "dead_letter_id",
        "at",
        "source_topic",
        "partition",
        "offset",
        "key",
        "value",
        "error_kind",
        "error",
    ],
    "ErasureRequested": [*COMMON, "request_id", "user_id", "scope", "photo_id", "reason"],
    "RecallOrder": [
        "order_id",
        "issued_at",
        "recipient_org",
        "user_id",
        "photo_ids",
        "model_ids",
        "cause",
        "decision_ids",
        "due_at",
    ],
    "RecallAcknowledged": [
        "order_id",
        "recipient_org",
        "acknowledged_at",
        "deleted_photo_ids",
        "purged_model_ids",
        "evidence",
    ],
    "ChainCheckpoint": [
        "checkpoint_id",
        "at",
        "partition",
        "offset",
        "hash",
        "decisions",
        "key_id",
        "signature",
    ],
}
CONTRACT_ENUMS: dict[str, list[str]] = {
    "Purpose": [
        "SERVICE_OPERATION",
        "ANALYTICS",
        "ADVERTISING",
        "RESEARCH",
        "ML_TRAINING",
        "PARTNER_SHARING",
        "UNKNOWN",
    ],
    "DataCategory": [
        "IMAGE",
        "FACE_BIOMETRIC",
        "DEMOGRAPHIC",
        "LOCATION",
        "PROFILE_TEXT",
        "UNKNOWN",
    ],
    "SubjectKind": ["SHARE", "TRAINING_READ"],
    "Verdict": ["ALLOW", "DENY", "HOLD"],
    "Reason": [
        "CONSENTED",
        "NOT_CONSENT_BASED",
        "NO_CONSENT",
        "CONSENT_REVOKED",
        "CONSENT_EXPIRED",
        "CATEGORY_NOT_CONSENTED",
        "UNKNOWN_PHOTO",
        "OWNER_MISMATCH",
        "RECIPIENT_UNKNOWN",
        "NO_AGREEMENT",
        "PURPOSE_NOT_PERMITTED",
        "RECIPIENT_SUSPENDED",
        "ERASED",
        "UNKNOWN",
    ],
    "AlertKind": [
        "BULK_EXPORT",
        "DENIED_BURST",
        "UNCONSENTED_TRAINING",
        "RETROACTIVE_VIOLATION",
        "RECALL_OVERDUE",
        "UNKNOWN",
    ],
    "Severity": ["INFO", "WARNING", "CRITICAL"],
    "AlertAction": ["NONE", "RECIPIENT_SUSPENDED"],
    "ControlKind": ["SUSPEND_RECIPIENT", "RESUME_RECIPIENT"],
    "ErasureScope": ["PHOTO", "ACCOUNT", "UNKNOWN"],
    "ErasureReason": ["USER_REQUEST", "REGULATOR_ORDER", "POLICY_VIOLATION", "UNKNOWN"],
    "RecallCause": [
        "ERASURE_REQUESTED",
        "CONSENT_WITHDRAWN",
        "UNCONSENTED_TRAINING",
        "RETROACTIVE_VIOLATION",
        "UNKNOWN",
    ],
}
TIMESTAMPS = {
    "PhotoUploaded": ["occurred_at"],
    "ConsentChanged": ["occurred_at", "expires_at"],
    "PhotoShareRequested": ["occurred_at"],
    "TrainingRead": ["occurred_at"],
    "Decision": ["decided_at"],
    "Alert": ["raised_at", "window_start", "window_end"],
    "Control": ["at"],
    "DeadLetter": ["at"],
    "ErasureRequested": ["occurred_at"],
    "RecallOrder": ["issued_at", "due_at"],
    "RecallAcknowledged": ["acknowledged_at"],
    "ChainCheckpoint": ["at"],
}
CONTRACT_TOPICS = {
    "photo.uploads": "PhotoUploaded",
    "consent.changes": "ConsentChanged",
    "photo.share.requests": "PhotoShareRequested",
    "training.reads": "TrainingRead",
    "governance.decisions": "Decision",
    "photo.share.approved": "PhotoShareRequested",
    "governance.alerts": "Alert",
    "governance.controls": "Control",
    "governance.dlq": "DeadLetter",
    "privacy.erasure.requests": "ErasureRequested",
    "governance.recalls": "RecallOrder",
    "governance.recall.acks": "RecallAcknowledged",
    "governance.checkpoints": "ChainCheckpoint",
}

SAMPLES = SAMPLE_RECORDS


def _raw(name: str) -> dict[str, Any]:
    return json.loads((schemas_dir() / RECORD_FILES[name]).read_text())


def _walk_named(avro_type: Any) -> list[dict[str, Any]]:
    """Every inline named type (record/enum) within a type."""
    found: list[dict[str, Any]] = []
    if isinstance(avro_type, list):
        for item in avro_type:
            found += _walk_named(item)
    elif isinstance(avro_type, dict):
        if avro_type.get("type") in ("record", "enum"):
            found.append(avro_type)
        for key in ("items", "values", "type"):
            if key in avro_type:
                found += _walk_named(avro_type[key])
        for field in avro_type.get("fields", []):
            found += _walk_named(field["type"])
    return found


def test_one_file_per_contract_record() -> None:
    files = sorted(p.name for p in Path(schemas_dir()).glob("*.avsc"))
    assert files == sorted(RECORD_FILES.values())
    assert set(RECORD_FILES) == set(CONTRACT_FIELDS)


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_record_parses_and_names_contract_fields(name: str) -> None:
    raw = _raw(name)
    fastavro.parse_schema(raw)
    assert raw["type"] == "record"
    assert raw["name"] == name
    assert raw["namespace"] == "consentinel.v1"
    names = [f["name"] for f in raw["fields"]]
    missing = [f for f in CONTRACT_FIELDS[name] if f not in names]
    assert not missing, f"{name} lacks contract fields {missing}"
    extra = [f for f in raw["fields"] if f["name"] not in CONTRACT_FIELDS[name]]
    assert all("default" in f for f in extra), "fields beyond the contract need defaults"


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_every_record_and_field_has_a_doc(name: str) -> None:
    raw = _raw(name)
    for named in [raw, *_walk_named(raw)]:
        assert named.get("doc", "").strip(), f"{named['name']} has no doc"
    for field in raw["fields"]:
        assert field.get("doc", "").strip(), f"{name}.{field['name']} has no doc"


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_enums_carry_unknown_default_and_contract_symbols(name: str) -> None:
    for named in _walk_named(_raw(name)):
        if named["type"] != "enum":
            continue
        assert "UNKNOWN" in named["symbols"], named["name"]
        assert named.get("default") == "UNKNOWN", named["name"]
        expected = CONTRACT_ENUMS[named["name"]]
        assert [s for s in expected if s not in named["symbols"]] == []


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_timestamps_are_timestamp_millis_longs(name: str) -> None:
    fields = {f["name"]: f for f in _raw(name)["fields"]}
    for field_name in TIMESTAMPS[name]:
        avro_type = fields[field_name]["type"]
        if isinstance(avro_type, list):
            assert avro_type[0] == "null"
            assert fields[field_name]["default"] is None
            avro_type = avro_type[1]
        assert avro_type == {"type": "long", "logicalType": "timestamp-millis"}


def test_input_events_have_common_fields() -> None:
    for name in (
        "PhotoUploaded",
        "ConsentChanged",
        "PhotoShareRequested",
        "TrainingRead",
        "ErasureRequested",
    ):
        fields = {f["name"]: f["type"] for f in _raw(name)["fields"]}
        assert fields["event_id"] == "string"
        assert fields["source"] == "string"


def test_dead_letter_key_and_value_are_bytes() -> None:
    fields = {f["name"]: f for f in _raw("DeadLetter")["fields"]}
    assert fields["key"]["type"] == ["null", "bytes"]
    assert fields["value"]["type"] == "bytes"


def test_topics_map_to_contract_records() -> None:
    assert dict(TOPIC_RECORDS) == CONTRACT_TOPICS
    # In the contract table's order, every topic once.
    assert list(topics.ALL_TOPICS) == list(CONTRACT_TOPICS)
    assert {
        "photo.uploads",
        "consent.changes",
        "photo.share.requests",
        "training.reads",
    } == topics.INPUT_TOPICS
    assert {*topics.INPUT_TOPICS, "privacy.erasure.requests"} == topics.GATE_INPUT_TOPICS
    assert topics.value_subject("photo.uploads") == "photo.uploads-value"


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_sample_round_trips(name: str) -> None:
    schema = default_catalog().record(name)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.parsed, SAMPLES[name], strict=True)
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, schema.parsed_plain) == SAMPLES[name]


def test_catalog_enums_are_exposed() -> None:
    schema = default_catalog().record("Decision")
    assert schema.enums["verdict"] == ("ALLOW", "DENY", "HOLD", "UNKNOWN")
    assert "FACE_BIOMETRIC" in schema.enums["categories"]


def test_new_contract_records_field_types() -> None:
    erasure = {f["name"]: f for f in _raw("ErasureRequested")["fields"]}
    assert erasure["photo_id"]["type"] == ["null", "string"]
    assert erasure["photo_id"]["default"] is None
    order = {f["name"]: f["type"] for f in _raw("RecallOrder")["fields"]}
    ack = {f["name"]: f["type"] for f in _raw("RecallAcknowledged")["fields"]}
    for field in ("photo_ids", "model_ids", "decision_ids"):
        assert order[field] == {"type": "array", "items": "string"}
    for field in ("deleted_photo_ids", "purged_model_ids"):
        assert ack[field] == {"type": "array", "items": "string"}
    assert ack["evidence"] == "string"
    checkpoint = {f["name"]: f["type"] for f in _raw("ChainCheckpoint")["fields"]}
    assert checkpoint["partition"] == "int"
    assert checkpoint["offset"] == "long"
    assert checkpoint["decisions"] == "long"
    assert checkpoint["signature"] == "bytes"


def _without_symbol(raw: dict[str, Any], symbol: str) -> dict[str, Any]:
    """The schema as it was before ``symbol`` was added to one of its enums."""
    text = json.dumps(raw).replace(f'"{symbol}", ', "")
    assert symbol not in text
    return json.loads(text)


@pytest.mark.parametrize(
    ("name", "field", "symbol"),
    [("Decision", "reason", "ERASED"), ("Alert", "kind", "RECALL_OVERDUE")],
)
def test_new_enum_symbols_are_readable_both_ways(name: str, field: str, symbol: str) -> None:
    """FULL compatibility: an old reader sees the new symbol as UNKNOWN; a new reader reads old."""
    new = _raw(name)
    old = _without_symbol(new, symbol)
    record = {**SAMPLES[name], field: symbol}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(new), record)
    buffer.seek(0)
    as_old = fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(new), fastavro.parse_schema(old)
    )
    assert as_old[field] == "UNKNOWN"
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), SAMPLES[name])
    buffer.seek(0)
    as_new = fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(old), fastavro.parse_schema(new)
    )
    assert as_new[field] == SAMPLES[name][field]
