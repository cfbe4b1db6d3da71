"""The Faust peer: the gate's pure core run in a faust-streaming agent, as a team would on Faust.

Same decision core (:func:`streams.core.evaluate.decide_safely`, :class:`UserState`, the hash
chain of :func:`streams.core.model.decision_record`), same :class:`AvroCodec` for decoding and
encoding, same input topics. What Faust gives it instead of the gate's runner:

* at-least-once (Faust's default ``processing_guarantee``): offsets are committed every 2.8 s
  after the events are acked, and output is not transactional;
* one agent, ``concurrency=1``, over the four input topics; events are processed in arrival order
  (Faust has no event-time merge of co-partitioned topics, unlike the gate);
* state in Faust tables (in-memory store, changelogged to Kafka): ``users`` (user id ->
  ``UserState.to_bytes()``), ``photos`` (photo id -> owner id) and ``heads`` (``h:<partition>``
  -> the partition's last decision hash). Decoded user states are also kept in a process-local
  dict (the table stays the source of truth), so the peer does not re-parse JSON on every request;
* no controls topic reader (the benchmark has no controls; the suspension registry stays empty).

Decisions go to ``<prefix>faust.governance.decisions`` (and allowed shares to
``<prefix>faust.photo.share.approved``), keyed by owner, on the input's partition.

Run: ``python -m bench.faust_peer worker -l warn`` with ``CONSENTINEL_TOPIC_PREFIX`` set.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

import faust

from bench.common import POLICY
from streams import topics
from streams.core.consent import AllowedAccess, UserState
from streams.core.controls import SuspensionRegistry
from streams.core.evaluate import decide_safely
from streams.core.model import AccessRequest, ConsentRecord, PhotoRecord, decision_record
from streams.core.policy import load_policy
from streams.errors import ConsentinelError
from streams.gate.ids import decision_id as input_decision_id
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import load_settings

DECISIONS = "faust.governance.decisions"
APPROVED = "faust.photo.share.approved"
GENESIS = "0" * 64

log = logging.getLogger("bench.faust_peer")
settings = load_settings()
PREFIX = settings.topic_prefix
policy = load_policy(POLICY)
suspensions = SuspensionRegistry()
catalog = prefixed_catalog(settings).with_topics(
    {PREFIX + DECISIONS: "Decision", PREFIX + APPROVED: "PhotoShareRequested"}
)
codec = AvroCodec(RegistrySchemaSource(settings.schema_registry_url, auto_register=True), catalog)

app = faust.App(
    PREFIX + "faust-peer",
    broker=f"kafka://{settings.kafka_bootstrap_servers}",
    processing_guarantee="at_least_once",
    store="memory://",
    topic_partitions=8,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    producer_linger=0.005,  # the gate's linger.ms=5 (Faust's default 0: a request per record)
    web_enabled=False,
    # Faust's default data directory is "<app id>-data" in the working directory (the repository).
    datadir=tempfile.mkdtemp(prefix=f"{PREFIX}faust-peer-data-"),
)
inputs = app.topic(
    *(
        PREFIX + t
        for t in (
            topics.TOPIC_CONSENT_CHANGES,
            topics.TOPIC_PHOTO_UPLOADS,
            topics.TOPIC_SHARE_REQUESTS,
            topics.TOPIC_TRAINING_READS,
        )
    ),
    key_serializer="raw",
    value_serializer="raw",
)
decisions_topic = app.topic(PREFIX + DECISIONS, key_serializer="raw", value_serializer="raw")
approved_topic = app.topic(PREFIX + APPROVED, key_serializer="raw", value_serializer="raw")
RAW = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
users = app.Table("users", partitions=8, schema=RAW)
photos = app.Table("photos", partitions=8, schema=RAW)
heads = app.Table("heads", partitions=8, schema=RAW)
_decoded: dict[str, UserState] = {}
_stats = {"events": 0, "decisions": 0, "dead": 0}


def _user(user_id: str) -> UserState | None:
    state = _decoded.get(user_id)
    if state is None:
        raw = users.get(user_id.encode())
        if raw is not None:
            state = _decoded[user_id] = UserState.from_bytes(raw)
    return state


def _save(state: UserState) -> None:
    _decoded[state.user_id] = state
    users[state.user_id.encode()] = state.to_bytes()


async def _request(
    request: AccessRequest, topic: str, partition: int, offset: int, value: bytes, key: bytes
) -> None:
    user = _user(request.owner_id)
    owner = photos.get(request.photo_id.encode())
    decision = decide_safely(
        request,
        photo_owner=None if owner is None else owner.decode(),
        consents=None if user is None else user.consents,
        suspended=suspensions.suspension(request.recipient_org) is not None,
        policy=policy,
    )
    decision_id = input_decision_id(topic, partition, offset, request.event_id)
    head_key = f"h:{partition}".encode()
    prev = heads.get(head_key)
    record = decision_record(
        decision,
        decision_id=decision_id,
        decided_at_ms=int(time.time() * 1000),
        prev_hash=GENESIS if prev is None else prev.decode(),
        partition=partition,
    )
    heads[head_key] = record["hash"].encode()
    await decisions_topic.send(
        key=request.owner_id.encode(),
        value=codec.encode(PREFIX + DECISIONS, record),
        partition=partition,
    )
    _stats["decisions"] += 1
    if decision.allowed:
        await approved_topic.send(key=key, value=value, partition=partition)
        if decision.consent_event_id is not None:
            state = user or UserState(request.owner_id)
            state.record_allowed(AllowedAccess.of(decision_id, decision))
            _save(state)


@app.agent(inputs, concurrency=1)
async def gate(stream: Any) -> None:
    async for event in stream.events():
        message = event.message
        topic = message.topic
        logical = topic[len(PREFIX) :]
        _stats["events"] += 1
        try:
            record = codec.decode(topic, event.value)
            if logical == topics.TOPIC_PHOTO_UPLOADS:
                photo = PhotoRecord.from_record(record)
                if photos.get(photo.photo_id.encode()) is None:
                    photos[photo.photo_id.encode()] = photo.owner_id.encode()
            elif logical == topics.TOPIC_CONSENT_CHANGES:
                consent = ConsentRecord.from_record(record)
                state = _user(consent.user_id) or UserState(consent.user_id)
                state.apply_consent(consent)  # retroactive alerts: none in this input
                _save(state)
            elif logical == topics.TOPIC_SHARE_REQUESTS:
                request = AccessRequest.from_share(record)
                await _request(
                    request, logical, message.partition, message.offset, event.value, event.key
                )
            elif logical == topics.TOPIC_TRAINING_READS:
                request = AccessRequest.from_training_read(record)
                await _request(
                    request, logical, message.partition, message.offset, event.value, event.key
                )
        except ConsentinelError as exc:
            _stats["dead"] += 1
            log.warning("dead letter %s/%s: %s", topic, message.offset, exc)


@app.timer(10.0)
async def progress() -> None:
    log.warning("faust peer: %s", _stats)


if __name__ == "__main__":
    app.main()
