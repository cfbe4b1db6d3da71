"""Shared plumbing of the benchmarks: prefixed environments, process sampling, output monitors."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.admin.topics import apply_topics, load_topic_specs
from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
from streams.serde.registry import RegistrySchemaSource, make_client, register_all
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "deploy" / "policy.example.yaml"
CHANGELOG = "consentinel.gate.state-changelog"
PARTITIONS = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def new_prefix(tag: str) -> str:
    """A unique topic prefix; every topic, group and subject of a run starts with it."""
    return f"bench{secrets.token_hex(3)}{tag}."


def env_settings(base: Settings, prefix: str, **extra: str) -> Settings:
    return load_settings(
        KAFKA_BOOTSTRAP_SERVERS=base.kafka_bootstrap_servers,
        SCHEMA_REGISTRY_URL=base.schema_registry_url,
        CONSENTINEL_TOPIC_PREFIX=prefix,
        **extra,
    )


def create_env(base: Settings, admin: AdminClient, prefix: str) -> AvroCodec:
    """Create the contract's topics (8 partitions) under ``prefix`` and register their schemas."""
    settings = env_settings(base, prefix)
    apply_topics(admin, load_topic_specs(partitions=PARTITIONS, prefix=prefix))
    catalog = prefixed_catalog(settings)
    register_all(settings.schema_registry_url, catalog, topics=[prefix + t for t in TOPIC_RECORDS])
    return AvroCodec(RegistrySchemaSource(settings.schema_registry_url), catalog)


def create_topics(admin: AdminClient, names: Sequence[str], partitions: int = PARTITIONS) -> None:
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1) for name in names], operation_timeout=30
    )
    for future in futures.values():
        future.result()


def drop_prefix(base: Settings, admin: AdminClient, prefix: str) -> int:
    """Delete every topic, consumer group and registry subject whose name starts with ``prefix``."""
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            with contextlib.suppress(Exception):
                future.result()
    with contextlib.suppress(Exception):
        listed = admin.list_consumer_groups(request_timeout=30).result()
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
        if groups:
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()
    with contextlib.suppress(Exception):
        client = make_client(base.schema_registry_url)
        for subject in client.get_subjects():
            if subject.startswith(prefix):
                with contextlib.suppress(Exception):
                    client.delete_subject(subject)
                with contextlib.suppress(Exception):
                    client.delete_subject(subject, permanent=True)
    return len(names)


# --------------------------------------------------------------------------- process sampling


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (from /proc/<pid>/stat)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int | str, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def stack_pids() -> dict[str, int]:
    """Pids of the local stack's servers (to tell their CPU from other work on the machine)."""
    from streams.stack.local import LocalStack

    stack = LocalStack(load_settings().stack_home, say=lambda _: None)
    found = {}
    for name in ("kafka", "registry", "prometheus"):
        pid = stack.running_pid(name)
        if pid is not None:
            found[name] = pid
    return found


class ProcSampler(threading.Thread):
    """Samples CPU seconds and peak RSS of the processes under test every ``interval`` seconds.

    Also samples the broker, the registry, this (the bench) process and the whole machine, so a
    run can say how much CPU went to work that is none of these (other users of the machine).
    """

    def __init__(self, pids: Sequence[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="proc-sampler")
        self.pids = list(pids)
        self.known = {**stack_pids(), "bench": os.getpid()}
        self.interval = interval
        # (wall time, cpu of the processes under test, cpu of the known others, machine busy)
        self.samples: list[tuple[float, float, float, float]] = []
        self.hwm_kb: dict[int, int] = {pid: 0 for pid in self.pids}
        self.cpu_last: dict[int, float] = {pid: 0.0 for pid in [*self.pids, *self.known.values()]}
        self._halt = threading.Event()

    def sample(self) -> None:
        now = time.time()
        for pid in self.cpu_last:
            cpu = proc_cpu_seconds(pid)
            if cpu is not None:
                self.cpu_last[pid] = cpu
        for pid in self.pids:
            hwm = proc_status_kb(pid, "VmHWM")
            if hwm is not None:
                self.hwm_kb[pid] = max(self.hwm_kb[pid], hwm)
        under_test = sum(self.cpu_last[p] for p in self.pids)
        known = sum(self.cpu_last[p] for p in self.known.values())
        self.samples.append((now, under_test, known, machine_busy_seconds()))

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self.sample()
        self._halt.set()

    def _at(self, when: float, column: int) -> float:
        before = [(s[0], s[column]) for s in self.samples if s[0] <= when]
        after = [(s[0], s[column]) for s in self.samples if s[0] >= when]
        if not before:
            return after[0][1] if after else 0.0
        if not after:
            return before[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cpu_at(self, when: float) -> float:
        """CPU seconds of the processes under test at ``when`` (linear between samples)."""
        return self._at(when, 1)

    def window(self, start: float, end: float) -> dict[str, float]:
        """Cores used in [start, end] by the processes under test, the stack and bench, others."""
        span = max(end - start, 1e-9)
        sut = (self._at(end, 1) - self._at(start, 1)) / span
        known = (self._at(end, 2) - self._at(start, 2)) / span
        busy = (self._at(end, 3) - self._at(start, 3)) / span
        return {
            "cores_under_test": round(sut, 2),
            "cores_stack_and_bench": round(known, 2),
            "cores_other_work": round(max(busy - sut - known, 0.0), 2),
        }


# --------------------------------------------------------------------------- output monitor


@dataclass
class Arrivals:
    """When records became visible to a read_committed consumer."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    first_batch: int = 0  # records visible at the first instant (not timed: produced before it)
    latencies_ms: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, cumulative count)


class OutputMonitor(threading.Thread):
    """A read_committed consumer counting the records of some topics as they become visible.

    ``occurred_ms(message)`` (optional) gives a record's event time, for latency (visible time minus
    ``occurred_at``). Records whose ``occurred_at`` is before ``latency_from_ms`` are not timed.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        group: str,
        from_end: bool = False,
        occurred_ms: Callable[[Message], int] | None = None,
        latency_from_ms: int = 0,
    ) -> None:
        super().__init__(daemon=True, name="output-monitor")
        self.arrivals = Arrivals()
        self.occurred_ms = occurred_ms
        self.latency_from_ms = latency_from_ms
        self._halt = threading.Event()
        self._cond = threading.Condition()
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": int(os.environ.get("BENCH_MONITOR_FETCH_WAIT_MS", "100")),
            }
        )
        assignment = []
        for topic in topics:
            meta = self.consumer.list_topics(topic, timeout=30).topics[topic]
            for partition in meta.partitions:
                offset = OFFSET_BEGINNING
                if from_end:
                    _, offset = self.consumer.get_watermark_offsets(
                        TopicPartition(topic, partition), timeout=30
                    )
                assignment.append(TopicPartition(topic, partition, offset))
        self.consumer.assign(assignment)

    def run(self) -> None:
        arrivals = self.arrivals
        try:
            while not self._halt.is_set():
                # poll() returns as soon as one record is there (consume(n, t) would wait for n
                # records or the whole timeout); then take whatever else is already fetched.
                head = self.consumer.poll(0.1)
                if head is None:
                    continue
                now = time.time()
                messages = [head, *self.consumer.consume(5000, timeout=0)]
                got = 0
                for message in messages:
                    if message.error() is not None:
                        if message.error().code() != KafkaError._PARTITION_EOF:
                            print(f"monitor: {message.error()}", file=sys.stderr)
                        continue
                    got += 1
                    if self.occurred_ms is not None:
                        occurred = self.occurred_ms(message)
                        if occurred >= self.latency_from_ms:
                            arrivals.latencies_ms.append(now * 1000 - occurred)
                if not got:
                    continue
                with self._cond:
                    if arrivals.first is None:
                        arrivals.first = now
                    if now - arrivals.first < 0.005:
                        arrivals.first_batch += got
                    arrivals.last = now
                    arrivals.count += got
                    arrivals.timeline.append((now, arrivals.count))
                    self._cond.notify_all()
        finally:
            self.consumer.close()

    def wait_for(
        self, count: int, timeout_s: float, alive: Callable[[], bool] = lambda: True
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.arrivals.count < count:
                if time.monotonic() > deadline or not alive():
                    return False
                self._cond.wait(0.5)
        return True

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None, "n": 0}
    data = sorted(values)

    def pick(q: float) -> float:
        return round(data[min(len(data) - 1, int(q * len(data)))], 1)

    return {
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "p999_ms": pick(0.999),
        "max_ms": round(data[-1], 1),
        "n": len(data),
    }


# --------------------------------------------------------------------------- subprocesses


def python_env(settings: Settings, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "CONSENTINEL_TOPIC_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env.setdefault("PYTHONPATH", str(REPO))
    return env


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )


def stop(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 60) -> None:
    """SIGTERM each process we started, then SIGKILL whatever has not exited after ``grace_s``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = proc_status_kb("self", "VmRSS")  # placeholder if meminfo is unreadable
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gb": round((mem_kb or 0) / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }


def wait_group_stable(
    admin: AdminClient, group: str, members: int, partitions: int, timeout_s: float = 120
) -> float:
    """Wait until ``group`` is stable with ``members`` members holding ``partitions`` input
    partitions between them (per input topic); return the seconds waited."""
    from confluent_kafka import ConsumerGroupState

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):
            description = admin.describe_consumer_groups([group], request_timeout=10)[
                group
            ].result()
            assigned = {
                (tp.topic, tp.partition)
                for member in description.members
                for tp in member.assignment.topic_partitions
            }
            per_topic: dict[str, int] = {}
            for topic, _ in assigned:
                per_topic[topic] = per_topic.get(topic, 0) + 1
            if (
                description.state == ConsumerGroupState.STABLE
                and len(description.members) == members
                and per_topic
                and min(per_topic.values()) >= partitions
                and all(m.assignment.topic_partitions for m in description.members)
            ):
                return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"consumer group {group} not stable with {members} members in {timeout_s}s")


def wait_consumed(
    settings: Settings, admin: AdminClient, group: str, prefix: str, timeout_s: float
) -> float:
    """Wait until ``group`` has committed offsets at the end of every input topic partition."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    from streams.topics import INPUT_TOPICS

    probe = Consumer({**settings.kafka_config(), "group.id": group + "-probe"})
    started = time.monotonic()
    try:
        ends = {}
        for logical in INPUT_TOPICS:
            topic = prefix + logical
            for partition in probe.list_topics(topic, timeout=30).topics[topic].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
                if high > 0:
                    ends[(topic, partition)] = high
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(Exception):
                request = [ConsumerGroupTopicPartitions(group)]
                listed = admin.list_consumer_group_offsets(request)[group].result()
                committed = {(tp.topic, tp.partition): tp.offset for tp in listed.topic_partitions}
                if all(committed.get(tp, -1) >= end for tp, end in ends.items()):
                    return time.monotonic() - started
            time.sleep(1.0)
    finally:
        probe.close()
    raise RuntimeError(f"{group} did not consume its input within {timeout_s}s")
