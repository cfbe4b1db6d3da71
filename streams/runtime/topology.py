"""What a stream processor tells the runtime about itself: the :class:`Topology` contract.

A topology is pure processing: it never touches Kafka. The runtime's one loop
(:mod:`streams.runtime.loop`, over Kafka in :class:`~streams.runtime.runner.StreamRunner` or in
memory in :class:`~streams.runtime.testing.TopologyDriver`) owns consuming, ordering, state
restore and the exactly-once transaction; it calls the topology's methods in this order, per
partition number of the sources:

0. :meth:`Topology.bind` with the sources' partition count, once;
1. :meth:`Topology.open_state` once the partition is assigned, then ``restore_many`` on the
   returned state with the partition's changelog records (all of them, in order);
2. :meth:`Topology.process` for every input, in the order the runtime releases them (event-time
   order across the sources when :attr:`Topology.synchronized`), within a transaction;
3. ``take_changes`` on the state before each commit: the changelog records of that transaction;
4. :meth:`Topology.committed` with the facts of the processed inputs, then
   :meth:`Topology.delivered` with the offsets its tracked outputs got, after the commit;
5. :meth:`Topology.punctuate` on a wall-clock schedule; what it returns is handled in the next
   transaction (one of its own when no input is waiting) as an input's would be (its records to
   a locally assigned internal source processed at once, its facts reported after the commit),
   with the state changes it made;
6. :meth:`Topology.forget` when a partition is revoked or rewound (its state is closed).

Every hook is part of the contract (a topology with nothing to do there returns at once).

A topology is deterministic given its inputs, state and the clock it is handed, so an aborted
transaction that is redone writes the same records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from streams.runtime.records import Processed, RawInput
from streams.runtime.stores import KeyValueStore


class PartitionState(Protocol):
    """A topology's state of one partition, materialised from its changelog partition."""

    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records in order (``None`` is a tombstone)."""

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """Return the changelog records made since the last call."""

    def close(self) -> None:
        """Release the underlying store."""


class GlobalTableHandler(Protocol):
    """Applies the records of a topic that every instance reads in full (e.g. the controls)."""

    def apply(self, raw: RawInput) -> bool:
        """Apply one record; return whether anything changed.

        Raise :class:`~streams.errors.TransientError` when the record cannot be read *yet*
        (the registry is unreachable): the runtime retries it. Raise another
        :class:`~streams.errors.ConsentinelError` when it can never be read: the runtime writes a
        dead letter and calls :meth:`broken`.
        """

    def broken(self, raw: RawInput, error: str) -> None:
        """Record that ``raw`` could not be read (the handler decides how to fail closed)."""

    @property
    def whole(self) -> bool:
        """Whether no unreadable record is outstanding (the process is not ready otherwise)."""


@dataclass(frozen=True)
class GlobalTable:
    """A topic read from its beginning by every instance, to its end before any input."""

    topic: str
    handler: GlobalTableHandler


@dataclass(frozen=True)
class TopologySpec:
    """The topics of a topology, by logical name (the runtime adds the deployment's prefix).

    ``sources`` are consumed in one consumer group and must share a partition count; their order
    breaks event-time ties. ``internal`` topics (repartition) are created by the runtime before
    it subscribes, with the sources' partition count; they are sources too when listed there.
    ``changelog`` holds the state (one partition per source partition number).
    ``merge_partitions`` (with ``synchronized``): the merged sources of every partition the
    process holds form one event-time merge, for windows that span partitions
    (:mod:`streams.runtime.crossmerge`); otherwise each partition number is merged apart.
    ``source_configs`` are topic config values every external source must have: the runner is
    not ready, and does not start, until they do (the gate: ``LogAppendTime``).
    """

    name: str
    sources: tuple[str, ...]
    outputs: tuple[str, ...]
    changelog: str
    internal: tuple[str, ...] = ()
    synchronized: bool = True
    merge_partitions: bool = False
    global_tables: tuple[GlobalTable, ...] = field(default=())
    source_configs: tuple[tuple[str, str], ...] = ()


class Topology(Protocol):
    """A stream processor the runtime can run exactly once (see the module's docstring)."""

    spec: TopologySpec

    def bind(self, partitions: int) -> None:
        """Learn the sources' partition count (before any other call; repartitioning needs it)."""

    def open_state(self, partition: int, store: KeyValueStore) -> PartitionState:
        """Return the empty state of ``partition`` over ``store`` (restored by the runtime)."""

    def event_time(self, raw: RawInput) -> int:
        """Return the time by which ``raw`` is ordered among the sources of its partition."""

    def process(self, raw: RawInput, state: Any) -> Processed:
        """Handle one input; never raises for bad input (that becomes a dead letter)."""

    def committed(self, facts: Sequence[Any]) -> None:
        """Report what a committed transaction held (metrics); facts in processing order."""

    def punctuate(
        self, partition: int, state: Any, now_ms: int, *, sources_behind: bool = False
    ) -> Processed:
        """Return what wall-clock time alone makes due on ``partition`` (may change ``state``).

        ``sources_behind``: a source of the partition has records still to come (the transport's
        :meth:`~streams.runtime.transport.Transport.sources_behind`); a wait for one of them
        must not run out on the wall clock meanwhile.
        """

    def delivered(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Learn, after a commit, the highest offset each tracked output got.

        Keys are (logical topic, the partition asked for, or -1 for the partitioner's choice).
        """

    def forget(self, partition: int) -> None:
        """Drop whatever the topology keeps of ``partition`` outside its state (revoked)."""
