"""The Consentinel producer SDK: typed, validated contract events onto Kafka.

Example::

    from streams.sdk import ConsentinelProducer

    with ConsentinelProducer(source="photo-app") as producer:
        producer.photo_uploaded(photo_id="p1", owner_id="u1", content_sha256="...",
                                media_type="image/jpeg", size_bytes=123456)
"""

from streams.sdk.producer import (
    REQUIRED_PRODUCER_CONFIG,
    ConsentinelProducer,
    Timestamp,
    now_millis,
    to_millis,
    validate_event,
)

__all__ = [
    "REQUIRED_PRODUCER_CONFIG",
    "ConsentinelProducer",
    "Timestamp",
    "now_millis",
    "to_millis",
    "validate_event",
]
