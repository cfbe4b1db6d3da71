"""The detector through broker faults with a bulk export in flight (issue #20, fault 6).

A recipient's export crosses its hourly limit while brokers of the three-node cluster are
down. The detector must raise exactly one ``BULK_EXPORT`` alert with the true count and one
suspension, keep running on its own, and catch up once the cluster is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.settings import Settings
from tests.faults.conftest import Cluster
from tests.integration.detector_harness import LIMIT, DetectorEnv, detector_env

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

EXPORTED = 2 * LIMIT
EVERY_S = 0.25
"""One decision every 250 ms: the crossing (decision LIMIT + 1) comes about 5 s in."""


@pytest.fixture
def cluster_detector(
    cluster_settings: Settings, unique: str, tmp_path: Path
) -> Iterator[DetectorEnv]:
    admin = AdminClient(cluster_settings.kafka_config())
    with detector_env(cluster_settings, admin, unique, tmp_path) as env:
        yield env


def _export_through(detector: DetectorEnv, fault: Callable[[], None]) -> None:
    """Run the export while ``fault`` runs beside it; assert one alert and one suspension."""
    detector.start()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fault()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, name="fault", daemon=True)
    thread.start()
    detector.export(EXPORTED, at=int(time.time() * 1000), every_s=EVERY_S)
    thread.join(120)
    assert not thread.is_alive(), "the fault plan did not finish within 120 s"
    assert not errors, f"the fault plan failed: {errors[0]!r}"
    detector.wait_caught_up(timeout=240)
    assert detector.process is not None and detector.process.poll() is None, (
        "the detector exited on its own during the fault"
    )
    alerts = [a for a in detector.read(topics.TOPIC_ALERTS) if a["kind"] == "BULK_EXPORT"]
    assert [(a["subject"], a["observed"]) for a in alerts] == [("acme-vision", LIMIT + 1)], (
        "exactly one BULK_EXPORT alert, on the crossing decision's true count"
    )
    controls = detector.read(topics.TOPIC_CONTROLS)
    assert [(c["kind"], c["recipient_org"]) for c in controls] == [
        ("SUSPEND_RECIPIENT", "acme-vision")
    ]


def _busiest_leader(cluster: Cluster, detector: DetectorEnv) -> int:
    admin = AdminClient(detector.settings.kafka_config())
    leaders = cluster.leaders(admin, detector.topic(topics.TOPIC_DECISIONS))
    return Counter(leaders.values()).most_common(1)[0][0]


def test_detector_through_the_whole_cluster_down_for_10_s(
    kraft_cluster: Cluster, cluster_detector: DetectorEnv
) -> None:
    """Fault 1 on the cluster: every broker SIGKILLed for 10 s while the limit is crossed."""

    def fault() -> None:
        time.sleep(2)
        for node in (1, 2, 3):
            kraft_cluster.kill(node)
        time.sleep(10)
        kraft_cluster.restore()

    _export_through(cluster_detector, fault)


def test_detector_through_a_leader_then_a_second_broker_killed(
    kraft_cluster: Cluster, cluster_detector: DetectorEnv
) -> None:
    """Fault 2: the leader of most decision partitions dies, then a second broker with it."""
    first = _busiest_leader(kraft_cluster, cluster_detector)
    second = next(n for n in (1, 2, 3) if n != first)

    def fault() -> None:
        time.sleep(2)
        kraft_cluster.kill(first)
        time.sleep(4)
        kraft_cluster.kill(second)  # below min.insync.replicas: writes stop
        time.sleep(10)
        kraft_cluster.restore()

    _export_through(cluster_detector, fault)
