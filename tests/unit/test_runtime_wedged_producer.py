"""A producer wedged in ``send_offsets_to_transaction`` is replaced, never waited on for ever.

librdkafka (since 2.9) can block in that call past its timeout once the group coordinator it
cached was dropped from the metadata (librdkafka #5456, #5511). A detector on the three-node
cluster hung there for minutes after the whole cluster came back, alive and deciding nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.errors import TransientError
from streams.runtime.checkpoint import Checkpoint, ProducerWedgedError, RuntimeFatalError
from streams.runtime.options import REJOINS_ALLOWED
from streams.runtime.runner import RuntimeOptions, StreamRunner
from tests.unit.offline_runner import offline_runner
from tests.unit.test_runtime_fatal import QuietConsumer, Topology

POSITIONS = {("in", 0): 5}


class WedgingProducer:
    """A transactional producer whose ``send_offsets_to_transaction`` never returns."""

    def __init__(self, *, wedges: bool = True, error: KafkaError | None = None) -> None:
        self.wedges = wedges
        self.error = error
        self.release = threading.Event()
        self.calls: list[str] = []

    def init_transactions(self, *args: Any) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.calls.append("send_offsets")
        if self.error is not None:
            raise KafkaException(self.error)
        if self.wedges:
            self.release.wait()  # as librdkafka: blocked past any timeout

    def abort_transaction(self, *args: Any) -> None:
        self.calls.append("abort")

    def commit_transaction(self, *args: Any) -> None:
        self.calls.append("commit")


def test_offsets_that_never_finish_mark_the_producer_wedged() -> None:
    producer = WedgingProducer()
    checkpoint = Checkpoint(producer, offsets_deadline_s=0.2)  # type: ignore[arg-type]
    try:
        with pytest.raises(ProducerWedgedError):
            checkpoint.offsets(POSITIONS, object())
        assert checkpoint.wedged
        assert isinstance(ProducerWedgedError("x"), TransientError), "retried, never fatal"
        outcomes: list[str] = []
        checkpoint.abort(outcomes.append)
        assert outcomes == ["aborted"]
        assert "abort" not in producer.calls, "a wedged producer is never called again"
    finally:
        producer.release.set()


def test_an_abortable_offsets_error_is_transient() -> None:
    error = KafkaError(KafkaError.ILLEGAL_GENERATION, "rebalanced", txn_requires_abort=True)
    checkpoint = Checkpoint(WedgingProducer(error=error), offsets_deadline_s=5)  # type: ignore[arg-type]
    with pytest.raises(TransientError) as raised:
        checkpoint.offsets(POSITIONS, object())
    assert not isinstance(raised.value, ProducerWedgedError)
    assert not checkpoint.wedged


def test_a_fatal_offsets_error_propagates() -> None:
    error = KafkaError(KafkaError._FENCED, "fenced", fatal=True)
    checkpoint = Checkpoint(WedgingProducer(error=error), offsets_deadline_s=5)  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        checkpoint.offsets(POSITIONS, object())


def quiet_runner(
    monkeypatch: pytest.MonkeyPatch, producers: Callable[[], WedgingProducer], prefix: str
) -> StreamRunner[Any]:
    """A runner (no broker) whose consumer fetches nothing and whose producers ``producers``
    makes."""
    return offline_runner(
        monkeypatch,
        Topology(),
        consumers=QuietConsumer,
        producers=producers,
        metrics_prefix=prefix,
        options=RuntimeOptions(poll_timeout_s=0.01),
    )


def wedging_runner(
    monkeypatch: pytest.MonkeyPatch, made: list[WedgingProducer]
) -> StreamRunner[Any]:
    def producers() -> WedgingProducer:
        made.append(WedgingProducer())
        return made[-1]

    return quiet_runner(monkeypatch, producers, "test_runtime_wedged")


def test_the_runner_replaces_a_wedged_producer_before_its_next_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[WedgingProducer] = []
    runner = wedging_runner(monkeypatch, made)
    replaced = runner.metrics.producer_replacements._value.get()
    first = runner.begin()
    assert isinstance(first, Checkpoint)
    first.wedged = True  # as after ProducerWedgedError
    second = runner.begin()
    assert len(made) == 2 and runner.producer is made[1]
    assert made[1].calls[:2] == ["init", "begin"], "the new producer fences the wedged one"
    assert isinstance(second, Checkpoint) and second.producer is made[1]
    assert made[0] in runner._wedged, "the wedged producer stays referenced, never destroyed"
    assert runner.metrics.producer_replacements._value.get() == replaced + 1


def test_producers_that_keep_wedging_end_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[WedgingProducer] = []
    runner = wedging_runner(monkeypatch, made)
    most, _ = REJOINS_ALLOWED
    with pytest.raises(RuntimeFatalError, match="wedged"):
        for _ in range(most + 1):
            checkpoint = runner.begin()
            assert isinstance(checkpoint, Checkpoint)
            checkpoint.wedged = True
        runner.begin()
    assert len(made) == most + 1


def test_a_rewind_after_a_wedge_replaces_the_producer_before_it_restores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[WedgingProducer] = []
    runner = wedging_runner(monkeypatch, made)
    order: list[str] = []
    monkeypatch.setattr(
        runner.assignment, "rewind", lambda consumer: order.append(f"restore, {len(made)} made")
    )
    checkpoint = runner.begin()
    assert isinstance(checkpoint, Checkpoint)
    checkpoint.wedged = True
    runner.rewind()
    assert order == ["restore, 2 made"], "the new producer exists before the restore reads"
    assert made[1].calls == ["init"], "replaced (and fenced the old one) before the restore"


class FailingProducer(WedgingProducer):
    """A producer whose abort or begin fails with ``error`` (once each, then works)."""

    def __init__(self, error: KafkaError, *, on: str) -> None:
        super().__init__(wedges=False)
        self.failure, self.on = error, on

    def abort_transaction(self, *args: Any) -> None:
        super().abort_transaction()
        if self.on == "abort":
            raise KafkaException(self.failure)

    def begin_transaction(self) -> None:
        super().begin_transaction()
        if self.on == "begin" and self.calls.count("begin") == 1:
            raise KafkaException(self.failure)


INVALID_TXN_STATE = KafkaError(
    KafkaError.INVALID_TXN_STATE, "Failed to end transaction: invalid state", fatal=True
)


def test_an_abort_that_fails_fatally_after_an_outage_marks_the_producer_for_replacement() -> None:
    # the detector on the three-node cluster, after the whole cluster came back: adding the
    # offsets failed (CONCURRENT_TRANSACTIONS), the abort failed fatally, and the next
    # begin_transaction ended the process
    checkpoint = Checkpoint(FailingProducer(INVALID_TXN_STATE, on="abort"))  # type: ignore[arg-type]
    checkpoint.abort(lambda outcome: None)
    assert checkpoint.wedged, "replaced before the next transaction, not used again"


def test_a_fenced_abort_is_not_replaced() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    checkpoint = Checkpoint(FailingProducer(fenced, on="abort"))  # type: ignore[arg-type]
    checkpoint.abort(lambda outcome: None)
    assert not checkpoint.wedged, "a newer instance owns the id: this process must end"


def test_a_begin_that_fails_fatally_replaces_the_producer(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[WedgingProducer] = []

    def producers() -> WedgingProducer:
        made.append(FailingProducer(INVALID_TXN_STATE, on="begin" if not made else "none"))
        return made[-1]

    runner = quiet_runner(monkeypatch, producers, "test_runtime_fatal_begin")
    checkpoint = runner.begin()
    assert isinstance(checkpoint, Checkpoint) and checkpoint.producer is made[1]
    assert made[1].calls[:2] == ["init", "begin"]


def test_a_begin_fenced_by_a_newer_instance_ends_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fenced = KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True)
    runner = quiet_runner(
        monkeypatch, lambda: FailingProducer(fenced, on="begin"), "test_runtime_fenced_begin"
    )
    with pytest.raises(KafkaException):
        runner.begin()
