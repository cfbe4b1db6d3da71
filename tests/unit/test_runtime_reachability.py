"""A runner cut off from its cluster is not ready, and ready again once the cluster answers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaException

from streams.runtime.health import Health
from streams.runtime.reachability import BrokerProbe

TOPIC = "photo.share.requested"


class Cluster:
    """Answers metadata requests while ``up``; raises as librdkafka does on a timeout if not."""

    def __init__(self) -> None:
        self.up = True
        self.asked = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.asked += 1
        if not self.up:
            raise KafkaException('KafkaError{code=_TRANSPORT,val=-195,str="timed out"}')
        return SimpleNamespace(topics={TOPIC: SimpleNamespace(error=None)})


def started_health() -> Health:
    health = Health([], liveness_timeout_s=120)
    health.started = True
    health.joined = True
    return health


def test_two_unanswered_asks_make_it_not_ready_and_one_answer_ready_again() -> None:
    cluster, health = Cluster(), started_health()
    probe = BrokerProbe(cluster, TOPIC, health, interval_s=0.01)
    assert probe.check() and health.ready
    cluster.up = False
    assert not probe.check()
    assert health.ready, "one slow answer is not an outage"
    assert not probe.check()
    assert not health.ready and health.unreachable is not None
    assert "no broker answered" in health.unreachable and "_TRANSPORT" in health.unreachable
    assert health.live, "an outage is retried, never a reason to restart"
    cluster.up = True
    assert probe.check() and health.ready and health.unreachable is None


def test_a_topic_the_cluster_does_not_know_counts_as_unanswered() -> None:
    class Empty(Cluster):
        def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
            return SimpleNamespace(topics={})

    health = started_health()
    probe = BrokerProbe(Empty(), TOPIC, health, interval_s=0.01)
    probe.check()
    probe.check()
    assert not health.ready


def test_the_thread_asks_until_stopped() -> None:
    cluster, health = Cluster(), started_health()
    probe = BrokerProbe(cluster, TOPIC, health, interval_s=0.01)
    cluster.up = False
    probe.start()
    try:
        for _ in range(500):
            if health.unreachable is not None:
                break
            probe._stop.wait(0.01)
        assert not health.ready
    finally:
        probe.stop()
