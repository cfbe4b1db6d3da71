"""The in-process driver's runtime semantics on a toy topology, and the state stores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from streams import topics
from streams.errors import InvalidEventError
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.runner import RuntimeOptions
from streams.runtime.stores import KeyValueStore, MemoryStore, RocksDBStore, open_store
from streams.runtime.testing import InjectedFailure, ManualClock, TopologyDriver
from streams.runtime.topology import GlobalTable, TopologySpec
from streams.testing.topologies import memory_codec

LEFT, RIGHT, LOOP, OUT, CHANGELOG, TABLE = "in.left", "in.right", "toy.loop", "out", "toy.cl", "t"


class CountState:
    """Counts per key, changelogged as JSON numbers."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self.changes: dict[bytes, bytes | None] = {}

    def bump(self, key: bytes) -> int:
        raw = self.changes.get(key) or self.store.get(key)
        count = (json.loads(raw) if raw else 0) + 1
        self.changes[key] = json.dumps(count).encode()
        self.store.put(key, self.changes[key])
        return count

    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in records:
            if value is None:
                self.store.delete(key)
            else:
                self.store.put(key, value)

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        changes, self.changes = list(self.changes.items()), {}
        return changes

    def close(self) -> None:
        self.store.close()


class Table:
    """A global table of names; a value ``b"bad"`` cannot be read."""

    def __init__(self) -> None:
        self.names: list[bytes] = []
        self.broken_at: list[int] = []

    def apply(self, raw: RawInput) -> bool:
        if raw.value == b"bad":
            raise InvalidEventError("unreadable")
        self.names.append(raw.value or b"")
        return True

    def broken(self, raw: RawInput, error: str) -> None:
        self.broken_at.append(raw.offset)

    @property
    def whole(self) -> bool:
        return not self.broken_at


class Toy:
    """Left and right records (value = their event time) are counted and echoed to ``out`` with
    the table's names; left ones also go round the internal topic ``toy.loop`` once."""

    def __init__(self, *, synchronized: bool = True) -> None:
        self.table = Table()
        self.spec = TopologySpec(
            name="toy",
            sources=(LEFT, RIGHT, LOOP),
            outputs=(OUT, LOOP),
            changelog=CHANGELOG,
            internal=(LOOP,),
            synchronized=synchronized,
            global_tables=(GlobalTable(TABLE, self.table),),
        )
        self.committed_facts: list[Any] = []
        self.punctuated: list[int] = []
        self.partitions = 0

    def bind(self, partitions: int) -> None:
        self.partitions = partitions

    def open_state(self, partition: int, store: KeyValueStore) -> CountState:
        return CountState(store)

    def event_time(self, raw: RawInput) -> int:
        return int(raw.value or b"0")

    def process(self, raw: RawInput, state: CountState) -> Processed:
        count = state.bump(raw.key or b"")
        echo = f"{raw.topic}:{raw.value!r}:{count}:{len(self.table.names)}".encode()
        outputs = [Output(OUT, raw.partition, raw.key, echo)]
        if raw.topic == LEFT:
            outputs.append(Output(LOOP, raw.partition, raw.key, raw.value or b""))
        return Processed(outputs, facts=echo)

    def committed(self, facts: Sequence[Any]) -> None:
        self.committed_facts += facts

    def punctuate(
        self, partition: int, state: CountState, now_ms: int, *, sources_behind: bool = False
    ) -> Processed:
        self.punctuated.append(now_ms)
        return Processed()

    def delivered(self, offsets: Mapping[tuple[str, int], int]) -> None:
        pass

    def forget(self, partition: int) -> None:
        pass


def toy(partitions: int = 2, **kwargs: Any) -> TopologyDriver[Toy]:
    return TopologyDriver(Toy(), memory_codec(), partitions=partitions, **kwargs)


def echoes(driver: TopologyDriver[Toy]) -> list[str]:
    return [(r.value or b"").decode() for r in driver.records(OUT)]


def test_merge_orders_by_event_time_and_internal_records_come_back() -> None:
    driver = toy(partitions=1, options=RuntimeOptions(local_loopback=False))
    driver.feed(RIGHT, "k", b"30")
    driver.feed(LEFT, "k", b"20")
    driver.feed(RIGHT, "k", b"10")  # a stream is FIFO: 30 before 10 on the right
    driver.run()
    assert echoes(driver) == [
        "in.left:b'20':1:0",
        "in.right:b'30':2:0",
        "in.right:b'10':3:0",
        "toy.loop:b'20':4:0",  # written by the first commit, read back after it
    ]
    assert driver.topology.committed_facts == [e.encode() for e in echoes(driver)]
    assert driver.changelog(0)[-1] == (b"k", b"4")


def test_unsynchronized_topology_takes_records_in_append_order() -> None:
    driver = TopologyDriver(Toy(synchronized=False), memory_codec(), partitions=1)
    driver.feed(RIGHT, "k", b"30")
    driver.feed(LEFT, "k", b"20")
    driver.run()
    assert [e.split(":")[1] for e in echoes(driver)] == ["b'30'", "b'20'", "b'20'"]


def test_outputs_and_changelog_appear_only_at_commit_and_a_failure_drops_them() -> None:
    driver = toy(options=RuntimeOptions(batch_max_events=2))
    for time in range(1, 7):
        driver.feed(RIGHT, f"k{time % 2}", str(time).encode())
    assert driver.run(max_turns=1) == 1
    committed, changelog = echoes(driver), [driver.changelog(p) for p in range(2)]
    assert len(committed) == 2
    driver.fail(after=1)
    with pytest.raises(InjectedFailure):
        driver.run()
    assert echoes(driver) == committed
    assert [driver.changelog(p) for p in range(2)] == changelog
    assert driver.aborts == 1
    driver.run()
    counts = sorted(e.rsplit(":", 2)[1] for e in echoes(driver))
    assert counts == ["1", "1", "2", "2", "3", "3"], "state restored: nothing counted twice"


def test_a_restarted_driver_restores_from_the_changelog_and_resumes_at_the_commits() -> None:
    first = toy()
    first.feed(RIGHT, "k", b"1")
    first.feed(LEFT, "k", b"2")
    first.run()
    first.close()
    second = TopologyDriver(Toy(), first.codec, broker=first.broker)
    second.feed(RIGHT, "k", b"3")
    second.run()
    assert echoes(second)[-1] == "in.right:b'3':4:0", "counted on from the restored state"
    assert len(echoes(second)) == 4, "nothing read twice"


def test_advance_drives_punctuation_on_the_clock() -> None:
    clock = ManualClock(1000)
    driver = toy(clock=clock, options=RuntimeOptions(punctuate_interval_s=1.0))
    driver.run()
    driver.advance(999)
    driver.advance(1)
    assert driver.topology.punctuated == [1000, 1000, 2000, 2000]  # two partitions each time


def test_global_table_is_read_before_inputs_and_an_unreadable_record_is_dead_lettered() -> None:
    topology = Toy()
    codec = memory_codec()
    driver = TopologyDriver(topology, codec, partitions=1)
    driver.control(TABLE, "a", b"alice")
    driver.control(TABLE, "b", b"bad")
    driver.feed(RIGHT, "k", b"1")
    driver.run()
    assert echoes(driver) == ["in.right:b'1':1:1"]
    assert topology.table.broken_at == [1]
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert (letter["source_topic"], letter["error_kind"]) == (TABLE, "INVALID_EVENT")
    with pytest.raises(ValueError):
        driver.control(RIGHT, "k", b"1")


def test_oversized_input_is_dead_lettered() -> None:
    driver = toy(partitions=1, options=RuntimeOptions(max_input_bytes=4))
    driver.feed(RIGHT, "k", b"123456")
    driver.run()
    assert echoes(driver) == []
    assert driver.dead_letters == {("INPUT_TOO_LARGE", RIGHT): 1}


def test_feed_partitions_by_key_like_kafka() -> None:
    driver = toy(partitions=8)
    record = driver.feed(RIGHT, "user-42", b"1")
    from streams.core.partitioning import partition_for

    assert record.partition == partition_for(b"user-42", 8)


# -- stores -----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> KeyValueStore:
    return open_store(request.param, tmp_path, 0)


def test_store_put_get_delete_and_prefix_items(store: KeyValueStore) -> None:
    store.put(b"u:1", b"a")
    store.put(b"u:2", b"b")
    store.put(b"p:1", b"c")
    store.put_many({b"u:3": b"d", b"u:1": b"e"})
    assert store.get(b"u:1") == b"e"
    assert store.get(b"missing") is None
    assert sorted(store.items(b"u:")) == [(b"u:1", b"e"), (b"u:2", b"b"), (b"u:3", b"d")]
    assert len(store) == 4
    store.delete(b"u:2")
    store.delete(b"never")
    assert sorted(k for k, _ in store.items()) == [b"p:1", b"u:1", b"u:3"]
    store.close()


def test_store_kinds(tmp_path: Path) -> None:
    assert isinstance(open_store("memory", tmp_path, 0), MemoryStore)
    rocks = open_store("rocksdb", tmp_path, 3)
    assert isinstance(rocks, RocksDBStore)
    assert (tmp_path / "partition-3").is_dir()
    rocks.close()
    assert not (tmp_path / "partition-3").exists()


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
def test_restore_over_either_store_gives_the_same_state(kind: str, tmp_path: Path) -> None:
    first = toy(partitions=1)
    for time in range(5):
        first.feed(RIGHT, f"k{time % 2}", str(time).encode())
    first.run()
    first.close()
    options = RuntimeOptions(state_store=kind, state_dir=tmp_path)
    second = TopologyDriver(Toy(), first.codec, broker=first.broker, options=options)
    state = second.tasks[0].state
    assert sorted(state.store.items()) == [(b"k0", b"3"), (b"k1", b"2")]
    second.close()
