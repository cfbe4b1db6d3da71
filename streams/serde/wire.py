"""The Confluent wire format codec: ``0x00`` + 4-byte big-endian schema id + Avro binary body.

:class:`AvroCodec` is pure apart from the :class:`SchemaSource` it is given (the registry, or a fake
in tests). Guarantees:

- Each writer schema is fetched from the source at most once per id, parsed once, and cached.
- Values are read with the *local* schema of the topic as reader schema, so Avro schema resolution
  applies: an enum symbol newer than our schema reads as ``UNKNOWN`` (the enum's default), a field
  we do not know is skipped, a field the writer lacks takes our default.
- Timestamps (``timestamp-millis``) are decoded as plain ``int`` epoch milliseconds, never
  :class:`datetime.datetime`: both schemas are read through copies with that annotation stripped.
- :meth:`AvroCodec.encode` accepts ``int`` epoch milliseconds (or aware datetimes) for timestamps
  and refuses records with missing or extra fields.
- Nothing but :class:`~streams.errors.ConsentinelError` subclasses escapes ``encode``/``decode``:
  :class:`UndecodableBytesError`, :class:`UnknownSchemaIdError`, :class:`SchemaMismatchError`,
  :class:`~streams.errors.RegistryError` (source unreachable) or
  :class:`~streams.errors.ConfigError` (a topic with no local schema).
"""

from __future__ import annotations

import json
import struct
import time
from io import BytesIO
from typing import Any, Protocol

import fastavro
from fastavro.validation import ValidationError, validate

from streams.errors import (
    ConsentinelError,
    RegistryError,
    SchemaMismatchError,
    UndecodableBytesError,
    UnknownSchemaIdError,
)
from streams.serde.catalog import (
    Catalog,
    RecordSchema,
    default_catalog,
    strip_timestamp_logical_types,
)
from streams.topics import value_subject

MAGIC_BYTE = 0
"""First byte of every value in the Confluent wire format."""

HEADER_SIZE = 5
"""Magic byte plus the 4-byte schema id."""

_HEADER = struct.Struct(">bI")
_UNKNOWN_ID_RETRY_SECONDS = 30.0
_REGISTRY_HINT = "is the schema registry up? (`consentinel stack up`, or set SCHEMA_REGISTRY_URL)"
_WIRE_HINT = (
    "the producer must use the Confluent wire format: byte 0x00, the 4-byte big-endian schema id,"
    " then the Avro body (use streams.sdk or confluent_kafka's AvroSerializer)"
)

Record = dict[str, Any]
"""A decoded or to-be-encoded record: field name → value (timestamps as int epoch millis)."""


class SchemaSource(Protocol):
    """Where writer schemas come from and where ours get their ids: a schema registry or a fake."""

    @property
    def url(self) -> str:
        """Where the schemas live, for error messages (e.g. the registry URL)."""
        ...

    def schema_for_id(self, schema_id: int) -> str:
        """Return the schema text registered under ``schema_id``.

        Raises:
            UnknownSchemaIdError: the source has no schema with that id.
            RegistryError: the source cannot be reached.
        """
        ...

    def id_for(self, subject: str, schema_str: str) -> int:
        """Return the id of ``schema_str`` as registered under ``subject``.

        Raises:
            RegistryError: not registered (and the source does not auto-register), or unreachable.
        """
        ...


def unknown_schema_id_error(schema_id: int, url: str) -> UnknownSchemaIdError:
    """Build the one standard error for a schema id the source does not know."""
    return UnknownSchemaIdError(
        f"schema id {schema_id} is not known to the schema registry at {url}",
        hint="was the topic written against another registry? check SCHEMA_REGISTRY_URL",
    )


def _preview(data: bytes) -> str:
    """Describe the first bytes of a value for an error message."""
    head = data[:8].hex(" ")
    return f"{len(data)} bytes starting {head}{' ...' if len(data) > 8 else ''}"


class AvroCodec:
    """Encode and decode topic values in the Confluent wire format against the local schemas.

    Thread-safety: caches are plain dicts filled idempotently; concurrent use from threads may
    fetch a schema twice but never yields a wrong result.
    """

    def __init__(self, source: SchemaSource, catalog: Catalog | None = None) -> None:
        self._source = source
        self._catalog = catalog if catalog is not None else default_catalog()
        # schema id -> (writer schema JSON, parsed), both with timestamps stripped
        self._writers: dict[int, tuple[Any, Any]] = {}
        # (topic, schema id) -> (parsed writer schema, parsed reader schema or None when identical)
        self._readers: dict[tuple[str, int], tuple[Any, Any]] = {}
        # topic -> (5-byte wire header of our schema for the topic, that schema)
        self._writing: dict[str, tuple[bytes, RecordSchema]] = {}
        # schema id -> monotonic time until which an unknown id is not asked for again
        self._unknown_until: dict[int, float] = {}

    @property
    def catalog(self) -> Catalog:
        """The local schemas this codec writes with and reads into."""
        return self._catalog

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, topic: str, data: bytes | None) -> Record:
        """Decode one value read from ``topic`` into a record of the topic's local schema."""
        return self.decode_with_id(topic, data)[1]

    def decode_with_id(self, topic: str, data: bytes | None) -> tuple[int, Record]:
        """Decode one value and also return the writer's schema id."""
        if not data or len(data) < HEADER_SIZE:
            what = "null (a tombstone?)" if data is None else _preview(data)
            raise UndecodableBytesError(
                f"value on {topic!r} is too short for the Confluent wire format: {what}",
                hint=_WIRE_HINT,
            )
        try:
            magic, schema_id = _HEADER.unpack_from(data)
        except (struct.error, TypeError) as exc:
            raise UndecodableBytesError(
                f"value on {topic!r} is not bytes: {type(data).__name__}", hint=_WIRE_HINT
            ) from exc
        if magic != MAGIC_BYTE:
            raise UndecodableBytesError(
                f"value on {topic!r} does not start with the magic byte 0x00: {_preview(data)}",
                hint=_WIRE_HINT,
            )
        schemas = self._readers.get((topic, schema_id))
        if schemas is None:
            schemas = self._resolve(topic, schema_id)
        return schema_id, self._read_body(topic, schema_id, data, schemas)

    def decode_as_written(self, topic: str, data: bytes | None) -> Record:
        """Decode one value with its writer's schema alone: exactly the fields it was written with.

        For auditing: no schema resolution adds defaults for fields the writer did not have.
        """
        schema_id, _ = self.decode_with_id(topic, data)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(topic, schema_id)
        return self._read_body(topic, schema_id, data or b"", (writer[1], None))

    def _read_body(
        self, topic: str, schema_id: int, data: bytes, schemas: tuple[Any, Any]
    ) -> Record:
        buffer = BytesIO(data)
        buffer.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(buffer, schemas[0], schemas[1])
        except Exception as exc:  # truncated or garbled bodies raise many unrelated types
            raise self._body_error(topic, schema_id, f"{type(exc).__name__}: {exc}") from exc
        if buffer.tell() != len(data):
            raise self._body_error(
                topic, schema_id, f"{len(data) - buffer.tell()} bytes left over after the record"
            )
        if not isinstance(record, dict):
            raise self._body_error(topic, schema_id, "the writer schema is not a record")
        return record

    @staticmethod
    def _body_error(topic: str, schema_id: int, reason: str) -> SchemaMismatchError:
        return SchemaMismatchError(
            f"cannot decode value on {topic!r} written with schema id {schema_id}: {reason}",
            hint="the body is truncated or garbled, or not written with the schema its id names",
        )

    def _resolve(self, topic: str, schema_id: int) -> tuple[Any, Any]:
        """Build and cache the (writer, reader) pair for values of ``topic`` written with an id."""
        reader = self._catalog.for_topic(topic)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer(topic, schema_id)
        # Identical schemas need no resolution: read with ours alone (the fast path).
        same = writer[0] == reader.plain
        pair = (reader.parsed_plain, None) if same else (writer[1], reader.parsed_plain)
        self._readers[(topic, schema_id)] = pair
        return pair

    def _fetch_writer(self, topic: str, schema_id: int) -> tuple[Any, Any]:
        """Fetch, strip and parse the writer schema of ``schema_id`` (once per id)."""
        retry_at = self._unknown_until.get(schema_id)
        if retry_at is not None and time.monotonic() < retry_at:
            raise _with_topic(unknown_schema_id_error(schema_id, self._source.url), topic)
        try:
            text = self._source.schema_for_id(schema_id)
        except UnknownSchemaIdError as exc:
            if len(self._unknown_until) > 1024:
                self._unknown_until.clear()
            self._unknown_until[schema_id] = time.monotonic() + _UNKNOWN_ID_RETRY_SECONDS
            raise _with_topic(exc, topic) from exc
        except ConsentinelError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"fetching schema id {schema_id} from {self._source.url} failed: {exc}",
                hint=_REGISTRY_HINT,
            ) from exc
        try:
            plain = strip_timestamp_logical_types(json.loads(text))
            return plain, fastavro.parse_schema(plain)
        except Exception as exc:
            raise SchemaMismatchError(
                f"schema id {schema_id} (topic {topic!r}) from {self._source.url} is not a usable"
                f" Avro schema: {exc}"
            ) from exc

    # -- encoding -------------------------------------------------------------------------------

    def encode(self, topic: str, record: Record) -> bytes:
        """Encode ``record`` with the topic's local schema, prefixed by its registry id.

        Raises:
            SchemaMismatchError: the record does not fit the schema (the message says why).
            RegistryError: the schema has no id yet (run ``consentinel schemas register``).
        """
        writing = self._writing.get(topic)
        if writing is None:
            writing = self._prepare_writing(topic)
        header, schema = writing
        buffer = BytesIO()
        buffer.write(header)
        try:
            fastavro.schemaless_writer(buffer, schema.parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises TypeError/ValueError/KeyError/... here
            raise SchemaMismatchError(
                f"record for {topic!r} does not fit {schema.full_name} (schema id"
                f" {_HEADER.unpack(header)[1]}): {_encode_reason(schema, record, exc)}",
                hint="fix the record's field names, types and enum symbols",
            ) from exc
        return buffer.getvalue()

    def _prepare_writing(self, topic: str) -> tuple[bytes, RecordSchema]:
        """Look up our schema's id for ``topic`` once and cache the 5-byte header with it."""
        schema = self._catalog.for_topic(topic)
        try:
            schema_id = self._source.id_for(value_subject(topic), schema.schema_str)
        except ConsentinelError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"looking up the id of {schema.full_name} under {value_subject(topic)!r} at"
                f" {self._source.url} failed: {exc}",
                hint=_REGISTRY_HINT,
            ) from exc
        writing = self._writing[topic] = (_HEADER.pack(MAGIC_BYTE, schema_id), schema)
        return writing

    def schema_id(self, topic: str) -> int:
        """Return the registry id our schema for ``topic`` is written with (looked up once)."""
        writing = self._writing.get(topic) or self._prepare_writing(topic)
        return int(_HEADER.unpack(writing[0])[1])


def _with_topic(exc: UnknownSchemaIdError, topic: str) -> UnknownSchemaIdError:
    """Return a copy of an unknown-id error whose message also names the topic."""
    return UnknownSchemaIdError(f"value on {topic!r}: {exc.message}", hint=exc.hint)


def _encode_reason(schema: RecordSchema, record: Any, exc: Exception) -> str:
    """Explain briefly why ``record`` does not fit ``schema``: which field, got what, wanted."""
    if not isinstance(record, dict):
        return f"expected a dict, got {type(record).__name__}"
    fields = schema.raw["fields"]
    known = {field["name"] for field in fields}
    missing = [f["name"] for f in fields if f["name"] not in record and "default" not in f]
    extra = sorted(str(name) for name in record if name not in known)
    problems = []
    if missing:
        problems.append("missing field(s) " + ", ".join(missing))
    if extra:
        problems.append("unknown field(s) " + ", ".join(extra))
    if not problems:
        try:
            validate(record, schema.parsed, raise_errors=True)
        except ValidationError as invalid:
            prefix = schema.full_name + "."
            problems.extend(
                f"field {str(err.field).removeprefix(prefix)}: got {_short(err.datum)},"
                f" expected {_describe(err.schema)}"
                for err in invalid.errors
            )
        except Exception as other:
            problems.append(f"{type(other).__name__}: {other}")
    return "; ".join(problems) or f"{type(exc).__name__}: {exc}"


def _short(value: Any) -> str:
    """Return a short ``repr`` of a value with its type."""
    text = repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__})"


def _describe(avro_type: Any) -> str:
    """Describe an Avro type in a few words (enum symbols listed, records by name only)."""
    if isinstance(avro_type, list):
        return " or ".join(_describe(item) for item in avro_type)
    if not isinstance(avro_type, dict):
        return str(avro_type)
    kind = avro_type.get("type")
    if kind == "enum":
        return "one of " + ", ".join(avro_type["symbols"])
    if kind == "array":
        return f"array of {_describe(avro_type['items'])}"
    if kind in ("record", "fixed"):
        return str(avro_type.get("name", kind))
    if "logicalType" in avro_type:
        return f"{kind} ({avro_type['logicalType']})"
    return _describe(kind)
