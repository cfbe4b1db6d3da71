"""A RocksDB store kept across restarts: committed state only, its changelog offset with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.core.audit import GENESIS_HASH
from streams.errors import AuthorizationError, TransientError
from streams.gate.state import PartitionState
from streams.runtime import changelog
from streams.runtime.assignment import Assignment
from streams.runtime.changelog import describe_changelog, restore_start
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.kept_store import ChangelogIdentity, KeptStore, KeptWrites, StoreMeta
from streams.runtime.metrics import runtime_metrics
from streams.runtime.options import RuntimeOptions
from streams.runtime.task import PartitionTask
from streams.runtime.timesync import PartitionSynchronizer
from streams.runtime.topology import TopologySpec

pytest.importorskip("rocksdict")

IDENTITY = ChangelogIdentity("p.consentinel.gate.state-changelog", 3, 8, "topic-id-1")
HOUR_MS = 3_600_000


def test_writes_are_read_at_once_but_reach_disk_only_with_a_commit(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    store.put(b"u:a", b"1")
    store.put_many({b"u:b": b"2", b"u:c": b"3"})
    store.commit(17)
    store.put(b"u:d", b"uncommitted")
    store.delete(b"u:a")
    assert store.get(b"u:d") == b"uncommitted" and store.get(b"u:a") is None
    assert list(store.items(b"u:")) == [(b"u:b", b"2"), (b"u:c", b"3"), (b"u:d", b"uncommitted")]
    store.close()

    again = KeptStore.open(tmp_path / "s", IDENTITY)
    assert again.offset == 17
    assert list(again.items()) == [(b"u:a", b"1"), (b"u:b", b"2"), (b"u:c", b"3")]
    assert len(again) == 3, "the changelog position is not an entry"
    again.close()


def test_rollback_forgets_what_an_aborted_transaction_wrote(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    store.put(b"k", b"committed")
    store.commit(5)
    store.put(b"k", b"aborted")
    store.put(b"other", b"aborted")
    store.rollback()
    assert store.get(b"k") == b"committed" and store.get(b"other") is None
    assert store.offset == 5
    store.close()


def test_a_commit_without_an_offset_keeps_the_stored_one(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    store.commit(40)
    store.put(b"k", b"v")
    store.commit(None)
    assert store.offset == 40 and store.get(b"k") == b"v"
    store.close()


@pytest.mark.parametrize(
    "other",
    [
        ChangelogIdentity("p.other-changelog", 3, 8, "topic-id-1"),
        ChangelogIdentity(IDENTITY.topic, 4, 8, "topic-id-1"),
        ChangelogIdentity(IDENTITY.topic, 3, 16, "topic-id-1"),
        ChangelogIdentity(IDENTITY.topic, 3, 8, "topic-id-2"),  # the topic was recreated
    ],
)
def test_a_store_of_another_changelog_is_wiped_when_opened(
    tmp_path: Path, other: ChangelogIdentity
) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    store.put(b"u:a", b"1")
    store.commit(9)
    store.close()
    reopened = KeptStore.open(tmp_path / "s", other)
    assert reopened.offset == 0 and list(reopened.items()) == []
    assert reopened.wiped_because is not None
    reopened.close()


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from streams.runtime.kept_store import ChangelogIdentity, KeptStore

    store = KeptStore.open(Path(sys.argv[1]), ChangelogIdentity("t", 0, 1, "id"))
    for n in range(20):  # a restore: unlogged batches, each with its offset, then a flush
        store.put_many({b"r:%04d" % i: b"restored" for i in range(n * 500, (n + 1) * 500)})
        store.commit((n + 1) * 500, log=False)
    store.flush()
    store.put(b"u:committed", b"yes")
    store.commit(10_001)  # a transaction that committed: logged
    store.put(b"u:open", b"uncommitted")  # the transaction open when the process dies
    store.delete(b"u:committed")
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_process_killed_mid_transaction_leaves_only_committed_state(tmp_path: Path) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    store = KeptStore.open(tmp_path / "s", ChangelogIdentity("t", 0, 1, "id"))
    assert store.offset == 10_001
    assert store.get(b"u:committed") == b"yes"
    assert store.get(b"u:open") is None
    assert sum(1 for _ in store.items(b"r:")) == 10_000
    store.close()


# -- where a restore starts -------------------------------------------------------------------
NOW = 1_790_000_000_000


def meta(offset: int, identity: ChangelogIdentity = IDENTITY, age_ms: int = 0) -> StoreMeta:
    return StoreMeta(identity, offset, NOW - age_ms)


@pytest.mark.parametrize(
    ("stored", "low", "high", "start", "wiped"),
    [
        (None, 0, 500, None, None),  # nothing kept: the whole changelog
        (meta(420), 0, 500, 420, None),  # the tail only
        (meta(500), 0, 500, 500, None),  # already at the end: nothing to read
        (meta(0), 0, 0, 0, None),  # an empty changelog, an empty store
        (meta(501), 0, 500, None, "beyond the changelog's end"),  # truncated or recreated
        (meta(420), 0, 12, None, "beyond the changelog's end"),  # recreated, shorter
        (meta(3), 10, 500, None, "before the changelog's start"),  # records deleted
        (meta(420, ChangelogIdentity("other", 3, 8)), 0, 500, None, "copies"),
        (meta(420, age_ms=21 * HOUR_MS), 0, 500, None, "longer than tombstones"),
    ],
)
def test_where_a_restore_starts(
    stored: StoreMeta | None, low: int, high: int, start: int | None, wiped: str | None
) -> None:
    got_start, why = restore_start(stored, IDENTITY, low, high, now_ms=NOW, max_age_ms=20 * HOUR_MS)
    assert got_start == start
    assert (why is None) == (wiped is None)
    if wiped is not None:
        assert why is not None and wiped in why


# -- the gate's state over a kept store -------------------------------------------------------
def test_the_gate_state_reopens_as_committed(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    state = PartitionState(3, store, cache_all=False)
    state.restore_many([(b"u:x", None), (b"h", b"aa" * 32), (b"n", b"7"), (b"t", b"1000")])
    store.commit(4)
    state.user_for_update("u1")
    state.remember("e1", "digest-1", 2_000)
    state.advance_head("bb" * 32)
    state.advance_stream_time(3_000)
    assert len(state.take_changes()) == 5  # e:e1, h, n, t, u:u1
    store.commit(11)  # the transaction committed
    state.close()

    store = KeptStore.open(tmp_path / "s", IDENTITY)
    state = PartitionState(3, store, cache_all=False)
    assert (state.head, state.decisions, state.stream_time) == ("bb" * 32, 8, 3_000)
    assert state.seen("e1") == "digest-1" and state.user("u1") is not None

    state.user_for_update("u2")  # a transaction that aborts
    state.remember("e2", "digest-2", 4_000)
    state.advance_head("cc" * 32)
    state.take_changes()
    store.rollback()
    state = PartitionState(3, store, cache_all=False)  # what the runtime's rewind does
    assert (state.head, state.decisions) == ("bb" * 32, 8)
    assert state.user("u2") is None and state.seen("e2") is None
    state.close()


def test_an_empty_store_gives_a_new_chain(tmp_path: Path) -> None:
    state = PartitionState(0, KeptStore.open(tmp_path / "s", IDENTITY), cache_all=False)
    assert (state.head, state.decisions, state.stream_time) == (GENESIS_HASH, 0, None)
    state.close()


# -- the transaction writes a kept store only once it committed -------------------------------
class Producer:
    """A stand-in for the transactional producer: offsets per partition, delivery at commit."""

    def __init__(self, commit_fails: bool = False) -> None:
        self.ends: dict[int, int] = {}
        self.queued: list[tuple[Any, Any]] = []
        self.commit_fails = commit_fails

    def begin_transaction(self) -> None:
        self.queued = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        partition = kwargs.get("partition", 0)
        offset = self.ends.get(partition, 0)
        self.ends[partition] = offset + 1
        self.queued.append((kwargs.get("on_delivery"), Message(offset)))

    def send_offsets_to_transaction(self, *args: Any) -> None:
        pass

    def commit_transaction(self) -> None:
        if self.commit_fails:
            raise RuntimeError("the broker went away")
        for on_delivery, message in self.queued:
            if on_delivery is not None:
                on_delivery(None, message)

    def abort_transaction(self) -> None:
        pass


class Message:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def offset(self) -> int:
        return self._offset


def task_over(store: KeptStore) -> PartitionTask:
    state = PartitionState(3, store, cache_all=False)
    return PartitionTask(3, state, PartitionSynchronizer([], max_idle_ms=0), kept=store)


def outcome(result: str) -> None:
    pass


def test_a_committed_transaction_writes_the_store_with_the_changelog_offset(
    tmp_path: Path,
) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    task = task_over(store)
    producer = Producer()
    producer.ends[3] = 100  # the changelog partition already holds 100 records
    checkpoint, kept = Checkpoint(producer), KeptWrites()  # what OpenTransaction holds
    task.state.user_for_update("u1")
    task.state.advance_head("bb" * 32)
    kept.changelog(checkpoint, "changelog", 3, task)
    assert list(store.items()) != [] and store.offset == 0, "read at once, not on disk yet"
    assert checkpoint.commit(outcome)
    kept.committed()
    assert store.offset == 103, "after the user, the head and the count at 100-102"
    task.state.close()
    reopened = PartitionState(3, KeptStore.open(tmp_path / "s", IDENTITY), cache_all=False)
    assert reopened.user("u1") is not None and reopened.decisions == 1
    reopened.close()


def test_an_aborted_transaction_never_reaches_the_store(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    task = task_over(store)
    checkpoint, kept = Checkpoint(Producer()), KeptWrites()
    task.state.user_for_update("u1")
    kept.changelog(checkpoint, "changelog", 3, task)
    checkpoint.abort(outcome)
    kept.clear()
    store.rollback()  # the runtime's rewind
    task.state.close()
    reopened = KeptStore.open(tmp_path / "s", IDENTITY)
    assert reopened.offset == 0 and list(reopened.items()) == []
    reopened.close()


def test_a_commit_that_fails_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    store = KeptStore.open(tmp_path / "s", IDENTITY)
    store.commit(7)
    task = task_over(store)
    checkpoint, kept = Checkpoint(Producer(commit_fails=True)), KeptWrites()
    task.state.user_for_update("u1")
    kept.changelog(checkpoint, "changelog", 3, task)
    with pytest.raises(RuntimeError):
        checkpoint.commit(outcome)  # so the transaction never calls kept.committed()
    task.state.close()  # the process ends: uncommitted writes are dropped
    reopened = KeptStore.open(tmp_path / "s", IDENTITY)
    assert reopened.offset == 7 and list(reopened.items()) == []
    reopened.close()


# -- a rewind after an abort keeps the partitions and their committed state -------------------
class GateLikeTopology:
    spec = TopologySpec(name="t", sources=("requests",), outputs=(), changelog="t-changelog")

    def open_state(self, partition: int, store: KeptStore) -> PartitionState:
        return PartitionState(partition, store, cache_all=False)


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[TopicPartition] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("requests", 3)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 41) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp)


def test_a_rewind_reopens_kept_state_without_reading_the_changelog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_restore(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a rewind of kept state read the changelog")

    monkeypatch.setattr(changelog, "restore_kept", no_restore)
    monkeypatch.setattr(changelog, "restore_partition", no_restore)
    options = RuntimeOptions(state_store="rocksdb", state_dir=tmp_path)
    assignment = Assignment(
        {},
        GateLikeTopology(),  # type: ignore[arg-type]
        group="g",
        changelog_topic="t-changelog",
        options=options,
        metrics=runtime_metrics("test_kept_store_rewind"),
        turned=lambda: None,
    )
    store = KeptStore.open(tmp_path / "t" / "partition-3", IDENTITY)
    state = PartitionState(3, store, cache_all=False)
    state.user_for_update("committed")
    state.take_changes()
    store.commit(12)
    assignment.tasks[3] = task = PartitionTask(
        3, state, PartitionSynchronizer([], max_idle_ms=0), kept=store
    )
    task.state.user_for_update("aborted")  # the transaction that aborts
    task.state.advance_head("dd" * 32)
    task.state.take_changes()
    consumer = Consumer()

    assignment.rewind(consumer)  # type: ignore[arg-type]

    rewound = assignment.tasks[3]
    assert rewound.kept is store and rewound.state is not state
    assert rewound.state.user("committed") is not None
    assert rewound.state.user("aborted") is None and rewound.state.decisions == 0
    assert [(tp.partition, tp.offset) for tp in consumer.seeks] == [(3, 41)]
    assignment.close()


class RefusingAdmin:
    """An admin client whose broker refuses to describe topics (no ACL), or does not answer."""

    def __init__(self, code: int) -> None:
        self.code = code

    def describe_topics(self, topics: Any) -> dict[str, Any]:
        code = self.code

        class Refused:
            def result(self, timeout: float) -> Any:
                raise KafkaException(KafkaError(code))

        return {"t": Refused()}


def test_a_changelog_the_processor_may_not_describe_fails_at_once() -> None:
    with pytest.raises(AuthorizationError, match="READ on its changelog"):
        describe_changelog(RefusingAdmin(KafkaError.TOPIC_AUTHORIZATION_FAILED), "t", 0)  # type: ignore[arg-type]
    with pytest.raises(TransientError):
        describe_changelog(RefusingAdmin(KafkaError._TRANSPORT), "t", 0)  # type: ignore[arg-type]
