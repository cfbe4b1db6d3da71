"""Avro serialization in the Confluent wire format against the local ``schemas/*.avsc``.

- :mod:`streams.serde.catalog`: the local schemas and the topic → record map.
- :mod:`streams.serde.wire`: :class:`AvroCodec`, the pure wire-format codec.
- :mod:`streams.serde.registry`: the schema registry adapter and :func:`register_all`.
- :mod:`streams.serde.testing`: :class:`InMemorySchemaSource`, a fake registry for tests.
"""

from streams.serde.catalog import Catalog, RecordSchema, default_catalog
from streams.serde.registry import RegisteredSubject, RegistrySchemaSource, register_all
from streams.serde.wire import AvroCodec, Record, SchemaSource

__all__ = [
    "AvroCodec",
    "Catalog",
    "Record",
    "RecordSchema",
    "RegisteredSubject",
    "RegistrySchemaSource",
    "SchemaSource",
    "default_catalog",
    "register_all",
]
