"""``consentinel detect``: the detectors as a faust-streaming app (faust is only the runner).

Topology (every agent has concurrency 1; names carry the settings' topic prefix):

- ``route-decisions`` reads ``governance.decisions`` (keyed by owner), decodes each value with
  the Avro codec (undecodable values go to ``governance.dlq``), merges its partitions into
  event-time order (waiting at most ``MERGE_WAIT_MS`` for a quiet one), and forwards a JSON copy
  to two internal topics: ``<app>-by-recipient`` keyed by recipient and ``<app>-by-actor`` keyed by
  requester or job, so that each subject's decisions meet in one partition.
- ``route-reads`` reads ``training.reads`` and forwards each job's model to the actor side.
- ``recipients`` keeps, per recipient, the bulk-export state and the recipient's denial-burst
  state; ``actors`` keeps, per requester or job, the denial-burst state, the
  unconsented-training state and the job's model. All are faust tables backed by changelog
  topics, so a restarted worker restores them; nothing relies on window-close callbacks or table
  expiry (the windows are plain state advanced by event time, see :mod:`streams.detect.core`).

Alerts go to ``governance.alerts`` (key: subject) and ``SUSPEND_RECIPIENT`` controls to
``governance.controls`` (key: recipient); each is delivered before the state that raised it is
written, and its id is a hash of the episode, so a replay after a crash can repeat a record but
never invents a second episode. ``raised_at`` is the crossing's event time.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import Consumer, TopicPartition

from streams import topics
from streams.core.policy import load_policy
from streams.core.timesync import PartitionSynchronizer
from streams.detect import metrics
from streams.detect.runtime import DetectorRuntime, Output
from streams.errors import ConfigError
from streams.observability.http import HealthServer
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings

log = logging.getLogger(__name__)

APP_NAME = "consentinel-detector"
PARTITIONS = 8
"""Partitions of the internal topics and tables (the partition count of ``deploy/topics.yaml``)."""
MERGE_WAIT_MS = 1000
"""How long (wall clock) decisions wait for a quiet partition before being forwarded anyway."""

Forward = tuple[str, str, dict[str, Any]]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _broker(settings: Settings) -> tuple[str, Any]:
    """Return faust's broker URL list and credentials for the settings' Kafka."""
    hosts = ";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(","))
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return hosts, None
    context = ssl.create_default_context() if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return hosts, faust.SSLCredentials(context)
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    return hosts, faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


def fix_faust_gap_tracking() -> None:
    """Let faust commit past the gate's transaction markers (faust-streaming issue #606).

    The gate writes ``governance.decisions`` in transactions, so every batch leaves a commit
    marker at an offset no consumer ever sees. faust records such holes as gaps that commits may
    pass, but it records ``[first missing offset, next real offset]`` with both ends included:
    the next real offset is then counted twice among the acknowledged ones, each commit gets past
    one hole only, and the committed offset falls ever further behind the stream (a restart then
    replays everything since; the tables' source offsets keep that from counting twice, but it is
    slow). This makes the gap end just before the next real offset. Idempotent.
    """
    from faust.transport.consumer import Consumer as FaustConsumer

    original = FaustConsumer._add_gap
    if getattr(original, "_consentinel_fixed", False):
        return

    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        await original(self, tp, offset_from, offset_to - 1)

    _add_gap._consentinel_fixed = True  # type: ignore[attr-defined]
    FaustConsumer._add_gap = _add_gap  # type: ignore[method-assign]


def build_app(
    settings: Settings,
    runtime: DetectorRuntime,
    *,
    partitions: int = PARTITIONS,
    merge_wait_ms: int = MERGE_WAIT_MS,
    app_name: str = APP_NAME,
) -> faust.App:
    """Return the faust app running ``runtime`` against the settings' Kafka.

    ``app_name`` (after the topic prefix) names the consumer group, the internal topics and the
    tables' changelogs: a detector with another name keeps its own state.
    """
    fix_faust_gap_tracking()
    prefix = settings.topic_prefix
    app_id = prefix + app_name
    broker, credentials = _broker(settings)
    store = "memory://" if settings.state_store == "memory" else "rocksdb://"
    datadir = settings.state_dir / settings.instance_id / "detector"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=broker,
        broker_credentials=credentials,
        store=store,
        datadir=str(datadir),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        autodiscover=False,
        # Decisions wait in the event-time merge, unacknowledged, until released; after the
        # timers stop, nothing releases them, and waiting for every event to be acknowledged
        # would hang the shutdown. Unacknowledged events are simply not committed, so the next
        # start reads them again (the tables' source offsets keep that from counting twice).
        stream_wait_empty=False,
    )

    def raw(name: str) -> Any:
        return app.topic(prefix + name, key_serializer="raw", value_serializer="raw")

    def internal(name: str) -> Any:
        return app.topic(
            f"{app_id}-{name}",
            partitions=partitions,
            internal=True,
            key_serializer="raw",
            value_serializer="json",
        )

    def table(name: str) -> Any:
        schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
        return app.Table(name, default=None, partitions=partitions, schema=schema)

    decisions, reads = raw(topics.TOPIC_DECISIONS), raw(topics.TOPIC_TRAINING_READS)
    outputs = {t: raw(t) for t in (topics.TOPIC_ALERTS, topics.TOPIC_CONTROLS, topics.TOPIC_DLQ)}
    by_recipient, by_actor = internal("by-recipient"), internal("by-actor")
    bulk, recipient_bursts = table("bulk-export"), table("recipient-bursts")
    requester_bursts, jobs, job_models = table("requester-bursts"), table("jobs"), table("models")
    sides = {"recipient": by_recipient, "actor": by_actor}

    async def emit(output: Output) -> None:
        """Produce one output and wait until Kafka acknowledged it."""
        _, key, value = runtime.encode(output)
        delivery = await outputs[output.topic].send(key=key, value=value)
        await delivery

    async def forward(forwards: list[Forward]) -> None:
        for side, key, value in forwards:
            await sides[side].send(key=key.encode("utf-8"), value=value)

    # Decisions of different partitions are merged into event-time order before being
    # forwarded, so a backlog read partition by partition still meets the windows in order. An
    # event is acknowledged (its offset may be committed) only once it has been forwarded.
    sync: PartitionSynchronizer[tuple[list[Forward], Any]] = PartitionSynchronizer(
        [str(p) for p in range(partitions)], max_idle_ms=merge_wait_ms
    )
    releasing = asyncio.Lock()

    async def release() -> None:
        async with releasing:
            for _, (forwards, event) in list(sync.drain(_now_ms())):
                await forward(forwards)
                event.ack()

    @app.agent(decisions, name="route-decisions", concurrency=1)
    async def route_decisions(stream: Any) -> None:
        async for event in stream.noack().events():
            message = event.message
            forwards, dead = runtime.route_decision(
                message.key, message.value, message.partition, message.offset
            )
            if dead is not None or not forwards:
                if dead is not None:
                    await emit(dead)
                event.ack()
                continue
            sync.add(str(message.partition), forwards[0][2]["e"]["at_ms"], (forwards, event))
            await release()

    @app.timer(interval=max(0.05, merge_wait_ms / 4000))  # type: ignore[untyped-decorator]
    async def release_idle() -> None:
        await release()

    recent_models: OrderedDict[str, str] = OrderedDict()

    @app.agent(reads, name="route-reads", concurrency=1)
    async def route_reads(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            forwards, _ = runtime.route_read(
                message.key, message.value, message.partition, message.offset
            )
            for side, job, value in forwards:
                model = value["job_model"][1]
                if recent_models.get(job) == model:
                    continue
                recent_models[job] = model
                if len(recent_models) > 10_000:
                    recent_models.popitem(last=False)
                await forward([(side, job, value)])

    @app.agent(by_recipient, name="recipients", concurrency=1)
    async def on_recipients(stream: Any) -> None:
        async for event in stream.events():
            key = event.message.key.decode("utf-8")
            applied = runtime.on_recipient(event.value, bulk.get(key), recipient_bursts.get(key))
            if applied.duplicate:
                continue
            for output in applied.outputs:
                await emit(output)
            bulk[key] = applied.values["bulk"]
            _store(recipient_bursts, key, applied.values["burst"])

    @app.agent(by_actor, name="actors", concurrency=1)
    async def on_actors(stream: Any) -> None:
        async for event in stream.events():
            key = event.message.key.decode("utf-8")
            model = job_models.get(key)
            applied = runtime.on_actor(event.value, requester_bursts.get(key), jobs.get(key), model)
            if applied.duplicate:
                continue
            for output in applied.outputs:
                await emit(output)
            _store(requester_bursts, key, applied.values["burst"])
            _store(jobs, key, applied.values["job"])
            if applied.values["job_model"] != model:
                job_models[key] = applied.values["job_model"]

    return app


def _store(table: Any, key: str, value: Any) -> None:
    """Write ``value`` under ``key``, or delete the key when ``value`` is None."""
    if value is not None:
        if table.get(key) != value:
            table[key] = value
    elif key in table:
        del table[key]


def build_runtime(settings: Settings, policy_path: Path) -> DetectorRuntime:
    """Return the runtime for the policy file at ``policy_path`` and the settings' registry."""
    policy = load_policy(policy_path)
    codec = AvroCodec(
        RegistrySchemaSource(settings.schema_registry_url), prefixed_catalog(settings)
    )
    return DetectorRuntime(policy, codec, topic_prefix=settings.topic_prefix)


def start_at_end(settings: Settings, group: str, contract_topics: list[str]) -> bool:
    """Commit ``group``'s offsets at the current end of the topics, if it has none yet.

    So a new detector reads only what is written from now on (faust itself would replay the
    topics from the beginning). Returns False when the group had committed offsets already.
    """
    consumer = Consumer({**settings.kafka_config(), "group.id": group})
    try:
        parts = []
        for name in (settings.topic_prefix + t for t in contract_topics):
            meta = consumer.list_topics(name, timeout=30).topics[name]
            parts += [TopicPartition(name, p) for p in meta.partitions]
        if any(tp.offset >= 0 for tp in consumer.committed(parts, timeout=30)):
            return False
        ends = [
            TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, 30)[1])
            for tp in parts
        ]
        consumer.commit(offsets=ends, asynchronous=False)
        return True
    finally:
        consumer.close()


def run_detector(
    settings: Settings,
    *,
    policy_path: Path | None,
    app_name: str = APP_NAME,
    from_now: bool = False,
) -> int:
    """Run the detector until SIGTERM or SIGINT; return the process exit code.

    ``app_name`` names its consumer group and state (see :func:`build_app`); with ``from_now``, a
    detector whose group has no committed offsets starts at the end of its input topics.
    """
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runtime = build_runtime(settings, policy_path)
    if from_now and start_at_end(
        settings,
        settings.topic_prefix + app_name,
        [topics.TOPIC_DECISIONS, topics.TOPIC_TRAINING_READS],
    ):
        log.info("new detector %s: starts at the end of its input topics", app_name)
    app = build_app(settings, runtime, app_name=app_name)
    server = None
    if settings.metrics_port is not None:

        def ready() -> bool:
            recovery = getattr(app.tables, "recovery", None)
            done = bool(recovery and recovery.completed.is_set()) and not app.in_recovery
            metrics.READY.set(1 if done else 0)
            return done

        server = HealthServer(settings.metrics_port, ready).start()
        log.info("metrics on :%d/metrics, readiness on /ready", server.port)
    worker = faust.Worker(app, loglevel="INFO", redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        if server is not None:
            server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m streams.detect.app --policy FILE`` (what ``consentinel detect`` calls)."""
    import argparse

    from streams.settings import load_settings

    parser = argparse.ArgumentParser(prog="consentinel-detect")
    parser.add_argument("--policy", type=Path, default=None)
    parser.add_argument("--app-name", default=APP_NAME)
    parser.add_argument("--from-now", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings()
    return run_detector(
        settings,
        policy_path=args.policy or settings.policy_path,
        app_name=args.app_name,
        from_now=args.from_now,
    )


if __name__ == "__main__":
    raise SystemExit(main())
