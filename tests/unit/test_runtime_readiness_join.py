"""A runner is ready only once the group has given it its partitions (issue #20).

`make faults` (run 4 of 5): a gate cut off from every broker just after it initialised its
transactions subscribed, and then said ready for 15 s, until the broker probe's second miss,
although the group could not answer it and it had decided nothing. Ready now also needs the
group's assignment since the last subscription (possibly empty: more replicas than partitions),
and a member whose partitions are lost (its session expired) is not ready until it rejoins.
Nor is a runner whose wedged producer is being replaced.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import TopicPartition

from streams.runtime import changelog
from streams.runtime.health import Health
from tests.unit.offline_runner import offline_runner
from tests.unit.test_runtime_coassignment import Producer, Topology
from tests.unit.test_runtime_wedged_producer import WedgingProducer, quiet_runner


class Consumer:
    def __init__(self) -> None:
        self.subscribed: list[str] = []

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.subscribed = topics

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return partitions


def test_health_is_ready_only_after_the_group_answered() -> None:
    health = Health([], liveness_timeout_s=120)
    health.started = True
    assert not health.ready, "subscribed, but the group has not assigned anything yet"
    health.joined = True
    assert health.ready


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(changelog, "restore_partition", lambda *args, **kwargs: 0)
    return offline_runner(
        monkeypatch,
        Topology(),
        consumers=Consumer,
        producers=Producer,
        metrics_prefix="test_runtime_readiness_join",
        topic_prefix="p.",
    )


def test_subscribed_is_not_ready_until_assigned_even_with_no_partitions(runner: Any) -> None:
    runner._subscribe()
    assert runner.consumer.subscribed, "it subscribed"
    assert runner.health.started and not runner.health.ready

    runner._on_assign(runner.consumer, [])  # more members than partitions: nothing for it

    assert runner.health.ready


def test_lost_partitions_make_it_not_ready_until_the_next_assignment(runner: Any) -> None:
    assigned = [TopicPartition(f"p.{t}", 0) for t in ("uploads", "requests", "claims", "verdicts")]
    runner._subscribe()
    runner._on_assign(runner.consumer, assigned)
    assert runner.health.ready and sorted(runner.tasks) == [0]

    runner._on_lost(runner.consumer, assigned)

    assert not runner.health.ready and not runner.tasks
    runner._on_assign(runner.consumer, assigned)
    assert runner.health.ready and sorted(runner.tasks) == [0]


def test_a_new_subscription_waits_for_its_own_assignment(runner: Any) -> None:
    runner._subscribe()
    runner._on_assign(runner.consumer, [])
    assert runner.health.ready

    runner._subscribe()  # as after a fenced consumer is replaced

    assert not runner.health.ready


def test_not_ready_while_a_wedged_producer_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make faults`: after the whole cluster came back, a gate said ready at once while its
    wedged producer's replacement waited 30 s in ``init_transactions`` (decisions came 37 s
    after)."""
    ready_during_init: list[bool] = []
    runners: list[Any] = []

    class Observed(WedgingProducer):
        def init_transactions(self, *args: Any) -> None:
            super().init_transactions(*args)
            if runners:
                ready_during_init.append(runners[0].health.ready)

    runner = quiet_runner(monkeypatch, Observed, "test_runtime_readiness_replacing")
    runners.append(runner)
    runner.health.started = runner.health.joined = True
    assert runner.health.ready
    runner.begin().wedged = True  # as after ProducerWedgedError

    runner.begin()  # replaces the producer first

    assert ready_during_init == [False], "not ready while the new producer is initialised"
    assert runner.health.ready and runner.health.replacing is None
