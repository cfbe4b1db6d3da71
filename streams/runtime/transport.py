"""What the one stream loop (:mod:`streams.runtime.loop`) needs from a broker: a transport.

The loop — intake, merge, process, outputs and local loopback, changelog, checkpoint,
punctuation — is the same in production and in tests; only the transport differs. The Kafka
runner (:class:`~streams.runtime.runner.StreamRunner`) is a transport over a consumer and a
transactional producer; the in-process driver (:class:`~streams.runtime.testing.TopologyDriver`)
is one over an :class:`~streams.runtime.memory_log.InMemoryBroker`. As in Kafka Streams'
``TopologyTestDriver`` and bytewax's testing module, tests swap only the source and the sink.

A transport guarantees: :meth:`Transport.fetch` returns inputs of assigned partitions only, in the
order they may be processed (event-time order where the topology is synchronized); a
:class:`Transaction` makes nothing visible to readers before its :meth:`~Transaction.commit`
returns True, and nothing at all once aborted; :meth:`Transport.rewind` forgets every uncommitted
effect (each partition's state is restored from the changelog, reading resumes at the committed
offsets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from streams.errors import TransientError
from streams.runtime.records import Output, RawInput


class Transaction(Protocol):
    """One open transaction: outputs, then changelog records, then offsets, then the commit.

    :class:`~streams.runtime.checkpoint.Checkpoint` over Kafka,
    :class:`~streams.runtime.memory_transaction.MemoryTransaction` in memory.
    """

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None = None,
        on_offset: Callable[[int], None] | None = None,
    ) -> None:
        """Queue one record; ``on_offset`` gets its offset once the broker has it."""

    def changelog(self, topic: str, partition: int, records: Iterable[tuple[bytes, Any]]) -> None:
        """Queue a partition's state changes (``None`` values are tombstones)."""

    def offsets(self, positions: dict[tuple[str, int], int], group_metadata: Any) -> None:
        """Add the consumed positions (offset after the last processed record) to the commit."""

    def commit(self, on_outcome: Callable[[str], None]) -> bool:
        """Commit; False when it had to be aborted instead (the caller rewinds).

        Raises when the process cannot go on (fenced, fatal): it must exit and restart.
        """

    def abort(self, on_outcome: Callable[[str], None]) -> None:
        """Abort, if still open (idempotent)."""


class LetterSource(Protocol):
    """A global table's reader: the dead letters of its unreadable records, until committed."""

    dead_letters: list[Output]


class Transport(Protocol):
    """Where the loop's inputs come from and where its transactions go."""

    @property
    def letter_sources(self) -> Sequence[LetterSource]:
        """The global tables' readers, whose dead letters the loop writes."""

    def fetch(self, budget: int, wait_s: float) -> list[RawInput]:
        """Return up to about ``budget`` inputs that may be processed now, in order.

        May wait up to ``wait_s`` when nothing is fetched yet; applies the global tables' new
        records first.
        """

    def begin(self) -> Transaction:
        """Begin a transaction."""

    def group_metadata(self) -> Any:
        """Return what fences a zombie's offsets in a commit (the consumer group's metadata)."""

    def rewind(self) -> None:
        """After an abort: restore every partition's state, resume at the committed offsets."""

    def back_off(self, exc: TransientError, failures: int) -> None:
        """Wait before the ``failures``-th consecutive retry after a transient failure.

        May raise ``exc`` to give up.
        """

    def physical(self, logical: str) -> str:
        """Return the broker's name of a logical topic."""

    def sources_behind(self, partition: int) -> bool:
        """Whether a source of ``partition`` has records the loop has not been given yet.

        As the event-time merge judges it: known to be on the broker, or its end not known yet.
        """
