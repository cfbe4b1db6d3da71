"""A partition number is processed only where every one of its sources is assigned (issue #20).

librdkafka subscribes a member only to the topics its metadata knows when it joins. A gate that
joined before the photo-claims and photo-verdicts topics (created at start-up) were in its
metadata was left out of their assignment, and the other gate got all 8 partitions of them
while the inputs were split 0-3 / 4-7. Both then took a task for partitions 4-7: the photo index
was split between two processes, one answered claims locally on a shadow state without the
uploads, the real owner's requests waited for verdicts that never came (until librdkafka's
metadata refresh, 5 minutes later, rebalanced) and were then decided on a mixed-up state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.runtime import changelog
from streams.runtime.assignment import co_assigned
from streams.runtime.records import Processed, RawInput
from streams.runtime.stores import KeyValueStore
from streams.runtime.topology import TopologySpec
from tests.unit.offline_runner import offline_runner

INPUTS = ("uploads", "requests")
INTERNAL = ("claims", "verdicts")


class State:
    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        pass

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        return []

    def close(self) -> None:
        pass


class Topology:
    spec = TopologySpec(
        name="t",
        sources=(*INPUTS, *INTERNAL),
        outputs=INTERNAL,
        changelog="t-changelog",
        internal=INTERNAL,
    )

    def bind(self, partitions: int) -> None:
        pass

    def open_state(self, partition: int, store: KeyValueStore) -> State:
        return State()

    def event_time(self, raw: RawInput) -> int:
        return raw.timestamp_ms

    def process(self, raw: RawInput, state: Any) -> Processed:
        return Processed()

    def committed(self, facts: Sequence[Any]) -> None:
        pass

    def punctuate(
        self, partition: int, state: Any, now_ms: int, *, sources_behind: bool = False
    ) -> Processed:
        return Processed()

    def delivered(self, offsets: Mapping[tuple[str, int], int]) -> None:
        pass

    def forget(self, partition: int) -> None:
        pass


class Consumer:
    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions


class Producer:
    pass


def assignment(numbers: dict[str, range]) -> list[TopicPartition]:
    return [TopicPartition(f"p.{topic}", n) for topic, ns in numbers.items() for n in ns]


def test_a_partition_number_assigned_in_part_is_not_processed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changelog, "restore_partition", lambda *args, **kwargs: 0)
    runner = offline_runner(
        monkeypatch,
        Topology(),
        consumers=Consumer,
        producers=Producer,
        metrics_prefix="test_runtime_coassignment",
        topic_prefix="p.",
    )
    # what the member that subscribed to all four topics got: the inputs' 0-3, the internal 0-7
    assigned = assignment(
        {"uploads": range(4), "requests": range(4), "claims": range(8), "verdicts": range(8)}
    )

    runner._on_assign(Consumer(), assigned)  # type: ignore[arg-type]

    assert sorted(runner.tasks) == [0, 1, 2, 3], "partitions 4-7 belong to the other member"


def test_co_assigned_names_what_is_missing() -> None:
    assigned = assignment({"uploads": range(2), "requests": range(1), "claims": range(3)})
    whole, missing = co_assigned(
        assigned, frozenset({"uploads", "requests", "claims"}), lambda t: t.removeprefix("p.")
    )
    assert whole == {0}
    assert missing == {1: {"requests"}, 2: {"uploads", "requests"}}
