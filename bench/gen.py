"""Input generation: share requests over users with a realistic consent mix, uploads for photos.

Everything is generated from a seed and pre-encoded once with the contract's codec (Confluent wire
format, the registered schema ids), then produced raw with a plain confluent-kafka producer keyed
by the owner's id (``murmur2_random``, as the SDK does), Kafka timestamp = ``occurred_at``, in
event-time order. The same bytes are produced to every prefix of a run (the 5-byte header is
re-stamped if that prefix's subjects got other schema ids), so every system reads the same input.

The mix (per share request, over the recipients of ``deploy/policy.example.yaml``):

====  ==================  =================  =====================  =====================
 %    recipient           purpose            categories             expected outcome
====  ==================  =================  =====================  =====================
 35   lovebird-partners   PARTNER_SHARING    IMAGE                  consent decides
 10   lovebird-partners   ADVERTISING        IMAGE, DEMOGRAPHIC     consent decides
 25   acme-vision         ML_TRAINING        IMAGE                  consent decides
 10   acme-vision         ML_TRAINING        IMAGE, FACE_BIOMETRIC  biometric: explicit
 10   photo-cdn           SERVICE_OPERATION  IMAGE                  NOT_CONSENT_BASED
  4   insights-team       ANALYTICS          PROFILE_TEXT           NOT_CONSENT_BASED
  3   old-lab             RESEARCH           IMAGE                  NO_AGREEMENT
  2   shady-broker        PARTNER_SHARING    IMAGE                  RECIPIENT_UNKNOWN
  1   acme-vision         ADVERTISING        IMAGE                  PURPOSE_NOT_PERMITTED
====  ==================  =================  =====================  =====================

Consent: for each of ML_TRAINING, PARTNER_SHARING and ADVERTISING a user grants with probability
0.4 (half to any recipient, half to the named one; ML_TRAINING grants list FACE_BIOMETRIC one time
in five; 5% of grants expire within a month); 15% of grants are later withdrawn; 5% of users
record an explicit refusal. 1% of requests name a photo that was never uploaded.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from streams import topics
from streams.serde.wire import AvroCodec
from streams.settings import Settings

DAY_MS = 86_400_000
CONSENT_PURPOSES = {
    "ML_TRAINING": "acme-vision",
    "PARTNER_SHARING": "lovebird-partners",
    "ADVERTISING": "lovebird-partners",
}
REQUEST_MIX: list[tuple[float, str, str, list[str]]] = [
    (0.35, "lovebird-partners", "PARTNER_SHARING", ["IMAGE"]),
    (0.10, "lovebird-partners", "ADVERTISING", ["IMAGE", "DEMOGRAPHIC"]),
    (0.25, "acme-vision", "ML_TRAINING", ["IMAGE"]),
    (0.10, "acme-vision", "ML_TRAINING", ["IMAGE", "FACE_BIOMETRIC"]),
    (0.10, "photo-cdn", "SERVICE_OPERATION", ["IMAGE"]),
    (0.04, "insights-team", "ANALYTICS", ["PROFILE_TEXT"]),
    (0.03, "old-lab", "RESEARCH", ["IMAGE"]),
    (0.02, "shady-broker", "PARTNER_SHARING", ["IMAGE"]),
    (0.01, "acme-vision", "ADVERTISING", ["IMAGE"]),
]
REQUESTERS = ["match-svc", "ads-svc", "export-svc", "ml-loader"]
INPUT_TOPICS = (
    topics.TOPIC_CONSENT_CHANGES,
    topics.TOPIC_PHOTO_UPLOADS,
    topics.TOPIC_SHARE_REQUESTS,
)


@dataclass
class Workload:
    """Pre-encoded input events in event-time order, and what was generated."""

    users: list[str]
    photos: dict[str, list[str]]  # user -> photo ids
    events: list[tuple[int, str, bytes, bytes]] = field(default_factory=list)  # ts, topic, key, v
    counts: Counter[str] = field(default_factory=Counter)
    schema_ids: dict[str, int] = field(default_factory=dict)  # logical topic -> id in the bytes

    @property
    def requests(self) -> int:
        return self.counts[topics.TOPIC_SHARE_REQUESTS]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Generator:
    """Builds records of the mix above from one seeded random source."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        cumulative = 0.0
        self._mix: list[tuple[float, str, str, list[str]]] = []
        for weight, org, purpose, cats in REQUEST_MIX:
            cumulative += weight
            self._mix.append((cumulative, org, purpose, cats))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def upload(self, user: str, photo: str, at: int) -> dict[str, Any]:
        return {
            "event_id": self.uuid(),
            "occurred_at": at,
            "source": "photo-app",
            "photo_id": photo,
            "owner_id": user,
            "content_sha256": f"{self.rng.getrandbits(256):064x}",
            "media_type": "image/jpeg",
            "size_bytes": self.rng.randint(40_000, 4_000_000),
        }

    def consent(
        self,
        user: str,
        purpose: str,
        at: int,
        *,
        granted: bool,
        recipient: str | None,
        categories: list[str],
        expires_at: int | None = None,
    ) -> dict[str, Any]:
        return {
            "event_id": self.uuid(),
            "occurred_at": at,
            "source": "consent-service",
            "user_id": user,
            "purpose": purpose,
            "recipient_org": recipient,
            "categories": categories,
            "granted": granted,
            "notice_version": "2026-11",
            "expires_at": expires_at,
        }

    def user_consents(self, user: str, start: int, end: int) -> list[dict[str, Any]]:
        rng = self.rng
        out = []
        for purpose, named in CONSENT_PURPOSES.items():
            if rng.random() >= 0.4:
                continue
            at = rng.randint(start - 180 * DAY_MS, end)
            recipient = None if rng.random() < 0.5 else named
            if purpose == "ML_TRAINING":
                cats = ["IMAGE", "FACE_BIOMETRIC"] if rng.random() < 0.2 else ["IMAGE"]
            elif purpose == "ADVERTISING":
                cats = ["IMAGE", "DEMOGRAPHIC"] if rng.random() < 0.5 else ["IMAGE"]
            else:
                cats = [] if rng.random() < 0.5 else ["IMAGE"]
            expires = at + rng.randint(1, 30) * DAY_MS if rng.random() < 0.05 else None
            out.append(
                self.consent(
                    user,
                    purpose,
                    at,
                    granted=True,
                    recipient=recipient,
                    categories=cats,
                    expires_at=expires,
                )
            )
            if rng.random() < 0.15:
                out.append(
                    self.consent(
                        user,
                        purpose,
                        rng.randint(at, end),
                        granted=False,
                        recipient=recipient,
                        categories=[],
                    )
                )
        if not out and rng.random() < 0.05:
            out.append(
                self.consent(
                    user,
                    "ML_TRAINING",
                    rng.randint(start, end),
                    granted=False,
                    recipient=None,
                    categories=[],
                )
            )
        return out

    def request(self, user: str, photo: str, at: int) -> dict[str, Any]:
        pick = self.rng.random()
        _, org, purpose, cats = next((m for m in self._mix if pick < m[0]), self._mix[-1])
        return {
            "event_id": self.uuid(),
            "occurred_at": at,
            "source": "share-api",
            "share_id": self.uuid(),
            "photo_id": photo,
            "owner_id": user,
            "requester": self.rng.choice(REQUESTERS),
            "recipient_org": org,
            "purpose": purpose,
            "categories": list(cats),
        }


def generate(
    codec: AvroCodec,
    prefix: str,
    *,
    requests: int,
    users: int,
    seed: int = 20261126,
    end_ms: int | None = None,
) -> Workload:
    """Generate and encode the backlog: ``requests`` share requests over ``users`` users.

    The week of events ends a minute ago, or at ``end_ms`` (a reproducible workload).
    """
    gen = Generator(seed)
    rng = gen.rng
    end = int(time.time() * 1000) - 60_000 if end_ms is None else end_ms
    start = end - 7 * DAY_MS
    user_ids = [f"user-{i:08d}" for i in range(users)]
    photos_per_user = max(1, requests // users // 2)
    work = Workload(user_ids, {})
    encoders = {t: prefix + t for t in INPUT_TOPICS}
    for t in INPUT_TOPICS:
        work.schema_ids[t] = codec.schema_id(encoders[t])
    events = work.events
    uploaded_at: dict[str, int] = {}

    def add(topic: str, key: str, record: dict[str, Any]) -> None:
        events.append(
            (record["occurred_at"], topic, key.encode(), codec.encode(encoders[topic], record))
        )
        work.counts[topic] += 1

    serial = 0
    for user in user_ids:
        mine = []
        for _ in range(rng.randint(1, 2 * photos_per_user - 1)):
            photo = f"ph-{serial:09d}"
            serial += 1
            at = rng.randint(start, end - 3_600_000)
            uploaded_at[photo] = at
            mine.append(photo)
            add(topics.TOPIC_PHOTO_UPLOADS, user, gen.upload(user, photo, at))
        work.photos[user] = mine
        for record in gen.user_consents(user, start, end):
            add(topics.TOPIC_CONSENT_CHANGES, user, record)
    for _ in range(requests):
        user = user_ids[rng.randrange(users)]
        if rng.random() < 0.01:
            photo, at = f"ph-missing-{rng.getrandbits(40):x}", rng.randint(start, end)
        else:
            photo = rng.choice(work.photos[user])
            at = rng.randint(uploaded_at[photo] + 1000, end)
        add(topics.TOPIC_SHARE_REQUESTS, user, gen.request(user, photo, at))
    events.sort(key=lambda e: e[0])
    return work


def raw_producer(settings: Settings) -> Producer:
    return Producer(
        {
            **settings.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def produce_workload(
    settings: Settings,
    codec: AvroCodec,
    prefix: str,
    work: Workload,
    *,
    requests: bool = True,
    flush_every: int | None = None,
) -> float:
    """Produce the workload to ``prefix``'s input topics; return the seconds it took.

    ``requests=False`` writes only the uploads and consent changes (state, no decisions).
    ``flush_every``: wait for every ``flush_every`` records to be appended before writing more,
    so that records that far apart are appended in event-time order across partitions (the
    producer's batches to different partitions otherwise land in any order).
    """
    headers: dict[str, bytes | None] = {}
    for topic, schema_id in work.schema_ids.items():
        mine = codec.schema_id(prefix + topic)
        headers[topic] = None if mine == schema_id else b"\x00" + mine.to_bytes(4, "big")
    started = time.monotonic()
    producer = raw_producer(settings)
    names = {t: prefix + t for t in INPUT_TOPICS}
    for i, (ts, topic, key, value) in enumerate(work.events):
        if not requests and topic == topics.TOPIC_SHARE_REQUESTS:
            continue
        if flush_every and i and i % flush_every == 0 and producer.flush(120):
            raise RuntimeError("input records not delivered")
        header = headers[topic]
        if header is not None:
            value = header + value[5:]
        while True:
            try:
                producer.produce(names[topic], value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} input records not delivered")
    return time.monotonic() - started


def _zigzag_varint(value: int) -> bytes:
    """Avro's encoding of a long: zigzag, then little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class PacedSource:
    """Live events for latency runs: the backlog's records, re-stamped as new events.

    Every input record starts with ``event_id`` (a 36-character UUID: bytes 6..42 of the value,
    after the 5-byte header and its 1-byte length) and ``occurred_at`` (a long that takes 6 bytes
    for any time this century: bytes 42..48). A live event is a backlog record, in a seeded
    random order (so the mix is the backlog's), with a fresh ``event_id`` and ``occurred_at`` =
    now patched in place -- so producing costs the bench process about 5 us an event, and the
    machine's two cores are left to the system under test and the broker. Consent changes so
    re-stamped are new consent events at ``now``; uploads repeat a known photo (no change);
    requests are new requests for the same photo.
    """

    def __init__(self, work: Workload, codec: AvroCodec, prefix: str, seed: int = 7) -> None:
        rng = random.Random(seed)
        headers = {}
        for topic in work.schema_ids:
            headers[topic] = b"\x00" + codec.schema_id(prefix + topic).to_bytes(4, "big")
        self.templates = [
            (prefix + topic, key, headers[topic] + value[5:6], value[48:])
            for _, topic, key, value in work.events
        ]
        rng.shuffle(self.templates)
        self.requests_topic = prefix + topics.TOPIC_SHARE_REQUESTS
        self.per_request = work.total / max(work.requests, 1)  # input events per request
        self.index = 0
        probe = self.events(int(time.time() * 1000), 1)[0]
        record = codec.decode(probe[0], probe[2])
        if record["event_id"] != probe[3] or record["occurred_at"] != probe[4]:
            raise RuntimeError("re-stamping live events does not round-trip; see PacedSource")
        self.index = 0

    def events(self, now_ms: int, count: int) -> list[tuple[str, bytes, bytes, str, int]]:
        """The next ``count`` events: (topic, key, value, event_id, occurred_at)."""
        stamp = _zigzag_varint(now_ms)
        if len(stamp) != 6:
            raise RuntimeError(f"occurred_at {now_ms} does not encode in 6 bytes")
        out = []
        templates = self.templates
        for _ in range(count):
            topic, key, head, tail = templates[self.index % len(templates)]
            self.index += 1
            event_id = str(uuid.uuid4())
            out.append((topic, key, head + event_id.encode() + stamp + tail, event_id, now_ms))
        return out


def run_paced(
    settings: Settings, source: PacedSource, *, requests_per_s: float, duration_s: float
) -> dict[str, Any]:
    """Produce live events at ``requests_per_s`` requests per second for ``duration_s`` seconds."""
    producer = Producer(
        {
            **settings.kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": 1,
        }
    )
    events_per_s = requests_per_s * source.per_request
    tick = 0.005
    started = time.time()
    sent_requests = 0
    sent_events = 0
    behind_max = 0.0
    while True:
        now = time.time()
        elapsed = now - started
        if elapsed >= duration_s:
            break
        due = int(elapsed * events_per_s) - sent_events
        if due > 0:
            now_ms = int(now * 1000)
            for topic, key, value, _, _ in source.events(now_ms, due):
                while True:
                    try:
                        producer.produce(topic, value, key, timestamp=now_ms)
                        break
                    except BufferError:
                        producer.poll(0.01)
                if topic == source.requests_topic:
                    sent_requests += 1
            sent_events += due
        producer.poll(0)
        behind_max = max(behind_max, time.time() - now)
        time.sleep(max(0.0, tick - (time.time() - now)))
    if producer.flush(60):
        raise RuntimeError("paced records not delivered")
    return {
        "requests": sent_requests,
        "events": sent_events,
        "duration_s": round(time.time() - started, 2),
        "offered_events_per_s": round(sent_events / duration_s, 1),
        "max_produce_loop_s": round(behind_max, 3),
    }
