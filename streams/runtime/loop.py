"""The one stream loop: intake → process → outputs and loopback → changelog → checkpoint.

:class:`StreamLoop` is the processing and commit loop of every topology, in production and in
tests alike; only its :class:`~streams.runtime.transport.Transport` differs (Kafka in
:class:`~streams.runtime.runner.StreamRunner`, an in-memory broker in
:class:`~streams.runtime.testing.TopologyDriver`). Each :meth:`StreamLoop.turn`:

1. fetches what may be processed now, at most what the open transaction still takes;
2. processes the inputs into the open transaction (begun if none is), each input's records to
   a locally assigned internal source at once (``local_loopback``), the rest encoded and queued,
   and the global tables' dead letters;
3. then punctuates every partition when due (every ``punctuate_interval_s`` of the monotonic
   clock), on the state the inputs fetched so far left, and queues what it returned likewise;
4. commits the transaction once due (``batch_max_events`` inputs, or ``commit_interval_ms``):
   outputs, then every partition's changelog records, then the consumed offsets.

Failures, one rule for both transports: a :class:`~streams.errors.TransientError` while
processing or committing aborts the transaction, backs off (the transport decides how long, and
when to give up), and rewinds to the last commit; a commit the broker refused (it must abort,
e.g. timed out) aborts and rewinds; anything else aborts and propagates — the process exits and a
new one restores from the last commit. What an aborted transaction did is never visible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.errors import TransientError
from streams.runtime.dead_letters import oversize_input, oversize_output
from streams.runtime.metrics import RuntimeMetrics
from streams.runtime.options import RuntimeOptions
from streams.runtime.records import Output, Processed, RawInput
from streams.runtime.task import PartitionTask
from streams.runtime.topology import Topology
from streams.runtime.transaction import Effects, OpenTransaction
from streams.runtime.transport import Transaction, Transport
from streams.serde.wire import AvroCodec

PUNCTUATION = "<punctuation>"
"""The topic of the input that stands for a punctuation's result in :meth:`StreamLoop._handle`."""


class StreamLoop:
    """Processes a topology's inputs into exactly-once transactions over one transport.

    ``tasks`` is the live map of assigned partitions (the transport adds and drops them);
    ``clock_ms`` is the wall clock (punctuation's ``now``, dead letters' times), ``monotonic_ms``
    the clock of the commit cadence and the punctuation schedule; ``after_commit`` runs after
    each commit (the runner freezes the garbage collector's long-lived objects there).
    """

    def __init__(
        self,
        topology: Topology,
        codec: AvroCodec,
        transport: Transport,
        tasks: Mapping[int, PartitionTask],
        *,
        options: RuntimeOptions,
        metrics: RuntimeMetrics,
        clock_ms: Callable[[], int],
        monotonic_ms: Callable[[], float],
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        self.topology = topology
        self.codec = codec
        self.transport = transport
        self.tasks = tasks
        self.options = options
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.monotonic_ms = monotonic_ms
        self.txn = OpenTransaction(transport.begin, topology, metrics, options, monotonic_ms)
        self.process: Callable[[RawInput, Any], Processed] = topology.process
        """What processes one input (the topology's ``process``; a test driver may wrap it)."""
        spec = topology.spec
        names = {*spec.sources, *spec.outputs, *spec.internal, spec.changelog}
        self._physical = {name: transport.physical(name) for name in names}
        internal, sources = frozenset(spec.internal), frozenset(spec.sources)
        self._loopback = internal & sources if options.local_loopback else frozenset()
        self._after_commit = after_commit
        self._next_punctuation: float | None = None
        self._transient_failures = 0

    def physical(self, logical: str) -> str:
        """Return the broker's name of a logical topic."""
        return self._physical.get(logical) or self.transport.physical(logical)

    # -- one turn -------------------------------------------------------------------------------
    def turn(self, *, stopping: bool = False) -> bool:
        """Fetch, punctuate, process, and commit when due (or ``stopping``); True if it worked."""
        txn = self.txn
        batch = self.transport.fetch(txn.budget, txn.wait_s(self.options.poll_timeout_s))
        # global tables' dead letters stay with their reader until a commit has written them
        letters = txn.unwritten_letters(self.transport.letter_sources)
        extra: list[Output] = [letter for _, taken in letters for letter in taken]
        worked = False
        if batch or extra:
            worked = True
            if self._process_batch(batch, extra, []):
                txn.hold_letters(letters)
        # after the batch: a punctuation judges the state the inputs fetched so far left (a
        # request's grace for its upload must not expire while that upload sits in the batch)
        punctuated = self._punctuate()
        if punctuated:
            worked = True
            self._process_batch([], [], punctuated)
        if txn.is_open and (stopping or txn.due()):
            worked = True
            self.commit_open()
        return worked

    def _punctuate(self) -> list[tuple[RawInput, Processed]]:
        """Punctuate every partition when due: (the punctuation as an input, what it returned)."""
        now = self.monotonic_ms()
        if self._next_punctuation is not None and now < self._next_punctuation:
            return []
        self._next_punctuation = now + self.options.punctuate_interval_s * 1000
        wall = self.clock_ms()
        punctuate = self.topology.punctuate
        done = []
        behind = self.transport.sources_behind
        for partition, task in self.tasks.items():
            processed = punctuate(partition, task.state, wall, sources_behind=behind(partition))
            if processed.outputs or processed.facts is not None:
                done.append((RawInput(PUNCTUATION, partition, -1, wall, None, None), processed))
        return done

    # -- the transaction ------------------------------------------------------------------------
    def _process_batch(
        self,
        batch: list[RawInput],
        extra: list[Output],
        punctuated: list[tuple[RawInput, Processed]],
    ) -> bool:
        """Process ``batch`` and queue it with ``extra`` in the open transaction (opened if none).

        Then what punctuation returned, as an input's result (loopback, facts).

        Return False when a transient failure aborted the transaction (the work since the last
        commit is rewound and redone).
        """
        txn = self.txn

        def work() -> None:
            checkpoint = txn.begin()
            effects = txn.effects
            offsets = effects.offsets
            physical = self._physical
            for raw in batch:
                self._handle(checkpoint, raw, effects)
                offsets[(physical.get(raw.topic) or self.physical(raw.topic), raw.partition)] = (
                    raw.offset + 1
                )
            for output in extra:
                self._write(checkpoint, output, None)
            for source, processed in punctuated:
                self._handle(checkpoint, source, effects, processed)

        if not self._undone_on_failure(work):
            return False
        txn.taken(len(batch))
        return True

    def _handle(
        self,
        checkpoint: Transaction,
        raw: RawInput,
        effects: Effects,
        done: Processed | None = None,
    ) -> None:
        """Process one input, and at once what it writes to a locally assigned internal source.

        ``done``: ``raw`` is a punctuation and this is what it returned (it is not processed).
        """
        pending = [raw]
        loopback = self._loopback
        tasks = self.tasks
        process = self.process
        limit = self.options.max_input_bytes
        i = 0
        while i < len(pending):
            item = pending[i]
            i += 1
            value = item.value
            if done is not None and i == 1:
                processed = done
            elif value is not None and len(value) > limit:  # its dead letter takes its place
                letter = oversize_input(item, limit, at_ms=self.clock_ms())
                assert letter is not None
                processed = Processed([letter], dead_letter_kind="INPUT_TOO_LARGE")
            else:
                processed = process(item, tasks[item.partition].state)
            for output in processed.outputs:
                if (
                    output.topic in loopback
                    and output.partition in tasks
                    and output.value.__class__ is bytes
                ):
                    assert output.partition is not None and isinstance(output.value, bytes)
                    pending.append(
                        RawInput(
                            output.topic,
                            output.partition,
                            -1,
                            item.timestamp_ms,
                            output.key,
                            output.value,
                        )
                    )
                elif not self._write(checkpoint, output, None if done and item is raw else item):
                    effects.output_too_large(item.topic)
            effects.note(processed, item.topic)

    def _write(self, checkpoint: Transaction, output: Output, source: RawInput | None) -> bool:
        """Queue one output; return False when it was too large and a dead letter took its place."""
        topic = self._physical.get(output.topic) or self.physical(output.topic)
        value = output.value
        payload = value if isinstance(value, bytes) else self.codec.encode(topic, value)
        if source is not None and len(payload) > self.options.max_output_bytes:
            limit = self.options.max_output_bytes
            at = self.clock_ms()
            letter = oversize_output(source, output.topic, len(payload), limit, at_ms=at)
            if letter is not None:
                assert isinstance(letter.value, dict)
                dlq = self.physical(letter.topic)
                payload = self.codec.encode(dlq, letter.value)
                checkpoint.produce(dlq, letter.key, payload, letter.partition)
                return False
        on_offset = self.txn.on_offset(output) if output.track else None
        checkpoint.produce(topic, output.key, payload, output.partition, output.headers, on_offset)
        return True

    def commit_open(self) -> bool:
        """Commit the open transaction, if any, with its changelogs and offsets; True if done."""
        txn = self.txn
        if not txn.is_open:
            return True
        transport = self.transport

        def write_state() -> None:
            changelog_topic = self.physical(self.topology.spec.changelog)
            txn.write_state(changelog_topic, self.tasks, transport.group_metadata)

        if not self._undone_on_failure(write_state):
            return False
        if not txn.commit(transport.letter_sources):
            transport.rewind()
            return False
        self._transient_failures = 0
        if self._after_commit is not None:
            self._after_commit()
        return True

    def _undone_on_failure(self, work: Callable[[], None]) -> bool:
        """Do ``work`` in the open transaction; False when a transient failure undid it.

        A :class:`~streams.errors.TransientError` aborts the transaction and, after the
        transport's back-off, rewinds to the last commit; any other exception aborts it and
        propagates.
        """
        try:
            work()
        except TransientError as exc:
            self.txn.abort()
            self.metrics.transient_errors.inc()
            self._transient_failures += 1
            self.transport.back_off(exc, self._transient_failures)
            self.transport.rewind()
            return False
        except BaseException:
            self.txn.abort()
            raise
        return True
