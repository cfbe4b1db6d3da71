"""FULL_TRANSITIVE on the real registry: what `consentinel schemas register` sets and enforces."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from streams.errors import IncompatibleSchemaError
from streams.serde.catalog import default_catalog
from streams.serde.registry import (
    COMPATIBILITY,
    make_client,
    register_schema,
    subject_compatibility,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch_subject(registry_url: str, unique: str) -> Iterator[tuple[SchemaRegistryClient, str]]:
    client = make_client(registry_url, credentials=None)
    subject = f"scratch-it-compat-{unique}.consent.changes-value"
    try:
        yield client, subject
    finally:
        for permanent in (False, True):
            with contextlib.suppress(Exception):
                client.delete_subject(subject, permanent=permanent)


def consent_changed() -> dict[str, Any]:
    schema = default_catalog().for_topic("consent.changes").schema_str
    return dict(json.loads(schema))


def test_register_sets_full_transitive(scratch_subject: tuple[SchemaRegistryClient, str]) -> None:
    client, subject = scratch_subject
    assert COMPATIBILITY == "FULL_TRANSITIVE"
    first = register_schema(client, subject, json.dumps(consent_changed()))
    assert first.version == 1
    assert subject_compatibility(client, subject) == "FULL_TRANSITIVE"


def test_dropping_notice_version_is_refused_and_an_optional_field_is_accepted(
    scratch_subject: tuple[SchemaRegistryClient, str],
) -> None:
    client, subject = scratch_subject
    v1 = consent_changed()
    first = register_schema(client, subject, json.dumps(v1))

    v2 = copy.deepcopy(v1)
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "notice_version"]
    assert len(v2["fields"]) == len(v1["fields"]) - 1
    with pytest.raises(IncompatibleSchemaError) as refused:
        register_schema(client, subject, json.dumps(v2))
    message = str(refused.value)
    assert subject in message and "FULL_TRANSITIVE" in message
    assert refused.value.error_kind == "INCOMPATIBLE_SCHEMA"
    assert [v for v in client.get_versions(subject)] == [first.version]

    v3 = copy.deepcopy(v1)
    v3["fields"].append(
        {"name": "locale", "type": ["null", "string"], "default": None, "doc": "optional"}
    )
    accepted = register_schema(client, subject, json.dumps(v3))
    assert accepted.version == first.version + 1
    assert subject_compatibility(client, subject) == "FULL_TRANSITIVE"
