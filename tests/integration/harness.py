"""A gate test environment on the real broker and registry, isolated by a topic prefix."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.admin.topics import apply_topics, load_topic_specs
from streams.core.checkpoint import PRIVATE_KEY_FILE, generate_key_pair
from streams.core.egress import DECISION_HASH_HEADER, DECISION_ID_HEADER
from streams.core.partitioning import partition_for
from streams.gate.app import build_runner
from streams.gate.topology import GATE_NAME, STREAM_ORDER, GateTopology
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from streams.runtime.runner import RuntimeOptions as RunnerOptions
from streams.runtime.runner import StreamRunner
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
from streams.serde.registry import RegistrySchemaSource, register_all
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings
from tests.unit.gate_stories import HOUR

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

GATE_INTERNAL = (topics.TOPIC_GATE_PHOTO_CLAIMS, topics.TOPIC_GATE_PHOTO_VERDICTS)
"""The gate's photo index topics: sources of the gate like its inputs."""


@dataclass(frozen=True)
class GateProfile:
    """How an environment runs its gates: decision clock, policy (time bounds), commit cadence.

    ``story_hour_ms`` is how long an "hour" of a story is (stories backdate an upload by five
    of them, consents by four, ...): the real hour under replay time bounds; under the policy's
    default bounds (``max_lateness_s`` 300) a shorter one, so that every event is appended within
    the lateness the gate accepts. The order of a story's events, and so its verdict, is the same.
    """

    name: str
    decision_clock: str
    """``CONSENTINEL_DECISION_CLOCK``: what the gate stamps ``decided_at`` with."""
    policy: Path
    commit_interval_ms: int
    """``CONSENTINEL_COMMIT_INTERVAL_MS``."""
    story_hour_ms: int


REPLAY = GateProfile(
    name="replay", decision_clock="stream", policy=POLICY, commit_interval_ms=0, story_hour_ms=HOUR
)
"""The tests' settings: stream time stamps decisions, replay time bounds (stories backdated by
hours), a commit every loop turn (the shipped ``commit_interval_ms`` default)."""

PRODUCTION = GateProfile(
    name="production",
    decision_clock="wall",
    policy=EXAMPLE_POLICY,
    commit_interval_ms=250,
    story_hour_ms=40_000,
)
"""Production's settings (issue #21): the wall clock stamps decisions (the shipped default), the
example policy's time bounds as shipped (60 s skew, 300 s lateness), and transactions that stay
open across loop turns (250 ms, a cadence BENCHMARKS.md measures; the shipped default, 0, is
what :data:`REPLAY` runs). A story's "hour" is 40 s: its oldest event, five "hours" back, is
appended 200 s late."""

PROFILES = (REPLAY, PRODUCTION)
"""Both, for ``pytest.mark.parametrize("gate_profile", PROFILES, ids=profile_id)``."""


def profile_id(profile: GateProfile) -> str:
    """A parametrized test's id for ``profile``."""
    return profile.name


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
    profile: GateProfile = REPLAY
    """How gates run here (:data:`REPLAY` unless a test asks for :data:`PRODUCTION`)."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """Every gate process started here (:meth:`gate_process`), for a failed test's post-mortem."""

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

        ``policy`` defaults to the profile's (:data:`POLICY`, replay time bounds, unless the
        environment runs :data:`PRODUCTION`); ``registry_url`` to the environment's registry.
        The commit interval is the profile's (the gate's settings set it).
        """
        assert "commit_interval_ms" not in options, "set it with the profile: settings win"
        settings = self.with_instance(instance, store, registry_url)
        runner = build_runner(
            settings, policy or self.profile.policy, options=RunnerOptions(**options)
        )
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
            "CONSENTINEL_DECISION_CLOCK": self.profile.decision_clock,
            "CONSENTINEL_COMMIT_INTERVAL_MS": str(self.profile.commit_interval_ms),
            "CONSENTINEL_SIGNING_KEY": str(self.signing_key()),
        }
        if metrics_port is not None:
            env["METRICS_PORT"] = str(metrics_port)
        log = (self.work_dir / f"gate-{instance}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "gate", "--policy", str(self.profile.policy)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.processes.append(process)
        return process

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
            CONSENTINEL_DECISION_CLOCK=self.profile.decision_clock,
            CONSENTINEL_COMMIT_INTERVAL_MS=self.profile.commit_interval_ms,
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
                    error = message.error()
                    if error is not None:
                        assert error.code() == KafkaError._PARTITION_EOF
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
        """Return the topic's records, asserting there are exactly ``count`` of them.

        Waits (up to ``timeout_s``) until ``count`` committed records are there, then until the
        gate has committed every input written so far (:meth:`settle`: whatever they lead to
        is written by then), then reads the topic with ``read_committed`` to its end offsets:
        a record missing or one too many fails the test.
        """
        self.read(logical, until=lambda r: len(r) >= count, timeout_s=timeout_s, decode=False)
        self.settle(timeout_s)
        records = self.read_to_end(logical)
        assert len(records) == count, (
            f"{logical}: {len(records)} records, expected exactly {count}: {records}"
        )
        return records

    def read_to_end(self, logical: str, *, messages: bool = False) -> list[Any]:
        """Read every committed record of a topic, up to its end offsets as of now.

        Decoded values, or the consumer's messages with their headers (``messages=True``).
        """
        topic = self.topic(logical)
        found: list[Any] = []
        self._read_to_end([topic], found.extend)
        if messages:
            return found
        return [self.codec.decode(topic, m.value()) for m in found]

    def _read_to_end(self, names: list[str], on_records: Callable[[list[Any]], None]) -> None:
        consumer = Consumer(
            {**self.settings.kafka_config(), **READER_CONFIG, "group.id": f"{self.prefix}reader"}
        )
        try:
            starts = [
                TopicPartition(name, p, OFFSET_BEGINNING)
                for name in names
                for p in consumer.list_topics(name, timeout=30).topics[name].partitions
            ]
            read_to_end(consumer, starts, on_records, timeout_s=60, what=", ".join(names))
        finally:
            consumer.close()

    def settle(self, timeout_s: float = 60) -> None:
        """Wait until the gate's group has committed every input record written so far.

        Inputs are the gate's sources (its five input topics and its photo index topics); a
        record counts once it is committed (``read_committed``). The gate commits an input's
        offset in the transaction that writes its outputs, so once this returns everything the
        inputs lead to is on the output topics. Returns at once when no gate ever ran here.
        """
        group = self.prefix + GATE_NAME
        names = [self.topic(t) for t in (*STREAM_ORDER, *GATE_INTERNAL)]
        deadline = time.monotonic() + timeout_s
        while True:
            found: list[Any] = []
            self._read_to_end(names, found.extend)
            ends: dict[tuple[str, int], int] = {}
            for m in found:
                key = (m.topic(), m.partition())
                ends[key] = max(ends.get(key, 0), m.offset() + 1)
            committed = self._committed(group, names)
            if not any(offset >= 0 for offset in committed.values()):
                return  # no gate has committed anything in this environment
            behind = {k: end for k, end in ends.items() if committed.get(k, -1) < end}
            if not behind:
                return
            assert time.monotonic() < deadline, (
                f"the gate did not commit its inputs within {timeout_s:g}s: {behind} vs "
                f"{ {k: committed.get(k) for k in behind} }"
            )
            time.sleep(0.3)

    def committed_inputs(self) -> int:
        """Return how many input records the gate's group has committed, over all its sources."""
        names = [self.topic(t) for t in (*STREAM_ORDER, *GATE_INTERNAL)]
        return sum(
            max(offset, 0) for offset in self._committed(self.prefix + GATE_NAME, names).values()
        )

    def wait_for_progress(self, beyond: int, timeout_s: float = 60) -> int:
        """Wait until the gate's group has committed more than ``beyond`` inputs; return how many.

        A gate that is to be killed "mid-stream" must have committed work first: killed earlier
        (still starting, or before its first commit), its restart has nothing to resume from.
        """
        deadline = time.monotonic() + timeout_s
        while (committed := self.committed_inputs()) <= beyond:
            assert time.monotonic() < deadline, (
                f"the gate committed no input within {timeout_s:g}s ({committed} committed)"
            )
            time.sleep(0.1)
        return committed

    def _committed(self, group: str, names: list[str]) -> dict[tuple[str, int], int]:
        consumer = Consumer({**self.settings.kafka_config(), "group.id": group})
        try:
            wanted = [
                TopicPartition(name, p)
                for name in names
                for p in consumer.list_topics(name, timeout=30).topics[name].partitions
            ]
            return {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(wanted, 30)}
        finally:
            consumer.close()

    def assert_approved(
        self, timeout_s: float = 60, *, settle: bool = True
    ) -> list[dict[str, Any]]:
        """Assert ``photo.share.approved`` holds exactly the ALLOW shares, each once.

        Settles the gate (:meth:`settle`), then reads both topics to their ends: every approved
        record carries one ``consentinel-decision-id`` and one ``consentinel-decision-hash``
        header naming an ``ALLOW`` decision of a share on ``governance.decisions`` and that
        decision's chain hash; its value is that share request (event, photo, owner, recipient,
        purpose); and every ALLOW share decision has exactly one approved record. Returns the
        approved records' decoded values. ``settle=False`` checks the topics as they are (a gate
        that stopped on an error never commits the rest of its inputs).
        """
        if settle:
            self.settle(timeout_s)
        decisions = self.read_to_end(topics.TOPIC_DECISIONS)
        messages = self.read_to_end(topics.TOPIC_SHARE_APPROVED, messages=True)
        allowed = {
            d["decision_id"]: d
            for d in decisions
            if d["verdict"] == "ALLOW" and d["subject_kind"] == "SHARE"
        }
        approved_topic = self.topic(topics.TOPIC_SHARE_APPROVED)
        shipped: list[str] = []
        values = []
        for message in messages:
            headers = message.headers() or []
            ids = [v for k, v in headers if k == DECISION_ID_HEADER]
            hashes = [v for k, v in headers if k == DECISION_HASH_HEADER]
            assert len(ids) == 1 and len(hashes) == 1, f"approved record headers: {headers}"
            decision_id, decision_hash = ids[0].decode(), hashes[0].decode()
            value = self.codec.decode(approved_topic, message.value())
            decision = allowed.get(decision_id)
            assert decision is not None, (
                f"approved share {value['event_id']} names {decision_id}, no ALLOW share decision"
            )
            assert decision_hash == decision["hash"], f"{decision_id}: the hash header differs"
            shipped_as = (
                value["event_id"],
                value["photo_id"],
                value["owner_id"],
                value["recipient_org"],
                value["purpose"],
            )
            decided = (
                decision["subject_event_id"],
                decision["photo_id"],
                decision["owner_id"],
                decision["recipient_org"],
                decision["purpose"],
            )
            assert shipped_as == decided, f"{decision_id} approved another share: {value}"
            assert message.key() == decision["owner_id"].encode()
            shipped.append(decision_id)
            values.append(value)
        twice = sorted(k for k, n in Counter(shipped).items() if n > 1)
        assert not twice, f"ALLOW decisions shipped more than once: {twice}"
        assert set(shipped) == set(allowed), (
            f"ALLOW shares never shipped: {sorted(set(allowed) - set(shipped))}"
        )
        return values


def make_gate_env(
    settings: Settings,
    admin: AdminClient,
    unique: str,
    work_dir: Path,
    partitions: int = 4,
    profile: GateProfile = REPLAY,
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
    return GateEnv(env_settings, prefix, partitions, producer, codec, admin, work_dir, profile)


def drop_gate_env(env: GateEnv) -> None:
    """Delete the environment's topics (subjects stay: they are cheap and harmless)."""
    names = [env.topic(t) for t in (*topics.ALL_TOPICS, *topics.INTERNAL_TOPICS)]
    for future in env.admin.delete_topics(names, operation_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone
            future.result()
