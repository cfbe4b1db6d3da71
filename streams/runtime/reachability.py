"""Whether the brokers answer: a runner that cannot reach them is not ready (issue #20).

A gate cut off from its cluster keeps its loop turning (nothing to fetch, nothing to commit), so
liveness holds, as it must: the outage is retried, never a reason to restart. But it cannot make
progress, and a load balancer or an operator must see that. :class:`BrokerProbe` asks the
cluster for one topic's metadata every ``interval_s`` on a client of its own; after ``misses``
unanswered asks in a row, :attr:`Health.unreachable <streams.runtime.health.Health.unreachable>`
says why and ``/ready`` answers 503; the first answer clears it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from confluent_kafka.admin import AdminClient

from streams.runtime.health import Health
from streams.runtime.options import RuntimeOptions

log = logging.getLogger(__name__)


class MetadataSource(Protocol):
    """What the probe asks: an ``AdminClient`` (or a test's stand-in)."""

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        """Return the cluster's metadata (of ``topic``), or raise when none came in time."""


class BrokerProbe:
    """Marks ``health`` unreachable while the cluster does not answer metadata requests."""

    def __init__(
        self,
        client: MetadataSource,
        topic: str,
        health: Health,
        *,
        interval_s: float = 5.0,
        misses: int = 2,
    ) -> None:
        self.client = client
        self.topic = topic
        self.health = health
        self.interval_s = interval_s
        self.misses = misses
        self._missed = 0
        self._first_miss: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def started(
        cls, kafka_config: dict[str, Any], topic: str, health: Health, options: RuntimeOptions
    ) -> BrokerProbe | None:
        """Return a started probe on an admin client of its own (None: the options say never).

        ``kafka_config`` is the runner's; ``topic`` one the runner reads.
        """
        if options.reachability_interval_s <= 0:
            return None
        client = AdminClient({**kafka_config, "log_level": 0})
        probe = cls(client, topic, health, interval_s=options.reachability_interval_s)
        probe.start()
        return probe

    def check(self) -> bool:
        """Ask once; return whether the cluster answered (and update ``health``)."""
        now = time.monotonic()
        try:
            metadata = self.client.list_topics(self.topic, timeout=self.interval_s)
            found = metadata.topics.get(self.topic)
            if found is None or found.error is not None:
                raise RuntimeError(f"no metadata for {self.topic}: {found and found.error}")
        except Exception as exc:
            self._missed += 1
            if self._first_miss is None:
                self._first_miss = now
            if self._missed >= self.misses and self.health.unreachable is None:
                since = now - self._first_miss
                self.health.unreachable = (
                    f"no broker answered for {since:.0f}s ({self._missed} metadata requests): {exc}"
                )
                log.warning("not ready: %s", self.health.unreachable)
            return False
        if self.health.unreachable is not None:
            log.warning("ready again: the cluster answers")
        self.health.unreachable = None
        self._missed, self._first_miss = 0, None
        return True

    def start(self) -> None:
        """Ask every ``interval_s`` in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="broker-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop asking (returns at once; the thread ends after its current ask)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.check()
            self._stop.wait(max(self.interval_s - (time.monotonic() - started), 0.0))
