"""The producer SDK: typed, validated events onto the input topics, keyed per the contract.

:class:`ConsentinelProducer` guarantees, for every event it accepts:

- the value is Avro in the Confluent wire format, written with the schema registered under
  ``<topic>-value`` (run ``consentinel schemas register`` first);
- the key is the owner's id (``owner_id`` / ``user_id``) as UTF-8, and partitioning is
  ``murmur2_random`` (the Java client's default), so all clients put a user on the same partition;
- ``enable.idempotence=true`` and ``acks=all``: no duplicates from retries, no acknowledged loss;
- the Kafka timestamp is the event's ``occurred_at``;
- enum fields hold a symbol of the schema other than ``UNKNOWN``, required strings are non-empty,
  timestamps are int epoch milliseconds or aware datetimes: otherwise
  :class:`~streams.errors.InvalidEventError` is raised and nothing is produced.

Delivery is asynchronous: call :meth:`ConsentinelProducer.flush`, which raises
:class:`~streams.errors.DeliveryError` listing every record Kafka did not acknowledge.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams import topics
from streams.core.ack_signing import sign_ack
from streams.errors import ConfigError, DeliveryError, InvalidEventError
from streams.sdk.ack_key import AckKey, resolve_ack_key
from streams.sdk.validation import id_list, symbol_list
from streams.sdk.validation import validate_event as validate_event
from streams.serde.catalog import TOPIC_RECORDS, default_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec, Record
from streams.settings import Settings
from streams.settings import settings as current_settings

REQUIRED_PRODUCER_CONFIG: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
}
"""Settings every Consentinel producer runs with; they override anything passed in."""

Timestamp = int | datetime
"""Epoch milliseconds UTC, or a timezone-aware datetime."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_DELIVERY_HINT = "check the broker and the topic exist, then produce again (event_id dedupes)"


def to_millis(value: Timestamp, field: str) -> int:
    """Convert an aware datetime or int epoch milliseconds to int epoch milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError(f"{field} must be timezone-aware, got naive {value}")
        return (value - _EPOCH) // _MILLISECOND
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidEventError(f"{field} must be int epoch milliseconds or an aware datetime")


def now_millis() -> int:
    """Return the current time in epoch milliseconds UTC."""
    return time.time_ns() // 1_000_000


class ConsentinelProducer:
    """Produce contract events to Kafka. One instance per process; not for use across threads.

    Args:
        settings: Where Kafka and the registry are (default: from the environment).
        source: The ``source`` stamped on events that do not name one (the emitting service).
        codec: The codec to encode with (default: one over the settings' schema registry).
        topic_names: Contract topic → the topic actually written (e.g. scratch topics in tests).
        config: Extra librdkafka settings (e.g. ``linger.ms``); cannot weaken the required ones.
        ack_key: A recipient's Ed25519 private key (or its PEM file's path) that signs
            :meth:`acknowledge_recall`'s acknowledgements.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        source: str = "consentinel-sdk",
        codec: AvroCodec | None = None,
        topic_names: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        producer: Producer | None = None,
        ack_key: AckKey | None = None,
    ) -> None:
        self._ack_key = None if ack_key is None else resolve_ack_key(ack_key)
        self._settings = settings if settings is not None else current_settings()
        self._source = source
        if topic_names is None and self._settings.topic_prefix:
            topic_names = {t: self._settings.topic_prefix + t for t in TOPIC_RECORDS}
        self._topic_names = dict(topic_names or {})
        unknown = sorted(set(self._topic_names) - set(TOPIC_RECORDS))
        if unknown:
            raise ConfigError(f"topic_names renames topics the contract does not have: {unknown}")
        if codec is None:
            catalog = default_catalog().with_topics(
                {actual: TOPIC_RECORDS[logical] for logical, actual in self._topic_names.items()}
            )
            codec = AvroCodec(RegistrySchemaSource.from_settings(self._settings), catalog)
        self._codec = codec
        conf = {**self._settings.kafka_config(), **(config or {}), **REQUIRED_PRODUCER_CONFIG}
        self._config = conf
        self._producer = producer if producer is not None else Producer(conf)
        self._failures: list[tuple[str, bytes | None, str]] = []

    @property
    def config(self) -> dict[str, Any]:
        """The effective librdkafka settings (every ``*.password`` masked)."""
        return {k: ("***" if k.endswith(".password") else v) for k, v in self._config.items()}

    @property
    def codec(self) -> AvroCodec:
        """The codec values are encoded with."""
        return self._codec

    def topic(self, contract_topic: str) -> str:
        """Return the topic actually written for a contract topic name."""
        return self._topic_names.get(contract_topic, contract_topic)

    # -- typed events ---------------------------------------------------------------------------

    def photo_uploaded(
        self,
        *,
        photo_id: str,
        owner_id: str,
        content_sha256: str,
        media_type: str,
        size_bytes: int,
        event_id: str | None = None,
        occurred_at: Timestamp | None = None,
        source: str | None = None,
    ) -> str:
        """Produce a ``PhotoUploaded`` to ``photo.uploads`` keyed by ``owner_id``.

        Returns:
            The event_id (given or generated), the event's idempotency key.
        """
        if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 0:
            raise InvalidEventError(f"size_bytes must be a non-negative int, got {size_bytes!r}")
        fields = {
            "photo_id": photo_id,
            "owner_id": owner_id,
            "content_sha256": content_sha256,
            "media_type": media_type,
            "size_bytes": size_bytes,
        }
        return self._event(
            topics.TOPIC_PHOTO_UPLOADS, owner_id, fields, event_id, occurred_at, source
        )

    def consent_changed(
        self,
        *,
        user_id: str,
        purpose: str,
        granted: bool,
        notice_version: str,
        categories: Iterable[str] = (),
        recipient_org: str | None = None,
        expires_at: Timestamp | None = None,
        event_id: str | None = None,
        occurred_at: Timestamp | None = None,
        source: str | None = None,
    ) -> str:
        """Produce a ``ConsentChanged`` to ``consent.changes`` keyed by ``user_id``.

        ``recipient_org=None`` means any recipient; ``expires_at=None`` means never.
        """
        if not isinstance(granted, bool):
            raise InvalidEventError(f"granted must be a bool, got {granted!r}")
        fields = {
            "user_id": user_id,
            "purpose": purpose,
            "recipient_org": recipient_org,
            "categories": symbol_list(categories, "categories"),
            "granted": granted,
            "notice_version": notice_version,
            "expires_at": None if expires_at is None else to_millis(expires_at, "expires_at"),
        }
        return self._event(
            topics.TOPIC_CONSENT_CHANGES, user_id, fields, event_id, occurred_at, source
        )

    def share_requested(
        self,
        *,
        photo_id: str,
        owner_id: str,
        requester: str,
        recipient_org: str,
        purpose: str,
        categories: Iterable[str] = (),
        share_id: str | None = None,
        event_id: str | None = None,
        occurred_at: Timestamp | None = None,
        source: str | None = None,
    ) -> str:
        """Produce a ``PhotoShareRequested`` to ``photo.share.requests`` keyed by ``owner_id``."""
        fields = {
            "share_id": share_id if share_id is not None else str(uuid.uuid4()),
            "photo_id": photo_id,
            "owner_id": owner_id,
            "requester": requester,
            "recipient_org": recipient_org,
            "purpose": purpose,
            "categories": symbol_list(categories, "categories"),
        }
        return self._event(
            topics.TOPIC_SHARE_REQUESTS, owner_id, fields, event_id, occurred_at, source
        )

    def training_read(
        self,
        *,
        job_id: str,
        model_id: str,
        org: str,
        photo_id: str,
        owner_id: str,
        purpose: str = "ML_TRAINING",
        categories: Iterable[str] = (),
        event_id: str | None = None,
        occurred_at: Timestamp | None = None,
        source: str | None = None,
    ) -> str:
        """Produce a ``TrainingRead`` to ``training.reads`` keyed by ``owner_id``."""
        fields = {
            "job_id": job_id,
            "model_id": model_id,
            "org": org,
            "photo_id": photo_id,
            "owner_id": owner_id,
            "purpose": purpose,
            "categories": symbol_list(categories, "categories"),
        }
        return self._event(
            topics.TOPIC_TRAINING_READS, owner_id, fields, event_id, occurred_at, source
        )

    def request_erasure(
        self,
        *,
        user_id: str,
        scope: str,
        photo_id: str | None = None,
        reason: str = "USER_REQUEST",
        request_id: str | None = None,
        event_id: str | None = None,
        occurred_at: Timestamp | None = None,
        source: str | None = None,
    ) -> str:
        """Produce an ``ErasureRequested`` to ``privacy.erasure.requests`` keyed by ``user_id``.

        ``scope`` is ``PHOTO`` (then ``photo_id`` names the user's photo) or ``ACCOUNT`` (then
        ``photo_id`` must be ``None``); ``reason`` is ``USER_REQUEST``, ``REGULATOR_ORDER`` or
        ``POLICY_VIOLATION``; ``request_id`` (default: a new UUID) is the caller's ticket id.
        """
        if scope == "PHOTO" and not photo_id:
            raise InvalidEventError("a PHOTO erasure needs photo_id", hint="or use scope='ACCOUNT'")
        if scope == "ACCOUNT" and photo_id is not None:
            raise InvalidEventError(
                "an ACCOUNT erasure erases every photo of the user; do not pass photo_id",
                hint="use scope='PHOTO' to erase one photo",
            )
        fields = {
            "request_id": request_id if request_id is not None else str(uuid.uuid4()),
            "user_id": user_id,
            "scope": scope,
            "photo_id": photo_id,
            "reason": reason,
        }
        return self._event(
            topics.TOPIC_ERASURE_REQUESTS, user_id, fields, event_id, occurred_at, source
        )

    def acknowledge_recall(
        self,
        *,
        order_id: str,
        recipient_org: str,
        evidence: str,
        deleted_photo_ids: Iterable[str] = (),
        purged_model_ids: Iterable[str] = (),
        acknowledged_at: Timestamp | None = None,
        signing_key: AckKey | None = None,
    ) -> str:
        """Produce a signed ``RecallAcknowledged`` to ``governance.recall.acks`` (key: recipient).

        Name the photos deleted and the models purged for order ``order_id`` (all of them, or some
        for a partial acknowledgement) and where the proof of deletion is kept (``evidence``).
        The ack is signed (``key_id``, ``signature``) with ``signing_key``, default the
        producer's ``ack_key``: one of the keys the policy lists for ``recipient_org`` (an
        unsigned ack never counts, so none is sent). The Kafka timestamp is ``acknowledged_at``
        (default now). Returns ``order_id``.
        """
        record: Record = {
            "order_id": order_id,
            "recipient_org": recipient_org,
            "acknowledged_at": now_millis()
            if acknowledged_at is None
            else to_millis(acknowledged_at, "acknowledged_at"),
            "deleted_photo_ids": id_list(deleted_photo_ids, "deleted_photo_ids"),
            "purged_model_ids": id_list(purged_model_ids, "purged_model_ids"),
            "evidence": evidence,
        }
        if not record["deleted_photo_ids"] and not record["purged_model_ids"]:
            raise InvalidEventError(
                f"acknowledgement of order {order_id!r} names nothing deleted",
                hint="list the deleted_photo_ids and/or purged_model_ids of the order",
            )
        key = self._ack_key if signing_key is None else resolve_ack_key(signing_key)
        if key is None:
            raise ConfigError(
                f"acknowledgement of order {order_id!r} cannot be signed: no key given",
                hint="pass signing_key= (or ack_key= to the producer): the recipient's Ed25519"
                " private key whose public key the policy lists under ack_keys",
            )
        try:
            record = sign_ack(record, key)
        except (KeyError, TypeError) as exc:
            raise InvalidEventError(f"acknowledgement of order {order_id!r}: {exc}") from exc
        topic = self.topic(topics.TOPIC_RECALL_ACKS)
        validate_event(self._codec.catalog.for_topic(topic), record)
        self.produce(topic, recipient_org, record, timestamp_ms=record["acknowledged_at"])
        return order_id

    def _event(
        self,
        contract_topic: str,
        key: str,
        fields: dict[str, Any],
        event_id: str | None,
        occurred_at: Timestamp | None,
        source: str | None,
    ) -> str:
        """Complete the common fields, validate, and produce; return the event_id."""
        record: Record = {
            "event_id": event_id if event_id is not None else str(uuid.uuid4()),
            "occurred_at": now_millis()
            if occurred_at is None
            else to_millis(occurred_at, "occurred_at"),
            "source": source if source is not None else self._source,
            **fields,
        }
        topic = self.topic(contract_topic)
        validate_event(self._codec.catalog.for_topic(topic), record)
        self.produce(topic, key, record, timestamp_ms=record["occurred_at"])
        return str(record["event_id"])

    # -- generic --------------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        record: Record,
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        """Encode ``record`` with ``topic``'s schema and produce it (asynchronously).

        No contract validation beyond the schema; the typed methods are preferred for input events.
        Waits (serving delivery reports) while the local queue is full.
        """
        value = self._codec.encode(topic, record)
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        kwargs: dict[str, Any] = {"key": key_bytes, "on_delivery": self._on_delivery}
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """Delivery report callback: remember every record Kafka did not acknowledge."""
        if err is not None:
            self._failures.append((str(msg.topic()), msg.key(), str(err)))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every produced record to be acknowledged.

        Raises:
            DeliveryError: some records failed or are still unacknowledged after ``timeout``
                seconds; the message lists them (topic, key, error). Failures are reported once.
        """
        remaining = self._producer.flush(timeout)
        failures, self._failures = self._failures, []
        if not failures and remaining == 0:
            return
        lines = [f"{topic} key={key!r}: {error}" for topic, key, error in failures[:10]]
        if len(failures) > 10:
            lines.append(f"... and {len(failures) - 10} more")
        if remaining:
            lines.append(f"{remaining} record(s) still unacknowledged after {timeout}s")
        raise DeliveryError(
            f"{len(failures) + remaining} record(s) not delivered: " + "; ".join(lines),
            hint=_DELIVERY_HINT,
        )

    def __enter__(self) -> ConsentinelProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()
