"""A consumer that can no longer consume is replaced, or ends the runner (issue #20).

After a broker restart librdkafka can fence a static member by its own ``group.instance.id``
(its session timed out during the outage, it rejoined under a new member id, and a request
still carrying the old one was fenced). It then delivers an error whose code is ``_FATAL``
while ``error.fatal()`` is false, and never consumes again. The runner used to log it as
retriable and loop on, deciding nothing while ``/live`` stayed true; then it ended the process.
Now it rejoins with a new consumer; fenced again and again (another process with the same
instance id), it ends, and liveness says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError

from streams.runtime.checkpoint import RuntimeFatalError
from streams.runtime.options import REJOINS_ALLOWED
from streams.runtime.records import Processed, RawInput
from streams.runtime.runner import RuntimeOptions, StreamRunner
from streams.runtime.stores import KeyValueStore
from streams.runtime.topology import TopologySpec
from tests.unit.offline_runner import offline_runner

FENCED = (
    "Fatal consumer error: Broker: Static consumer fenced by other consumer with same"
    " group.instance.id"
)


class Topology:
    """A topology that must never be asked to process anything here."""

    spec = TopologySpec(name="t", sources=("in",), outputs=("out",), changelog="t-changelog")

    def bind(self, partitions: int) -> None:
        pass

    def open_state(self, partition: int, store: KeyValueStore) -> Any:
        raise AssertionError("no partition is assigned in this test")

    def event_time(self, raw: RawInput) -> int:
        return raw.timestamp_ms

    def process(self, raw: RawInput, state: Any) -> Processed:
        raise AssertionError("nothing is consumed in this test")

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


class ErrorMessage:
    """What librdkafka hands the application for a consumer error event."""

    def __init__(self, error: KafkaError) -> None:
        self._error = error

    def error(self) -> KafkaError:
        return self._error

    def partition(self) -> int | None:
        return None

    def topic(self) -> str | None:
        return None

    def offset(self) -> int | None:
        return None


class FencedConsumer:
    """A consumer whose group membership was fenced: one _FATAL error, then nothing, forever."""

    def __init__(self, error: KafkaError) -> None:
        self.pending = [ErrorMessage(error)]
        self.polls = 0
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[ErrorMessage]:
        self.polls += 1
        taken, self.pending = self.pending[:num_messages], self.pending[num_messages:]
        return taken

    def poll(self, timeout: float) -> ErrorMessage | None:
        found = self.consume(1, timeout)
        return found[0] if found else None

    def assignment(self) -> list[Any]:
        return []

    def position(self, partitions: list[Any]) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


class Producer:
    def init_transactions(self, *args: Any) -> None:
        pass


class QuietConsumer(FencedConsumer):
    """A healthy member of the group with nothing to fetch."""

    def __init__(self) -> None:
        super().__init__(KafkaError(KafkaError._FATAL, FENCED))
        self.pending = []
        self.subscribed: list[str] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics


def fenced_runner(
    monkeypatch: pytest.MonkeyPatch, consumers: Callable[[], Any]
) -> StreamRunner[Any]:
    """A runner whose every consumer comes from ``consumers()``."""
    return offline_runner(
        monkeypatch,
        Topology(),
        consumers=consumers,
        producers=Producer,
        metrics_prefix="test_runtime_fatal",
        options=RuntimeOptions(poll_timeout_s=0.01),
    )


def fenced_error() -> KafkaError:
    error = KafkaError(KafkaError._FATAL, FENCED)
    assert not error.fatal()  # as librdkafka delivers it: only the code says it
    return error


def test_a_fenced_consumer_is_replaced_and_the_runner_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[FencedConsumer] = []

    def consumers() -> FencedConsumer:
        made.append(FencedConsumer(fenced_error()) if not made else QuietConsumer())
        return made[-1]

    runner = fenced_runner(monkeypatch, consumers)
    rejoins = runner.metrics.consumer_rejoins._value.get()
    turns = 0

    def after_a_while() -> bool:
        nonlocal turns
        turns += 1
        return turns > 50

    runner.run(until=after_a_while)  # returns: nothing fatal

    assert len(made) == 2, "one new consumer after the fence"
    fenced, fresh = made
    assert fenced.closed and fresh.polls > 0, "the new consumer is the one that fetches"
    assert isinstance(fresh, QuietConsumer) and fresh.subscribed == ["in"]
    assert runner.metrics.consumer_rejoins._value.get() == rejoins + 1
    assert turns > 50, "the loop went on turning after the rejoin"


def test_a_consumer_fenced_after_every_rejoin_ends_the_loop_and_liveness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[FencedConsumer] = []

    def consumers() -> FencedConsumer:
        made.append(FencedConsumer(fenced_error()))
        return made[-1]

    runner = fenced_runner(monkeypatch, consumers)
    turns = 0

    def give_up() -> bool:  # without the limit the loop would rejoin for ever
        nonlocal turns
        turns += 1
        return turns > 200

    with pytest.raises(RuntimeFatalError, match="fenced"):
        runner.run(until=give_up)

    assert turns < 200, "the runner went on looping after its consumer failed for good"
    most, _ = REJOINS_ALLOWED
    assert len(made) == most + 1, "the first consumer and one per allowed rejoin"
    assert all(consumer.closed for consumer in made)
    assert not runner.live, "/live must say that this process will never decide again"
    assert not runner.ready
