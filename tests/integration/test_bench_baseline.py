"""``bench.run --baseline REF`` across a schema change: the old gate's schemas on its own subjects.

A gate refuses to start while the latest schema of a subject it writes is not its own. The
baseline step registers the baseline checkout's versions of the schemas that differ, on the
baseline's prefix only, as the latest versions there (the registry's ``FULL_TRANSITIVE`` rule
accepts a field removed with its default).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from bench.systems import register_baseline_schemas
from streams import topics
from streams.serde.catalog import TOPIC_RECORDS, default_catalog, schemas_dir
from streams.serde.registry import make_client, register_all

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(registry_url: str, unique: str) -> Iterator[str]:
    name = f"scratch-it-base-{unique}."
    yield name
    client = make_client(registry_url, credentials=None)
    for subject in client.get_subjects():
        if subject.startswith(name):
            for permanent in (False, True):
                with contextlib.suppress(Exception):
                    client.delete_subject(subject, permanent=permanent)


def older_schemas(tmp_path: Path) -> Path:
    """This checkout's schemas, with ``Decision`` as it was before ``share_id``."""
    copy = tmp_path / "schemas"
    shutil.copytree(schemas_dir(), copy)
    path = copy / "decision.avsc"
    schema = json.loads(path.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "share_id"]
    path.write_text(json.dumps(schema, indent=2))
    return copy


def latest(client: SchemaRegistryClient, subject: str) -> dict[str, object]:
    return dict(json.loads(client.get_latest_version(subject).schema.schema_str))


def test_the_baseline_schemas_that_differ_become_latest_on_its_prefix_alone(
    registry_url: str, prefix: str, tmp_path: Path
) -> None:
    ours = default_catalog().with_topics({prefix + t: r for t, r in TOPIC_RECORDS.items()})
    register_all(registry_url, ours, topics=[prefix + t for t in TOPIC_RECORDS], credentials=None)
    client = make_client(registry_url, credentials=None)
    decisions = f"{prefix}{topics.TOPIC_DECISIONS}-value"
    assert "share_id" in {f["name"] for f in latest(client, decisions)["fields"]}  # type: ignore[union-attr]

    registered = register_baseline_schemas(registry_url, older_schemas(tmp_path), prefix)

    assert registered == [decisions]
    client = make_client(registry_url, credentials=None)  # the client caches "latest"
    assert client.get_versions(decisions) == [1, 2]
    fields = {f["name"] for f in latest(client, decisions)["fields"]}  # type: ignore[union-attr]
    assert "share_id" not in fields and "decision_id" in fields
    consents = f"{prefix}{topics.TOPIC_CONSENT_CHANGES}-value"
    assert client.get_versions(consents) == [1]  # an unchanged schema is left alone
