"""The start-up steps a processor takes before it joins its group, each waiting out an outage.

A processor may start while the cluster is down or restarting (a deployment during an outage, the
whole cluster restarted while a gate starts). Each step here retries what fails transiently,
through the caller's back-off, until it succeeds or the caller stops; only an error no retry
cures (a newer instance fenced this one, a refused ACL) is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaException

from streams.errors import TransientError
from streams.runtime.options import INIT_TRANSACTIONS_TIMEOUT_S

Retry = Callable[[TransientError, int], None]
"""Called with the failure and how many in a row there were, before the step is tried again."""


class CatchesUp(Protocol):
    """A global table's reader (:class:`~streams.runtime.global_table.GlobalTableReader`)."""

    def catch_up(self) -> None:
        """Read the table to its end; raise :class:`TransientError` if the cluster fails."""


def init_transactions(producer: Any, retry: Retry, keep_going: Callable[[], bool]) -> bool:
    """Initialise ``producer``'s transactions (fencing any earlier producer of its id).

    Each attempt waits at most :data:`~streams.runtime.options.INIT_TRANSACTIONS_TIMEOUT_S`, so
    the caller stays live and stoppable. Returns False if ``keep_going()`` turns false first.
    """
    failures = 0
    while keep_going():
        try:
            producer.init_transactions(INIT_TRANSACTIONS_TIMEOUT_S)
            return True
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            failures += 1
            retry(TransientError(f"initialising transactions: {exc.args[0]}"), failures)
    return False


def catch_up(readers: Sequence[CatchesUp], retry: Retry, keep_going: Callable[[], bool]) -> bool:
    """Read every global table to its end, one after another; a table read is not read again.

    Returns False if ``keep_going()`` turns false first.
    """
    for reader in readers:
        failures = 0
        while True:
            if not keep_going():
                return False
            try:
                reader.catch_up()
                break
            except TransientError as exc:
                failures += 1
                retry(exc, failures)
    return True
