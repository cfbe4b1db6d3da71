"""The local Avro schemas (``schemas/*.avsc``) and which record each topic carries.

A :class:`Catalog` reads every ``.avsc`` file once, parses it with :func:`fastavro.parse_schema`
(twice: as written, and with ``timestamp-millis`` stripped, see
:func:`strip_timestamp_logical_types`) and maps topics to records. It is immutable after loading;
:func:`default_catalog` returns the process-wide instance.

The schemas directory is ``$CONSENTINEL_SCHEMAS_DIR`` when set, otherwise the repository's
``schemas/`` directory found relative to this file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import fastavro

from streams import topics
from streams.errors import ConfigError

if TYPE_CHECKING:
    from streams.settings import Settings

SCHEMAS_DIR_ENV = "CONSENTINEL_SCHEMAS_DIR"
"""Environment variable that overrides the schemas directory."""

NAMESPACE = "consentinel.v1"
"""The Avro namespace of every record of the contract."""

RECORD_FILES: Mapping[str, str] = MappingProxyType(
    {
        "PhotoUploaded": "photo_uploaded.avsc",
        "ConsentChanged": "consent_changed.avsc",
        "PhotoShareRequested": "photo_share_requested.avsc",
        "TrainingRead": "training_read.avsc",
        "Decision": "decision.avsc",
        "Alert": "alert.avsc",
        "Control": "control.avsc",
        "DeadLetter": "dead_letter.avsc",
        "ErasureRequested": "erasure_requested.avsc",
        "RecallOrder": "recall_order.avsc",
        "RecallAcknowledged": "recall_acknowledged.avsc",
        "ChainCheckpoint": "chain_checkpoint.avsc",
    }
)
"""Record name (without namespace) → file name in the schemas directory."""

TOPIC_RECORDS: Mapping[str, str] = MappingProxyType(
    {
        topics.TOPIC_PHOTO_UPLOADS: "PhotoUploaded",
        topics.TOPIC_CONSENT_CHANGES: "ConsentChanged",
        topics.TOPIC_SHARE_REQUESTS: "PhotoShareRequested",
        topics.TOPIC_TRAINING_READS: "TrainingRead",
        topics.TOPIC_DECISIONS: "Decision",
        topics.TOPIC_SHARE_APPROVED: "PhotoShareRequested",
        topics.TOPIC_ALERTS: "Alert",
        topics.TOPIC_CONTROLS: "Control",
        topics.TOPIC_DLQ: "DeadLetter",
        topics.TOPIC_ERASURE_REQUESTS: "ErasureRequested",
        topics.TOPIC_RECALLS: "RecallOrder",
        topics.TOPIC_RECALL_ACKS: "RecallAcknowledged",
        topics.TOPIC_CHECKPOINTS: "ChainCheckpoint",
    }
)
"""Topic → record name (without namespace) of its values, per the contract's table."""


def schemas_dir() -> Path:
    """Return the schemas directory: ``$CONSENTINEL_SCHEMAS_DIR`` or the packaged schemas.

    The packaged schemas (:func:`streams.resources.schemas_path`) are the repository's
    ``schemas/`` in a checkout and a copy inside the installed wheel otherwise.
    """
    override = os.environ.get(SCHEMAS_DIR_ENV)
    if override:
        return Path(override)
    from streams.resources import schemas_path

    return schemas_path()


def strip_timestamp_logical_types(schema: Any) -> Any:
    """Return a deep copy of a JSON schema with every ``timestamp-millis`` annotation removed.

    Reading with the stripped copy yields timestamps as plain ``int`` epoch milliseconds instead of
    :class:`datetime.datetime`, which is faster and what the pure core works with. The binary
    encoding is the same (``long``), so stripped and annotated schemas are wire-identical.
    """
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis" and schema.get("type") == "long":
            return "long"
        return {key: strip_timestamp_logical_types(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [strip_timestamp_logical_types(item) for item in schema]
    return schema


@dataclass(frozen=True, eq=False)
class RecordSchema:
    """One record of the contract as loaded from its ``.avsc`` file.

    Attributes:
        name: The record name without namespace, e.g. ``"Decision"``.
        full_name: The fully qualified name, e.g. ``"consentinel.v1.Decision"``.
        path: The file it was read from.
        schema_str: The compact JSON text registered in the schema registry (docs included).
        raw: The JSON schema as a dict (annotated with logical types).
        parsed: ``fastavro.parse_schema(raw)``: use for writing (accepts int millis or datetimes).
        plain: The JSON schema with ``timestamp-millis`` stripped.
        parsed_plain: ``fastavro.parse_schema(plain)``: use for reading timestamps as ints.
        enums: Enum-typed field (also array or nullable of an enum) → its symbols, in order.
    """

    name: str
    full_name: str
    path: Path
    schema_str: str
    raw: Mapping[str, Any]
    parsed: Any
    plain: Mapping[str, Any]
    parsed_plain: Any
    enums: Mapping[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path) -> RecordSchema:
        """Read, check and parse one ``.avsc`` file; :class:`ConfigError` if it is unusable."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read Avro schema {path}: {exc}",
                hint=f"restore the file, or point {SCHEMAS_DIR_ENV} at a full schemas directory",
            ) from exc
        if not isinstance(raw, dict) or raw.get("type") != "record" or "name" not in raw:
            raise ConfigError(f"{path} does not hold one Avro record schema")
        try:
            parsed = fastavro.parse_schema(raw)
            plain = strip_timestamp_logical_types(raw)
            parsed_plain = fastavro.parse_schema(plain)
        except Exception as exc:  # fastavro raises several unrelated types for bad schemas
            raise ConfigError(f"{path} is not a valid Avro schema: {exc}") from exc
        namespace = raw.get("namespace", NAMESPACE)
        return cls(
            name=raw["name"],
            full_name=f"{namespace}.{raw['name']}",
            path=path,
            schema_str=json.dumps(raw, separators=(",", ":"), ensure_ascii=False),
            raw=raw,
            parsed=parsed,
            plain=plain,
            parsed_plain=parsed_plain,
            enums=MappingProxyType(_field_enums(raw)),
        )


def _field_enums(raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Map each enum-typed field (or array-of-enum, or nullable enum) to its enum's symbols."""
    named: dict[str, tuple[str, ...]] = {}

    def collect(avro_type: Any) -> None:
        if isinstance(avro_type, list):
            for item in avro_type:
                collect(item)
        elif isinstance(avro_type, dict):
            if avro_type.get("type") == "enum":
                named[avro_type["name"]] = tuple(avro_type["symbols"])
            for value in avro_type.values():
                collect(value)

    def symbols(avro_type: Any) -> tuple[str, ...] | None:
        if isinstance(avro_type, str):
            return named.get(avro_type.rsplit(".", 1)[-1])
        if isinstance(avro_type, list):
            found = [s for s in (symbols(item) for item in avro_type) if s is not None]
            return found[0] if len(found) == 1 else None
        if avro_type.get("type") == "enum":
            return tuple(avro_type["symbols"])
        if avro_type.get("type") == "array":
            return symbols(avro_type["items"])
        return None

    collect(raw["fields"])
    result = {}
    for field in raw["fields"]:
        found = symbols(field["type"])
        if found is not None:
            result[field["name"]] = found
    return result


class Catalog:
    """The loaded records and the topic → record map. Immutable; share it freely."""

    def __init__(
        self, records: Mapping[str, RecordSchema], topic_records: Mapping[str, str]
    ) -> None:
        unknown = {rec for rec in topic_records.values() if rec not in records}
        if unknown:
            raise ConfigError(f"topics map to records with no schema: {sorted(unknown)}")
        self._records = MappingProxyType(dict(records))
        self._topics = MappingProxyType(dict(topic_records))

    @classmethod
    def load(cls, directory: Path | None = None) -> Catalog:
        """Load every record of the contract from ``directory`` (default :func:`schemas_dir`)."""
        base = directory if directory is not None else schemas_dir()
        if not base.is_dir():
            raise ConfigError(
                f"schemas directory {base} does not exist",
                hint=f"run from a checkout of the repository or set {SCHEMAS_DIR_ENV}",
            )
        records = {name: RecordSchema.load(base / file) for name, file in RECORD_FILES.items()}
        for name, record in records.items():
            if record.name != name:
                raise ConfigError(f"{record.path} defines {record.name!r}, expected {name!r}")
        return cls(records, TOPIC_RECORDS)

    @property
    def records(self) -> Mapping[str, RecordSchema]:
        """Record name (without namespace) → record."""
        return self._records

    @property
    def topics(self) -> Mapping[str, str]:
        """Topic → record name."""
        return self._topics

    def record(self, name: str) -> RecordSchema:
        """Return the record called ``name`` (without namespace); :class:`KeyError` if none."""
        return self._records[name]

    def for_topic(self, topic: str) -> RecordSchema:
        """Return the record carried by ``topic``; :class:`ConfigError` if the topic is unmapped."""
        try:
            return self._records[self._topics[topic]]
        except KeyError:
            raise ConfigError(
                f"no Avro schema is mapped to topic {topic!r}",
                hint="known topics: " + ", ".join(sorted(self._topics)),
            ) from None

    def with_topics(self, extra: Mapping[str, str]) -> Catalog:
        """Return a catalog that also maps ``extra`` (topic → record name), e.g. scratch topics.

        The records themselves are shared, not reloaded.
        """
        return Catalog(self._records, {**self._topics, **extra})


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """Return the process-wide catalog, loaded from :func:`schemas_dir` on first use."""
    return Catalog.load()


def prefixed_catalog(settings: Settings) -> Catalog:
    """Return the catalog for the topic names in use: the contract's, under ``topic_prefix``.

    With no prefix this is :func:`default_catalog`; with one, the prefixed names map to the same
    records, and their subjects are ``<prefix><topic>-value`` (TopicNameStrategy on the real name).
    """
    prefix = settings.topic_prefix
    if not prefix:
        return default_catalog()
    return default_catalog().with_topics({prefix + t: r for t, r in TOPIC_RECORDS.items()})
