"""The one place that builds the Avro codec a process uses, from its settings."""

from __future__ import annotations

from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings


def codec_from_settings(settings: Settings) -> AvroCodec:
    """Return a codec over the settings' registry, for the topic names under their prefix."""
    return AvroCodec(RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings))
