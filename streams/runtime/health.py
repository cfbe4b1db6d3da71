"""Whether a runner may take traffic (ready), whether its loop still turns (live), and its lag.

Ready means started, given its partitions by the group since it subscribed, every global table
whole, no partition being restored, every topic there and configured as the topology requires
(:func:`wait_for_topics`), and the cluster answering
(:class:`~streams.runtime.reachability.BrokerProbe`), and no client being replaced (a wedged
producer); an instance the group gave no partitions (more replicas than partitions) is ready.
Live means the loop, a restore or a back-off turned within ``liveness_timeout_s``, and the loop
has not ended on an error it cannot recover from (:attr:`Health.failed`: a fenced or fatally
failed consumer or producer). Consumer lag is reported per logical source topic, best effort.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from prometheus_client import Gauge

from streams.errors import ConsentinelError
from streams.preflight import check_topic_configs
from streams.runtime import changelog
from streams.runtime.global_table import GlobalTableReader
from streams.runtime.topology import TopologySpec

log = logging.getLogger(__name__)


class Health:
    """What a runner's readiness and liveness probes report."""

    def __init__(self, readers: Sequence[GlobalTableReader], liveness_timeout_s: float) -> None:
        self.readers = readers
        self.liveness_timeout_s = liveness_timeout_s
        self.started = False
        """Subscribed, after the global tables were read to their end."""
        self.joined = False
        """The group has assigned this member its partitions (possibly none) since it last
        subscribed, and has not taken them away as lost since."""
        self.restoring = False
        """A partition's state is being restored (its inputs wait)."""
        self.problem: str | None = None
        """Why the runner cannot start (a topic missing or of the wrong layout), else None."""
        self.failed: str | None = None
        """Why the loop ended for good (it will never process again), else None."""
        self.unreachable: str | None = None
        """Why the cluster is taken for unreachable (the runner retries), else None."""
        self.replacing: str | None = None
        """Which client is being replaced (nothing is decided until its replacement is up)."""
        self.last_turn = time.monotonic()

    def turned(self) -> None:
        """Record that the runner is making progress now."""
        self.last_turn = time.monotonic()

    @property
    def ready(self) -> bool:
        """Whether the runner may take traffic (see the module's docstring)."""
        return (
            self.started
            and self.joined
            and not self.restoring
            and self.problem is None
            and self.failed is None
            and self.unreachable is None
            and self.replacing is None
            and all(reader.healthy for reader in self.readers)
        )

    @property
    def live(self) -> bool:
        """Whether the runner made progress within ``liveness_timeout_s`` and has not failed."""
        if self.failed is not None:
            return False
        return time.monotonic() - self.last_turn < self.liveness_timeout_s


def wait_for_topics(
    kafka_config: dict[str, Any],
    spec: TopologySpec,
    physical: Callable[[str], str],
    health: Health,
    keep_going: Callable[[], bool],
) -> int | None:
    """Return the sources' partition count once the external sources exist as they must.

    The internal and changelog topics are created if missing. Until then the runner is not
    ready (``health.problem`` says why) and this waits; None if ``keep_going()`` turns false.
    """
    admin = AdminClient(kafka_config)
    external = [physical(t) for t in spec.sources if t not in spec.internal]
    while keep_going():
        health.turned()
        try:
            partitions = changelog.check_sources(admin, external)
            check_topic_configs(admin, external, dict(spec.source_configs))
            changelog.ensure_internal_topics(
                admin,
                partitions,
                [physical(t) for t in spec.internal],
                [physical(spec.changelog)],
            )
        except ConsentinelError as exc:
            if health.problem != str(exc):
                log.error("%s: not ready: %s", spec.name, exc)
            health.problem = str(exc)
            time.sleep(2.0)
            continue
        health.problem = None
        return partitions
    return None


def wait_for_metadata(
    consumer: Consumer, topics: Sequence[str], partitions: int, keep_going: Callable[[], bool]
) -> bool:
    """Wait until ``consumer``'s metadata has every topic with its ``partitions``.

    Returns False if ``keep_going()`` turns false first. librdkafka subscribes a member only
    to the topics its metadata knows when it joins; one that joined without a just-created
    internal topic would not be co-assigned its partitions (see
    :mod:`streams.runtime.assignment`).
    """
    while keep_going():
        try:
            metadata = consumer.list_topics(timeout=10)
            known = metadata.topics
            if all(
                name in known
                and known[name].error is None
                and len(known[name].partitions) == partitions
                for name in topics
            ):
                return True
        except Exception as exc:  # the broker is not answering yet: ask again
            log.debug("metadata not read yet: %s", exc)
        time.sleep(0.2)
    return False


def report_lag(
    consumer: Consumer, logical: Mapping[str, str], sources: Sequence[str], gauge: Gauge
) -> None:
    """Set ``gauge`` per logical source to the records assigned partitions have yet to read."""
    lag: dict[str, int] = {}
    try:
        for tp in consumer.position(consumer.assignment()):
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                name = logical.get(tp.topic, tp.topic)
                lag[name] = lag.get(name, 0) + max(high - tp.offset, 0)
    except Exception as exc:  # a lag report is best effort
        log.debug("lag report skipped: %s", exc)
        return
    for topic in sources:
        gauge.labels(topic).set(lag.get(topic, 0))
