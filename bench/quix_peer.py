"""The Quix Streams peer: the gate's pure core in a Quix Streams application, as a team would.

Runs in its own virtualenv (``~/.cache/consentinel/venv-quix``, made by :func:`ensure_venv`):
Quix Streams pins a confluent-kafka that conflicts with the project's. Same decision core
(:func:`streams.core.evaluate.decide_safely`, :class:`UserState`, the hash chain of
:func:`streams.core.model.decision_record`), same :class:`AvroCodec` for decoding and encoding,
same input topics and backlog. What Quix Streams gives it instead of the gate's runtime:

* ``processing_guarantee="exactly-once"`` (confluent-kafka transactions), committing every 0.5 s
  (``BENCH_QUIX_COMMIT_INTERVAL_S``; Quix's default is 5 s);
* the three input topics concatenated (``StreamingDataFrame.concat``: Quix aligns co-partitioned
  topics by the Kafka message timestamp, never by a field of the value, so its copy of the input
  topics is ``CreateTime`` stamped with ``occurred_at``; the gate's stay ``LogAppendTime`` and
  it merges by the decoded ``occurred_at``);
* state in Quix's RocksDB stores with changelog topics, per message key (the owner): ``u`` the
  user's ``UserState.to_bytes()``, ``p:<photo_id>`` the photos the user uploaded (ownership);
  a request naming a photo its owner did not upload is ``UNKNOWN_PHOTO`` (no cross-partition
  photo index, unlike the gate; this input has no foreign photos, so the verdicts agree);
* the hash chain head per partition in process memory (Quix state is per key), so its cost is
  paid but it is not restored after a crash;
* no trust checks (routing, time bounds, duplicates), no recall ledgers, no controls reader --
  the same simplifications as the faust peer.

Decisions go to ``<prefix>quix.governance.decisions`` and allowed shares to
``<prefix>quix.photo.share.approved``, keyed by owner.

Run: ``<venv-quix>/bin/python -m bench.quix_peer`` with ``CONSENTINEL_TOPIC_PREFIX`` set.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DECISIONS = "quix.governance.decisions"
APPROVED = "quix.photo.share.approved"
VENV = Path(os.environ.get("BENCH_QUIX_VENV", Path.home() / ".cache/consentinel/venv-quix"))
REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = [
    "quixstreams>=3.20,<4",
    "fastavro>=1.9,<2",
    "pydantic>=2.6,<3",
    "pydantic-settings>=2.2,<3",
    "PyYAML>=6,<7",
    "httpx>=0.27,<1",
    "prometheus-client>=0.20,<1",
    "cryptography>=42",
]


def ensure_venv() -> Path:
    """Create the peer's virtualenv if missing; return its python."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)], check=True
    )
    return python


def quix_version() -> str:
    python = VENV / "bin" / "python"
    if not python.exists():
        return "not installed"
    out = subprocess.run(
        [str(python), "-c", "import quixstreams, confluent_kafka as c; "
         "print(quixstreams.__version__, '(confluent-kafka', c.version() + ')')"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or "unknown"


def main() -> int:
    from quixstreams import Application, message_context

    from bench.common import POLICY
    from streams import topics
    from streams.core.audit import GENESIS_HASH
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

    logging.basicConfig(level=logging.WARNING)
    log = logging.getLogger("bench.quix_peer")
    settings = load_settings()
    prefix = settings.topic_prefix
    policy = load_policy(POLICY)
    suspensions = SuspensionRegistry()
    catalog = prefixed_catalog(settings).with_topics(
        {prefix + DECISIONS: "Decision", prefix + APPROVED: "PhotoShareRequested"}
    )
    source = RegistrySchemaSource(settings.schema_registry_url, auto_register=True)
    codec = AvroCodec(source, catalog)
    app = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=prefix + "quix-peer",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        # Quix's default is 5 s; the gate commits every loop turn (~0.1-0.2 s under a backlog), so
        # the peer commits every 0.5 s: a comparable cadence, and visible progress to time it by
        commit_interval=float(os.environ.get("BENCH_QUIX_COMMIT_INTERVAL_S", "0.5")),
        state_dir=os.environ.get("CONSENTINEL_STATE_DIR", "/tmp/quix-peer-state"),
        loglevel="WARNING",
    )
    names = {
        logical: prefix + logical
        for logical in (
            topics.TOPIC_CONSENT_CHANGES,
            topics.TOPIC_PHOTO_UPLOADS,
            topics.TOPIC_SHARE_REQUESTS,
        )
    }
    logical_of = {physical: logical for logical, physical in names.items()}
    frames = [
        app.dataframe(app.topic(name, key_deserializer="str", value_deserializer="bytes"))
        for name in names.values()
    ]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    heads: dict[int, str] = {}
    stats = {"events": 0, "decisions": 0, "dead": 0, "last": time.monotonic()}

    def request(req: AccessRequest, state: Any, context: Any, value: bytes) -> Any:
        partition = context.partition
        raw_user = state.get("u")
        user = None if raw_user is None else UserState.from_bytes(raw_user.encode())
        owner = req.owner_id if state.get("p:" + req.photo_id) else None
        decision = decide_safely(
            req,
            photo_owner=owner,
            consents=None if user is None else user.consents,
            suspended=suspensions.suspension(req.recipient_org) is not None,
            policy=policy,
        )
        logical = logical_of[context.topic]
        decision_id = input_decision_id(logical, partition, context.offset, req.event_id)
        record = decision_record(
            decision,
            decision_id=decision_id,
            decided_at_ms=int(time.time() * 1000),
            prev_hash=heads.get(partition, GENESIS_HASH),
            partition=partition,
        )
        heads[partition] = record["hash"]
        stats["decisions"] += 1
        approved = None
        if decision.allowed:
            approved = value
            if decision.consent_event_id is not None:
                state_user = user or UserState(req.owner_id)
                state_user.record_allowed(AllowedAccess.of(decision_id, decision))
                state.set("u", state_user.to_bytes().decode())
        return (codec.encode(prefix + DECISIONS, record), approved)

    def process(value: bytes, state: Any) -> Any:
        context = message_context()
        topic = context.topic
        logical = logical_of[topic]
        stats["events"] += 1
        if time.monotonic() - stats["last"] > 10:
            stats["last"] = time.monotonic()
            log.warning("quix peer: %s", stats)
        try:
            record = codec.decode(topic, value)
            if logical == topics.TOPIC_PHOTO_UPLOADS:
                photo = PhotoRecord.from_record(record)
                state.set("p:" + photo.photo_id, True)
                return None
            if logical == topics.TOPIC_CONSENT_CHANGES:
                consent = ConsentRecord.from_record(record)
                raw_user = state.get("u")
                user = UserState(consent.user_id) if raw_user is None else None
                user = user or UserState.from_bytes(raw_user.encode())
                user.apply_consent(consent)
                state.set("u", user.to_bytes().decode())
                return None
            return request(AccessRequest.from_share(record), state, context, value)
        except ConsentinelError as exc:
            stats["dead"] += 1
            log.warning("dead letter %s/%s: %s", topic, context.offset, exc)
            return None

    decided = sdf.apply(process, stateful=True).filter(lambda out: out is not None)
    decisions_topic = app.topic(prefix + DECISIONS, key_serializer="str", value_serializer="bytes")
    approved_topic = app.topic(prefix + APPROVED, key_serializer="str", value_serializer="bytes")
    decided.apply(lambda out: out[0]).to_topic(decisions_topic)
    decided.filter(lambda out: out[1] is not None).apply(lambda out: out[1]).to_topic(
        approved_topic
    )
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
