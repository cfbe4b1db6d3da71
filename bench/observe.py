"""Probes of the systems under test and of the machine: readiness, outputs, versions, memory."""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Message, libversion
from confluent_kafka.admin import AdminClient

from bench.common import say
from bench.output_monitor import OutputMonitor
from bench.quix_peer import quix_version
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

MEMORY_STORE_BYTES_PER_RECORD = 1_100
"""What the memory store holds per changelog record restored (measured: 10 M users' consent
states peaked at 8.1 GB; 100 k users with recall ledgers at 2.2 kB per user, two records each)."""


def memory_store_skipped(store: str, records: int) -> str | None:
    """Why a memory-store restore of ``records`` records is not run here (None: it is run).

    It is skipped when its estimated footprint exceeds 60% of the memory available now: the
    kernel would kill the broker (or the benchmark) first. RocksDB is the store for that size.
    """
    if store != "memory":
        return None
    need_mb = records * MEMORY_STORE_BYTES_PER_RECORD / 2**20
    available_mb = proc_meminfo_kb("MemAvailable") / 1024
    if need_mb <= 0.6 * available_mb:
        return None
    return (
        f"not run: the memory store would need about {need_mb / 1024:.0f} GB"
        f" ({MEMORY_STORE_BYTES_PER_RECORD} bytes per record measured), more than 60% of the"
        f" {available_mb / 1024:.0f} GB available; RocksDB holds this state on disk"
    )


def proc_meminfo_kb(field: str) -> int:
    """Return one field of ``/proc/meminfo`` in kB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(f"/proc/meminfo has no {field}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float, alive: subprocess.Popen[bytes]) -> float:
    """Wait until a process's ``/ready`` answers 200 (state restored, tables read)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if alive.poll() is not None:
            raise RuntimeError(f"the process serving :{port} exited before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"not ready on :{port} within {timeout_s}s")


def gen_inputs() -> tuple[str, ...]:
    from bench.gen import INPUT_TOPICS

    return INPUT_TOPICS


def set_create_time(admin: AdminClient, names: list[str]) -> None:
    """Switch topics to ``message.timestamp.type=CreateTime`` (the producer's timestamps)."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(
                    "message.timestamp.type",
                    "CreateTime",
                    incremental_operation=AlterConfigOpType.SET,
                )
            ],
        )
        for name in names
    ]
    for future in admin.incremental_alter_configs(resources).values():
        future.result()


def decision_time(codec: AvroCodec) -> Any:
    def occurred(message: Message) -> int:
        return int(codec.decode(message.topic() or "", message.value())["occurred_at"])

    return occurred


def kafka_time(message: Message) -> int:
    return int(message.timestamp()[1])


def read_topic(
    settings: Settings, codec: AvroCodec, topic: str, see: Callable[[dict[str, Any]], None]
) -> int:
    """Hand every committed record of ``topic``, decoded, to ``see`` (after a run, not timed);
    return how many. It reads until the count has not grown for 2 s (at most 300 s)."""

    def seen(message: Message) -> int:
        see(codec.decode(topic, message.value()))
        return 0

    monitor = OutputMonitor(settings, [topic], group=topic + "-read", occurred_ms=seen)
    monitor.latency_from_ms = 1  # never times anything: ``seen`` returns 0
    monitor.start()
    last, still = -1, 0
    deadline = time.monotonic() + 300
    while still < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = monitor.arrivals.count
        still = still + 1 if now == last else 0
        last = now
    monitor.stop()
    return monitor.arrivals.count


def verdicts_by_request(settings: Settings, codec: AvroCodec, topic: str) -> dict[str, str]:
    """Return ``subject_event_id`` → ``verdict/reason`` of every decision on ``topic`` (after a
    run, not timed); a request decided twice keeps ``verdict/reason`` joined by ``|``."""
    found: dict[str, str] = {}

    def see(record: dict[str, Any]) -> None:
        subject, outcome = record["subject_event_id"], f"{record['verdict']}/{record['reason']}"
        found[subject] = f"{found[subject]}|{outcome}" if subject in found else outcome

    read_topic(settings, codec, topic, see)
    return found


def tally(
    settings: Settings,
    codec: AvroCodec,
    topic: str,
    fields: tuple[str, ...] = ("verdict", "reason"),
) -> dict[str, int]:
    """Count the records of ``topic`` by ``fields`` (verdict/reason for decisions, error_kind for
    dead letters), after the run, not timed."""
    counts: dict[str, int] = {}

    def see(record: dict[str, Any]) -> None:
        key = "/".join(str(record[f]) for f in fields)
        counts[key] = counts.get(key, 0) + 1

    read_topic(settings, codec, topic, see)
    return dict(sorted(counts.items()))


def versions(settings: Settings) -> dict[str, str]:
    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    kafka = "unknown"
    registry = "unknown"
    home = settings.stack_home.expanduser()
    for jar in sorted((home / "lib").glob("kafka-clients-*.jar")):
        kafka = jar.stem.removeprefix("kafka-clients-") + " (local stack, KRaft, 1 node)"
    for jar in sorted((home / "registry" / "app").glob("apicurio-registry-app-*.jar")):
        registry = "Apicurio Registry " + jar.stem.removeprefix("apicurio-registry-app-")
    return {
        "python": platform.python_version(),
        "confluent_kafka": dist("confluent-kafka"),
        "librdkafka": libversion()[0],
        "kafka": kafka,
        "registry": registry,
        "faust_streaming": dist("faust-streaming"),
        "aiokafka": dist("aiokafka"),
        "fastavro": dist("fastavro"),
        "rocksdict": dist("rocksdict"),
        "pyinstrument": dist("pyinstrument"),
        "quixstreams (own venv)": quix_version(),
        "matplotlib": dist("matplotlib"),
    }


def _answers(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=3):
            return True
    except (OSError, ValueError):
        return False


def ensure_stack() -> None:
    """Start the local stack unless Kafka and the registry already answer."""
    settings = load_settings()
    kafka_ok = all(_answers(b) for b in settings.kafka_bootstrap_servers.split(","))
    registry_ok = False
    if kafka_ok:
        try:
            url = settings.schema_registry_url + "/subjects"
            registry_ok = httpx.get(url, timeout=5).is_success
        except Exception:
            registry_ok = False
    if kafka_ok and registry_ok:
        say("stack: Kafka and the registry answer")
        return
    from streams.stack.local import LocalStack

    say("stack: not running, starting the local stack")
    LocalStack(settings.stack_home).up()
