"""CPython's garbage collector as the loop wants it (``RuntimeOptions.gc_*``).

Young collections run less often (the loop allocates short-lived objects per record), and what
is alive after a restore, and then at most every ``gc_freeze_interval_s``, moves to the
permanent generation, which full collections no longer walk.
"""

from __future__ import annotations

import gc
import time

from streams.runtime.options import RuntimeOptions


class GcTuning:
    """One runner's use of the process-wide collector."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.threshold0 = options.gc_threshold0
        self.freeze_interval_s = options.gc_freeze_interval_s
        self._next_freeze = 0.0

    def apply(self) -> None:
        """Set the young generation's threshold (unless it is 0: CPython's default stays)."""
        if self.threshold0 > 0:
            _, gen1, gen2 = gc.get_threshold()
            gc.set_threshold(self.threshold0, gen1, gen2)

    def freeze(self, *, force: bool = False) -> None:
        """Freeze what is alive now, if it is time (or ``force``) and freezing is on."""
        interval = self.freeze_interval_s
        if interval > 0 and (force or time.monotonic() >= self._next_freeze):
            gc.freeze()
            self._next_freeze = time.monotonic() + interval
