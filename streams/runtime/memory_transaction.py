"""A transaction on the in-memory broker, as a ``read_committed`` reader sees Kafka's.

:class:`MemoryTransaction` is the in-process driver's
:class:`~streams.runtime.transport.Transaction`: it holds every record produced into it and
appends them to the :class:`~streams.runtime.memory_log.InMemoryBroker`, with the group's
offsets, only when it commits — so whatever the broker holds is committed. An aborted one leaves
no trace. It fails where Kafka's can, so tests meet the runner's failure paths:

* at produce time, when :class:`Faults` says so (the error propagates, as a ``KafkaException``
  from ``produce`` does in the runner);
* at commit time, when :class:`Faults` says so: either the broker requires an abort (``commit``
  returns False and the loop rewinds, as on ``txn_requires_abort``), or an error is raised (the
  process cannot go on, as on a fenced or fatal producer);
* at commit time when it was open longer than ``transaction_timeout_ms`` of the clock: the
  broker has aborted it (the loop rewinds and redoes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from streams.runtime.memory_log import InMemoryBroker

_Headers = list[tuple[str, bytes]] | None
_Pending = tuple[str, int, bytes | None, bytes | None, _Headers, Callable[[int], None] | None]
"""A record held in the transaction: topic, partition, key, value, headers, offset callback."""


@dataclass
class Faults:
    """Failures a test injects into the driver's transactions; each fires once."""

    produce_after: int | None = None
    """Produces to let through before the next one fails (None: none fails)."""
    produce_error: BaseException | None = None
    commit_error: BaseException | None = None
    """Raised by the next commit (the process cannot go on)."""
    commit_aborts: bool = False
    """The next commit is refused and aborted by the broker (the loop rewinds)."""

    def at_produce(self) -> None:
        """Raise the injected produce error if this produce is the one."""
        if self.produce_after is None:
            return
        if self.produce_after > 0:
            self.produce_after -= 1
            return
        error, self.produce_after, self.produce_error = self.produce_error, None, None
        assert error is not None
        raise error

    def at_commit(self) -> bool:
        """Raise the injected commit error; return True when the commit must abort instead."""
        if self.commit_error is not None:
            error, self.commit_error = self.commit_error, None
            raise error
        aborts, self.commit_aborts = self.commit_aborts, False
        return aborts


class MemoryTransaction:
    """One transaction of ``group`` on ``broker``; its records are appended at its commit."""

    def __init__(
        self,
        broker: InMemoryBroker,
        group: str,
        clock: Callable[[], int],
        *,
        timeout_ms: int,
        faults: Faults,
    ) -> None:
        self.broker = broker
        self.group = group
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.faults = faults
        self.began_ms = clock()
        self.open = True
        self._pending: list[_Pending] = []
        self._positions: dict[tuple[str, int], int] = {}

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> None:
        """Hold one record (``partition`` None: the key's murmur2 partition)."""
        self.faults.at_produce()
        where = self.broker.partition_of(topic, key) if partition is None else partition
        if not 0 <= where < self.broker.partitions_of(topic):
            raise ValueError(f"{topic} has no partition {where}")
        self._pending.append((topic, where, key, value, headers, on_offset))

    def changelog(self, topic: str, partition: int, records: Iterable[tuple[bytes, Any]]) -> None:
        """Hold a partition's state changes (``None`` values are tombstones)."""
        for key, value in records:
            self.produce(topic, key, value, partition)

    def offsets(self, positions: dict[tuple[str, int], int], group_metadata: Any) -> None:
        """Hold the consumed positions, committed for the group with the records."""
        self._positions.update(positions)

    def commit(self, on_outcome: Callable[[str], None]) -> bool:
        """Append everything held and the offsets at once; False when aborted instead."""
        timed_out = self.clock() - self.began_ms > self.timeout_ms
        if self.faults.at_commit() or timed_out:
            self.abort(on_outcome)
            return False
        now = self.clock()
        for topic, partition, key, value, headers, on_offset in self._pending:
            record = self.broker.append(topic, partition, key, value, now, headers)
            if on_offset is not None:
                on_offset(record.offset)
        self.broker.commit(self.group, self._positions)
        self.open = False
        on_outcome("committed")
        return True

    def abort(self, on_outcome: Callable[[str], None]) -> None:
        """Drop everything held (idempotent)."""
        if not self.open:
            return
        self.open = False
        self._pending = []
        on_outcome("aborted")
