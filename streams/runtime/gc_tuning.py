"""CPython's garbage collector as the loop wants it (``RuntimeOptions.gc_*``).

Young collections run less often (the loop allocates short-lived objects per record), and what
is alive after a restore, and then at most every ``gc_freeze_interval_s``, moves to the
permanent generation, which full collections no longer walk.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector

from streams.runtime.options import RuntimeOptions

PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of ``<prefix>_gc_pause_seconds``."""

_TIMED: list[GcPauses] = []
"""The collector the process's collections are timed into (the first runner's)."""


class GcPauses(Collector):
    """``<prefix>_gc_pause_seconds``: how long each collection stopped the process, by generation.

    The collector's callback runs inside CPython's collector, at any allocation of any thread, so
    it takes no lock (a prometheus-client metric's lock could be held by the very thread it
    interrupts): it counts into plain lists, which a scrape reads.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts = [[0] * (len(PAUSE_BUCKETS) + 1) for _ in range(3)]
        self.sums = [0.0, 0.0, 0.0]
        self._started = 0.0

    def on_collection(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` entry: time one collection."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation][bisect_left(PAUSE_BUCKETS, pause)] += 1
        self.sums[generation] += pause

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """Return the histogram as it stands (cumulative buckets per generation)."""
        family = HistogramMetricFamily(
            self.name,
            "CPython garbage collections, by generation: how long the process stood still.",
            labels=["generation"],
        )
        bounds = [*(str(b) for b in PAUSE_BUCKETS), "+Inf"]
        for generation in range(3):
            total, buckets = 0, []
            for bound, count in zip(bounds, list(self.counts[generation]), strict=True):
                total += count
                buckets.append((bound, float(total)))
            family.add_metric([str(generation)], buckets, self.sums[generation])
        yield family


class GcTuning:
    """One runner's use of the process-wide collector."""

    def __init__(self, options: RuntimeOptions, pauses: GcPauses | None = None) -> None:
        self.pauses = pauses
        self.threshold0 = options.gc_threshold0
        self.freeze_interval_s = options.gc_freeze_interval_s
        self._next_freeze = 0.0

    def apply(self) -> None:
        """Set the young generation's threshold (unless it is 0: CPython's default stays).

        The process's collections are timed into ``pauses`` (of the first runner that has one).
        """
        if self.pauses is not None and not _TIMED:
            _TIMED.append(self.pauses)
            gc.callbacks.append(self.pauses.on_collection)
        if self.threshold0 > 0:
            _, gen1, gen2 = gc.get_threshold()
            gc.set_threshold(self.threshold0, gen1, gen2)

    def freeze(self, *, force: bool = False) -> None:
        """Freeze what is alive now, if it is time (or ``force``) and freezing is on."""
        interval = self.freeze_interval_s
        if interval > 0 and (force or time.monotonic() >= self._next_freeze):
            gc.freeze()
            self._next_freeze = time.monotonic() + interval
