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


def build_app(
    settings: Settings,
    runtime: DetectorRuntime,
    *,
    partitions: int = PARTITIONS,
    merge_wait_ms: int = MERGE_WAIT_MS,
) -> faust.App:
    """Return the faust app running ``runtime`` against the settings' Kafka."""
    prefix = settings.topic_prefix
    app_id = prefix + APP_NAME
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


def run_detector(settings: Settings, *, policy_path: Path | None) -> int:
    """Run the detector until SIGTERM or SIGINT; return the process exit code."""
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runtime = build_runtime(settings, policy_path)
    app = build_app(settings, runtime)
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
    args = parser.parse_args(argv)
    settings = load_settings()
    return run_detector(settings, policy_path=args.policy or settings.policy_path)


if __name__ == "__main__":
    raise SystemExit(main())
