"""A processor started while the cluster is down waits for it; it never dies of the outage.

On the three-node cluster a gate whose brokers were all SIGKILLed while it started could end
(or wait for ever) in ``init_transactions`` or in reading its global tables, then commit nothing
after the cluster came back (CI, ``test_whole_cluster_down_for_10_s``: 0 of 6,000 decided).
Each start-up step is retried with back-off; only a fatal error ends the run.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.errors import TransientError
from streams.runtime.global_table import GlobalTableReader
from streams.runtime.options import INIT_TRANSACTIONS_TIMEOUT_S
from streams.runtime.records import RawInput
from streams.runtime.topology import GlobalTable
from tests.unit.test_runtime_wedged_producer import WedgingProducer, quiet_runner


class SlowCoordinatorProducer(WedgingProducer):
    """A producer whose first ``init_transactions`` calls time out, as during an outage."""

    def __init__(self, timeouts: int, error: KafkaError | None = None) -> None:
        super().__init__(wedges=False)
        self.timeouts = timeouts
        self.init_error = error
        self.timeouts_given: list[Any] = []

    def init_transactions(self, *args: Any) -> None:
        self.calls.append("init")
        self.timeouts_given.append(args)
        if self.init_error is not None:
            raise KafkaException(self.init_error)
        if self.timeouts > 0:
            self.timeouts -= 1
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, "coordinator not available", retriable=True)
            )


class OutageReader:
    """A global table reader whose first catch-ups meet an unreachable cluster."""

    def __init__(self, outages: int) -> None:
        self.outages = outages
        self.catch_ups = 0
        self.dead_letters: list[Any] = []
        self.healthy = True

    def catch_up(self) -> None:
        self.catch_ups += 1
        if self.outages > 0:
            self.outages -= 1
            raise TransientError("could not read controls to its end within 120s")

    def poll(self) -> bool:
        return False

    def close(self) -> None:
        pass


def subscribed(runner: Any) -> bool:
    return bool(runner.consumer.subscribed)


def test_transactions_are_initialised_through_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = SlowCoordinatorProducer(timeouts=2)
    runner = quiet_runner(monkeypatch, lambda: producer, "test_runtime_start_up_init")
    retried = runner.metrics.transient_errors._value.get()
    runner.run(until=lambda: subscribed(runner))
    assert producer.calls.count("init") == 3, "retried until the coordinator answered"
    assert all(args == (INIT_TRANSACTIONS_TIMEOUT_S,) for args in producer.timeouts_given), (
        "never an unbounded wait: the process stays live and stoppable"
    )
    assert subscribed(runner), "the run went on to its loop"
    assert runner.metrics.transient_errors._value.get() == retried + 2
    assert runner.health.failed is None


def test_a_fenced_start_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fenced = KafkaError(KafkaError._FENCED, "a newer instance", fatal=True)
    producer = SlowCoordinatorProducer(timeouts=0, error=fenced)
    runner = quiet_runner(monkeypatch, lambda: producer, "test_runtime_start_up_fenced")
    with pytest.raises(KafkaException):
        runner.run(until=lambda: subscribed(runner))
    assert producer.calls.count("init") == 1, "a fatal error is never retried"
    assert not subscribed(runner)
    assert runner.health.failed is not None and not runner.live


def test_global_tables_are_read_through_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = SlowCoordinatorProducer(timeouts=1)
    runner = quiet_runner(monkeypatch, lambda: producer, "test_runtime_start_up_globals")
    first, second = OutageReader(outages=0), OutageReader(outages=1)
    runner.globals = [first, second]  # type: ignore[list-item]
    runner.run(until=lambda: subscribed(runner))
    assert producer.calls.count("init") == 2, "initialised once it answered, not again"
    assert (first.catch_ups, second.catch_ups) == (1, 2), "a table read once is not read again"
    assert subscribed(runner)


def test_a_stopped_runner_gives_up_waiting_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    producer = SlowCoordinatorProducer(timeouts=1000)
    runner = quiet_runner(monkeypatch, lambda: producer, "test_runtime_start_up_stop")
    runner.run(until=lambda: producer.calls.count("init") >= 2)
    assert not subscribed(runner), "stopped before its loop, without an error"
    assert runner.health.failed is None


class UnreachableConsumer:
    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))

    def close(self) -> None:
        pass


class Handler:
    whole = True

    def apply(self, raw: RawInput) -> bool:
        return True

    def broken(self, raw: RawInput, error: str) -> None:
        pass


def test_a_global_table_the_cluster_cannot_describe_is_a_transient_error() -> None:
    reader = GlobalTableReader(
        {"bootstrap.servers": "127.0.0.1:9"},
        GlobalTable(topic="controls", handler=Handler()),  # type: ignore[arg-type]
        physical_topic="p.controls",
        clock_ms=lambda: 0,
    )
    reader._consumer.close()
    reader._consumer = UnreachableConsumer()  # type: ignore[assignment]
    reader.dead_letters.append("a letter of an earlier catch-up")  # type: ignore[arg-type]
    with pytest.raises(TransientError, match=r"p\.controls"):
        reader.catch_up()
    assert not reader.caught_up
    assert reader.dead_letters == ["a letter of an earlier catch-up"]
