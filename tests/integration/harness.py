"""A gate test environment on the real broker and registry, isolated by a topic prefix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.admin.topics import apply_topics, load_topic_specs
from streams.core.checkpoint import PRIVATE_KEY_FILE, generate_key_pair
from streams.core.partitioning import partition_for
from streams.gate.app import build_runner
from streams.gate.topology import GateTopology
from streams.runtime.runner import RuntimeOptions as RunnerOptions
from streams.runtime.runner import StreamRunner
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
from streams.serde.registry import RegistrySchemaSource, register_all
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = REPO / "deploy" / "policy.example.yaml"
REPLAY_TIME = "time: {max_skew_s: 604800, max_lateness_s: 31536000}"
"""Time bounds of a deliberate replay (CONTRACT §3): the tests' stories are backdated by hours."""


def replay_policy(text: str | None = None) -> Path:
    """Write the example policy (or ``text``) with replay time bounds; return its path."""
    import tempfile

    source = text if text is not None else EXAMPLE_POLICY.read_text()
    lines = [REPLAY_TIME if line.startswith("time:") else line for line in source.splitlines()]
    assert REPLAY_TIME in lines, "the example policy has no top-level `time:` line any more"
    handle, name = tempfile.mkstemp(prefix="consentinel-replay-policy-", suffix=".yaml")
    os.close(handle)
    Path(name).write_text("\n".join(lines) + "\n")
    return Path(name)


def content_hash(photo_id: str) -> str:
    """Return a distinct content_sha256 for a test photo (a hash belongs to its first uploader)."""
    return hashlib.sha256(photo_id.encode()).hexdigest()


POLICY = replay_policy()
"""The policy the gate tests run with: the example policy, trusting backdated events."""


@dataclass
class GateEnv:
    """Topics under a unique prefix, schemas registered for them, and ways to run gates."""

    settings: Settings
    prefix: str
    partitions: int
    producer: ConsentinelProducer
    codec: AvroCodec
    admin: AdminClient
    work_dir: Path
    decision_clock: str = "stream"
    """Replays stamp decisions with stream time, so detectors judge them in their own time."""

    def topic(self, logical: str) -> str:
        """Return the broker's name of a contract topic in this environment."""
        return self.prefix + logical

    # -- running gates --------------------------------------------------------------------------
    @contextmanager
    def gate_thread(
        self,
        instance: str = "t1",
        store: str = "memory",
        *,
        policy: Path | None = None,
        registry_url: str | None = None,
        **options: Any,
    ) -> Iterator[StreamRunner[GateTopology]]:
        """Run a gate in a thread of this process for the duration of the block.

        ``policy`` defaults to :data:`POLICY` (replay time bounds); ``registry_url`` to the
        environment's registry.
        """
        settings = self.with_instance(instance, store, registry_url)
        runner = build_runner(settings, policy or POLICY, options=RunnerOptions(**options))
        errors: list[BaseException] = []

        def target() -> None:
            try:
                runner.run()
            except BaseException as exc:  # surfaced to the test below
                errors.append(exc)

        thread = threading.Thread(target=target, name=f"gate-{instance}", daemon=True)
        thread.start()
        try:
            yield runner
        finally:
            runner.stop()
            thread.join(60)
        assert not thread.is_alive(), "the gate did not stop within 60 s"
        assert not errors, f"the gate failed: {errors[0]!r}"

    def signing_key(self) -> Path:
        """The gate's signing key: ``CONSENTINEL_SIGNING_KEY`` if set, else this environment's.

        A gate refuses to start without one (contract section 6); the environment's key pair is
        made once, in its work directory (``keys/``, the private key mode 0600).
        """
        if os.environ.get("CONSENTINEL_SIGNING_KEY"):
            return Path(os.environ["CONSENTINEL_SIGNING_KEY"])
        private = self.work_dir / "keys" / PRIVATE_KEY_FILE
        if not private.exists():
            generate_key_pair(private.parent)
        return private

    def gate_process(
        self, instance: str, metrics_port: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``consentinel gate`` as a separate process (for crash and scale-out tests)."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
            "CONSENTINEL_TOPIC_PREFIX": self.prefix,
            "CONSENTINEL_INSTANCE_ID": instance,
            "CONSENTINEL_STATE_DIR": str(self.work_dir / "state"),
            "CONSENTINEL_DECISION_CLOCK": self.decision_clock,
            "CONSENTINEL_SIGNING_KEY": str(self.signing_key()),
        }
        if metrics_port is not None:
            env["METRICS_PORT"] = str(metrics_port)
        log = (self.work_dir / f"gate-{instance}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "gate", "--policy", str(POLICY)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def with_instance(
        self, instance: str, store: str = "memory", registry_url: str | None = None
    ) -> Settings:
        """Return this environment's settings for a gate instance id and state store kind."""
        return load_settings(
            CONSENTINEL_STATE_STORE=store,
            KAFKA_BOOTSTRAP_SERVERS=self.settings.kafka_bootstrap_servers,
            SCHEMA_REGISTRY_URL=registry_url or self.settings.schema_registry_url,
            CONSENTINEL_TOPIC_PREFIX=self.prefix,
            CONSENTINEL_INSTANCE_ID=instance,
            CONSENTINEL_STATE_DIR=str(self.work_dir / "state"),
            CONSENTINEL_DECISION_CLOCK=self.decision_clock,
            CONSENTINEL_SIGNING_KEY=str(self.signing_key()),
        )

    # -- writing and reading --------------------------------------------------------------------
    def produce_raw(
        self, logical: str, key: bytes | None, value: bytes, *, partition: int | None = None
    ) -> None:
        """Write bytes as they are (poison for the gate), where murmur2 puts the key by default.

        ``partition`` overrides where the record goes (a misrouting producer).
        """
        producer = Producer(self.settings.kafka_config())
        if partition is None:
            partition = partition_for(key or b"", self.partitions)
        producer.produce(self.topic(logical), key=key, value=value, partition=partition)
        assert producer.flush(30) == 0

    def read(
        self,
        logical: str,
        *,
        until: Callable[[list[Any]], bool],
        timeout_s: float = 60,
        decode: bool = True,
        messages: bool = False,
    ) -> list[Any]:
        """Read a topic from the start with ``read_committed`` until ``until(records)`` holds.

        Records are decoded values, or raw values (``decode=False``), or the consumer's messages
        with their headers (``messages=True``).
        """
        topic = self.topic(logical)
        consumer = Consumer(
            {
                **self.settings.kafka_config(),
                "group.id": f"{self.prefix}reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        try:
            while not until(records) and time.monotonic() < deadline:
                for message in consumer.consume(1000, timeout=0.5):
                    if message.error() is not None:
                        assert message.error().code() == KafkaError._PARTITION_EOF
                        continue
                    value = message.value()
                    if messages:
                        records.append(message)
                    else:
                        records.append(self.codec.decode(topic, value) if decode else value)
        finally:
            consumer.close()
        return records

    def read_messages(self, logical: str, count: int, *, timeout_s: float = 60) -> list[Any]:
        """Read ``count`` messages (with headers) from the start of a topic."""
        found = self.read(
            logical, until=lambda r: len(r) >= count, timeout_s=timeout_s, messages=True
        )
        assert len(found) >= count, f"{logical}: {len(found)} messages, expected {count}"
        return found

    def read_exactly(self, logical: str, count: int, *, timeout_s: float = 60) -> list[Any]:
        """Read until ``count`` records are there, then briefly more to catch any extra."""
        records = self.read(logical, until=lambda r: len(r) >= count, timeout_s=timeout_s)
        assert len(records) >= count, f"{logical}: {len(records)} records, expected {count}"
        time.sleep(1.0)
        return self.read(logical, until=lambda r: len(r) > count, timeout_s=3)


def make_gate_env(
    settings: Settings, admin: AdminClient, unique: str, work_dir: Path, partitions: int = 4
) -> GateEnv:
    """Create the prefixed topics and subjects of a fresh environment."""
    prefix = f"it{unique}."
    env_settings = load_settings(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        SCHEMA_REGISTRY_URL=settings.schema_registry_url,
        CONSENTINEL_TOPIC_PREFIX=prefix,
    )
    apply_topics(admin, load_topic_specs(partitions=partitions, prefix=prefix))
    catalog = prefixed_catalog(env_settings)
    register_all(
        env_settings.schema_registry_url, catalog, topics=[prefix + t for t in TOPIC_RECORDS]
    )
    codec = AvroCodec(RegistrySchemaSource(env_settings.schema_registry_url), catalog)
    producer = ConsentinelProducer(env_settings, source="it-gate")
    return GateEnv(env_settings, prefix, partitions, producer, codec, admin, work_dir)


def drop_gate_env(env: GateEnv) -> None:
    """Delete the environment's topics (subjects stay: they are cheap and harmless)."""
    names = [env.topic(t) for t in (*topics.ALL_TOPICS, *topics.INTERNAL_TOPICS)]
    for future in env.admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone
            future.result()
