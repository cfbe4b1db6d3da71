"""RocksDB state kept across restarts: only the changelog's tail is restored, with the same result.

Gates run as processes with ``CONSENTINEL_STATE_STORE=rocksdb`` on the real broker. What each test
proves beyond "every request decided exactly once, as an uncrashed run decides it" (the crash
tests' own check, hash chains included): what each restart read from the changelog (the gate's
log), and that every kept store, once its gate has stopped, holds exactly what a full restore of
its changelog partition gives.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from streams import topics
from streams.gate.state import PartitionState
from streams.gate.topology import GATE_NAME
from streams.runtime.changelog import describe_changelog, restore_kept
from streams.runtime.kept_store import KeptStore
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from tests.integration.harness import GateEnv
from tests.integration.test_gate_exactly_once import (
    REQUESTS,
    assert_exactly_once,
    produce_load,
    seed_users,
    stop,
    wait_for_log,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RESTORED = re.compile(
    r"partition (\d+) restored: (\d+) changelog records in [\d.]+s \(kept store, from changelog"
    r" offset (\d+)(; its old copy wiped: [^)]*)?\)"
)


@pytest.fixture(autouse=True)
def rocksdb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every gate process of these tests keeps its state in RocksDB."""
    monkeypatch.setenv("CONSENTINEL_STATE_STORE", "rocksdb")


def restores(env: GateEnv, instance: str, since: int = 0) -> list[tuple[int, int, int, bool]]:
    """(partition, records read, offset started from, wiped) as logged after byte ``since``."""
    text = (env.work_dir / f"gate-{instance}.log").read_bytes()[since:].decode(errors="replace")
    return [(int(p), int(n), int(o), bool(w)) for p, n, o, w in RESTORED.findall(text)]


def wait_restored(env: GateEnv, instance: str, since: int = 0, timeout_s: float = 120) -> None:
    """Wait until the gate has logged the restore of every partition since byte ``since``."""
    deadline = time.monotonic() + timeout_s
    while len({p for p, *_ in restores(env, instance, since)}) < env.partitions:
        assert time.monotonic() < deadline, f"gate {instance} did not restore every partition"
        time.sleep(0.2)


def log_size(env: GateEnv, instance: str) -> int:
    log = env.work_dir / f"gate-{instance}.log"
    return log.stat().st_size if log.exists() else 0


def changelog_ends(env: GateEnv) -> dict[int, int]:
    consumer = Consumer({**env.settings.kafka_config(), "group.id": f"{env.prefix}ends"})
    try:
        topic = env.topic(topics.TOPIC_GATE_CHANGELOG)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in range(env.partitions)
        }
    finally:
        consumer.close()


def replay(env: GateEnv, partition: int, start: int = OFFSET_BEGINNING) -> list[Message]:
    """The committed records of the changelog partition from ``start`` to its end."""
    topic = env.topic(topics.TOPIC_GATE_CHANGELOG)
    found: list[Message] = []
    consumer = Consumer(
        {**env.settings.kafka_config(), **READER_CONFIG, "group.id": f"{env.prefix}replay"}
    )
    try:
        read_to_end(
            consumer,
            [TopicPartition(topic, partition, start)],
            found.extend,
            timeout_s=60,
            what=topic,
        )
    finally:
        consumer.close()
    return found


def full_restore(env: GateEnv, partition: int) -> dict[bytes, bytes]:
    """What a full restore of the changelog partition gives: the last value of each live key."""
    state = {m.key() or b"": m.value() for m in replay(env, partition)}
    return {key: value for key, value in state.items() if value is not None}


def assert_stores_are_full_restores(env: GateEnv, instance: str, partitions: list[int]) -> None:
    """Each kept store of a stopped gate equals a full restore, with no committed record after
    its offset (the offset may still be before the last transaction's commit marker)."""
    ends = changelog_ends(env)
    topic = env.topic(topics.TOPIC_GATE_CHANGELOG)
    for partition in partitions:
        directory = env.work_dir / "state" / instance / GATE_NAME / f"partition-{partition}"
        identity = describe_changelog(env.admin, topic, partition)
        store = KeptStore.open(directory, identity)
        try:
            assert store.wiped_because is None, store.wiped_because
            kept = dict(store.items())
            offset = store.offset
        finally:
            store.close()
        expected = full_restore(env, partition)
        assert offset <= ends[partition], f"partition {partition}: store beyond its changelog"
        behind = replay(env, partition, offset)
        assert not behind, f"partition {partition}: {len(behind)} committed records after the store"
        missing = expected.keys() - kept.keys()
        extra = kept.keys() - expected.keys()
        wrong = [k for k in expected.keys() & kept.keys() if expected[k] != kept[k]]
        assert not (missing or extra or wrong), (
            f"partition {partition}: {len(missing)} keys missing, {len(extra)} extra,"
            f" {len(wrong)} different from a full restore, e.g. {sorted(missing | extra)[:3]}"
        )


def test_a_gate_killed_with_kept_state_restores_only_the_tail(gate_env: GateEnv) -> None:
    """SIGKILL under load: the restart reads only the tail and decides as an uncrashed run."""
    now = int(time.time() * 1000)
    seed_users(gate_env, now)
    gates = [gate_env.gate_process("kept")]
    wait_restored(gate_env, "kept")
    kill_at = REQUESTS // 2
    restarted_from: list[int] = []
    ends_at_kill: dict[int, int] = {}

    def chaos(i: int) -> None:
        if i == kill_at:
            stop(gates[-1], signal.SIGKILL)  # no chance to commit, abort or close anything
            ends_at_kill.update(changelog_ends(gate_env))
            restarted_from.append(log_size(gate_env, "kept"))
            gates.append(gate_env.gate_process("kept"))

    try:
        ids = produce_load(gate_env, now, 0, REQUESTS, per_second=400, between=chaos)
        assert_exactly_once(gate_env, ids)
    finally:
        for gate in gates:
            stop(gate)
    assert gates[0].returncode == -signal.SIGKILL and gates[1].returncode == 0
    again = restores(gate_env, "kept", restarted_from[0])
    assert sorted(p for p, *_ in again) == list(range(gate_env.partitions))
    for partition, records, offset, wiped in again:
        assert not wiped, f"partition {partition}: its kept store was wiped"
        assert offset > 0, f"partition {partition}: restored from the beginning"
        assert records <= ends_at_kill[partition] - offset, (
            f"partition {partition}: {records} records read from offset {offset}: not the tail"
        )
    tail = sum(records for _, records, _, _ in again)
    assert tail * 4 < sum(ends_at_kill.values()), (
        f"the restart read {tail} of {sum(ends_at_kill.values())} changelog records"
    )
    assert_stores_are_full_restores(gate_env, "kept", list(range(gate_env.partitions)))


def test_partitions_that_move_away_and_back_restore_what_the_other_gate_wrote(
    gate_env: GateEnv,
) -> None:
    """A partition back from another process takes its tail, not its stale copy."""
    now = int(time.time() * 1000)
    seed_users(gate_env, now)
    first = gate_env.gate_process("g1")
    second = None
    try:
        wait_restored(gate_env, "g1")
        third = REQUESTS // 3
        ids = produce_load(gate_env, now, 0, third, per_second=400)
        second = gate_env.gate_process("g2")
        wait_for_log(gate_env, "g2", "restored")
        ids += produce_load(gate_env, now, third, 2 * third, per_second=400)
        moved = sorted({p for p, *_ in restores(gate_env, "g2")})
        assert moved, "the second gate took no partition"
        back_from = log_size(gate_env, "g1")
        stop(second)  # a clean leave: its partitions go back to the first gate
        ids += produce_load(gate_env, now, 2 * third, REQUESTS, per_second=400)
        assert_exactly_once(gate_env, ids)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    back = {p: (n, o, w) for p, n, o, w in restores(gate_env, "g1", back_from)}
    for partition in moved:
        records, offset, wiped = back[partition]
        assert not wiped and offset > 0, f"partition {partition} came back without its copy"
        assert records > 0, f"partition {partition}: what the second gate wrote was not read"
    assert_stores_are_full_restores(gate_env, "g1", list(range(gate_env.partitions)))


def test_a_store_of_a_recreated_changelog_is_wiped_and_restored_in_full(
    gate_env: GateEnv,
) -> None:
    """The changelog deleted (and recreated by the gate): the old copy must not be used."""
    now = int(time.time() * 1000)
    seed_users(gate_env, now)
    gate = gate_env.gate_process("re")
    try:
        wait_restored(gate_env, "re")
        produce_load(gate_env, now, 0, 200, per_second=400)
        gate_env.read_exactly(topics.TOPIC_DECISIONS, 200, timeout_s=120)
    finally:
        stop(gate)
    name = gate_env.topic(topics.TOPIC_GATE_CHANGELOG)
    for future in gate_env.admin.delete_topics([name], operation_timeout=30).values():
        future.result()
    deadline = time.monotonic() + 60
    while name in gate_env.admin.list_topics(timeout=30).topics:
        assert time.monotonic() < deadline, "the changelog was not deleted"
        time.sleep(0.5)
    since = log_size(gate_env, "re")
    gate = gate_env.gate_process("re")
    try:
        wait_restored(gate_env, "re", since)
    finally:
        stop(gate)
    for partition, _, offset, wiped in restores(gate_env, "re", since):
        assert wiped and offset == 0, f"partition {partition} used a copy of another changelog"
    assert_stores_are_full_restores(gate_env, "re", list(range(gate_env.partitions)))


def test_a_kept_store_reads_the_tail_a_crash_left_and_never_an_aborted_transaction(
    gate_env: GateEnv, tmp_path: Path
) -> None:
    """The restore path alone, on the real broker: committed tail in, aborted records out."""
    topic = gate_env.topic(topics.TOPIC_GATE_CHANGELOG)
    producer = Producer(
        {**gate_env.settings.kafka_config(), "transactional.id": f"{gate_env.prefix}kept-txn"}
    )
    producer.init_transactions(30)

    def transaction(records: dict[bytes, bytes], *, commit: bool = True) -> None:
        producer.begin_transaction()
        for key, value in records.items():
            producer.produce(topic, value, key, partition=0)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            producer.abort_transaction(30)

    identity = describe_changelog(gate_env.admin, topic, 0)

    def restore(directory: Path) -> tuple[KeptStore, int]:
        store = KeptStore.open(directory, identity)
        _, count = restore_kept(
            gate_env.settings.kafka_config(),
            f"{gate_env.prefix}restore",
            store,
            lambda s: PartitionState(0, s, cache_all=False),
            timeout_s=60,
            max_age_ms=3_600_000,
        )
        return store, count

    transaction({b"u:a": b"1", b"u:b": b"1"})
    store, count = restore(tmp_path / "kept")
    assert count == 2 and store.offset == changelog_ends(gate_env)[0]
    store.close()

    transaction({b"u:a": b"2", b"u:c": b"9"})  # committed; the store never got it (a crash)
    transaction({b"u:b": b"ABORTED", b"u:d": b"ABORTED"}, commit=False)
    store, count = restore(tmp_path / "kept")
    assert count == 2, "the committed tail only, not the aborted records"
    kept = dict(store.items())
    assert store.offset == changelog_ends(gate_env)[0]
    store.close()
    fresh, count = restore(tmp_path / "fresh")
    assert count == 4
    assert kept == dict(fresh.items()) == {b"u:a": b"2", b"u:b": b"1", b"u:c": b"9"}
    fresh.close()

    beyond = KeptStore.open(tmp_path / "beyond", identity)
    beyond.put(b"u:stale", b"x")
    beyond.commit(10_000)  # a copy of a longer changelog (this one was recreated, say)
    beyond.close()
    store, count = restore(tmp_path / "beyond")
    assert store.wiped_because is not None and "beyond the changelog's end" in store.wiped_because
    assert count == 4 and store.get(b"u:stale") is None
    store.close()
