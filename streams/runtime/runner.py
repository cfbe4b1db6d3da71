"""The stream runtime over Kafka: a consumer-group member that runs the one loop, exactly once.

:class:`StreamRunner` is the Kafka :class:`~streams.runtime.transport.Transport` of the shared
:class:`~streams.runtime.loop.StreamLoop` (the in-process test driver is the other one) and the
process's lifecycle around it: topics, global tables, group membership and restore, flow
control, health, lag. Each iteration takes what the consumer has fetched, releases it per
partition in event-time order (:class:`~streams.runtime.timesync.PartitionSynchronizer`, when
the topology asks for it), and has the loop process it into the open transaction and commit
that once it is due, with the outputs, the state changelog records and the consumed offsets.
After any crash either all of a transaction's effects are visible to ``read_committed`` readers,
or none are and its inputs are processed again from the same state.

A partition is processed only after its state is restored from the changelog (fail closed,
:class:`~streams.runtime.assignment.Assignment`), and only after every global table has been
read to its end. Rebalances happen inside ``consume`` — never while a transaction is open — so
a revoked partition carries no half-written work. A dependency that is unreachable
(:class:`~streams.errors.TransientError`) aborts the transaction, whose inputs are retried from
the last commit after a back-off; they are never dead-lettered or skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams.errors import TransientError
from streams.runtime import start_up
from streams.runtime.assignment import Assignment, co_assigned, group_consumer
from streams.runtime.checkpoint import (
    Checkpoint,
    ConsumerFencedError,
    RuntimeFatalError,
    replaceable,
)
from streams.runtime.flow import FlowControl
from streams.runtime.gc_tuning import GcTuning
from streams.runtime.global_table import GlobalTableReader
from streams.runtime.health import Health, report_lag, wait_for_metadata, wait_for_topics
from streams.runtime.intake import Intake
from streams.runtime.loop import StreamLoop
from streams.runtime.metrics import runtime_metrics
from streams.runtime.options import TRANSIENT_BACKOFF_S, RenewalBudget, RuntimeOptions
from streams.runtime.reachability import BrokerProbe
from streams.runtime.records import RawInput
from streams.runtime.topology import Topology
from streams.runtime.transaction import monotonic_ms, transactional_producer
from streams.runtime.transport import LetterSource, Transaction
from streams.serde.wire import AvroCodec

__all__ = ["TRANSIENT_BACKOFF_S", "RuntimeOptions", "StreamRunner"]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Topology)


class StreamRunner(Generic[T]):
    """One process of a topology: a member of its consumer group, with its own transactions."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        codec: AvroCodec,
        topology: T,
        *,
        instance_id: str,
        topic_prefix: str = "",
        options: RuntimeOptions | None = None,
        metrics_prefix: str,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.codec = codec
        self.topology: T = topology
        self.spec = topology.spec
        self.options = options = options or RuntimeOptions()
        self.prefix = topic_prefix
        self.metrics = runtime_metrics(metrics_prefix)
        self.clock_ms = clock_ms
        spec = self.spec
        names = {*spec.sources, *spec.outputs, *spec.internal, spec.changelog}
        names |= {table.topic for table in spec.global_tables}
        self._physical = {name: topic_prefix + name for name in names}
        self._logical = {physical: name for name, physical in self._physical.items()}
        internal, sources = frozenset(spec.internal), frozenset(spec.sources)
        self.group = topic_prefix + spec.name
        self._running = True
        self._next_lag_report = 0.0
        self.gc = GcTuning(options, self.metrics.gc_pause)
        self._kafka_config = kafka_config
        self._instance_id = instance_id
        self._rejoins = RenewalBudget()
        self.consumer = group_consumer(kafka_config, self.group, instance_id, options)
        self._transactional_id = f"{self.group}-{instance_id}"
        self.producer = transactional_producer(kafka_config, self._transactional_id, options)
        self._checkpoint: Checkpoint | None = None
        self._replacements = RenewalBudget()
        self._wedged: list[Any] = []
        """Producers stuck in a call that never returns: kept referenced, never destroyed."""
        self.globals = [
            GlobalTableReader(
                kafka_config, table, physical_topic=self.physical(table.topic), clock_ms=clock_ms
            )
            for table in spec.global_tables
        ]
        self.health = Health(self.globals, options.liveness_timeout_s)
        self.assignment = Assignment(
            kafka_config,
            topology,
            group=self.group,
            changelog_topic=self.physical(spec.changelog),
            options=options,
            metrics=self.metrics,
            turned=self.health.turned,
            stopping=lambda: not self._running,
        )
        self.tasks = self.assignment.tasks
        self.intake = Intake(
            self.consumer,
            topology,
            self.tasks,
            physical=self.physical,
            logical=self._logical,
            unordered_topics=internal if spec.synchronized else sources,
            max_idle_ms=options.max_idle_ms,
        )
        self.flow = FlowControl(self.consumer, options.pause_above, options.resume_below)
        self.loop = StreamLoop(
            topology,
            codec,
            self,
            self.tasks,
            options=options,
            metrics=self.metrics,
            clock_ms=clock_ms,
            monotonic_ms=monotonic_ms,
            after_commit=self.gc.freeze,
        )
        self.txn = self.loop.txn

    def physical(self, logical: str) -> str:
        """Return the broker's name of a logical topic (the prefix serves tests and tenants)."""
        return self._physical.get(logical, self.prefix + logical)

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch and exit."""
        self._running = False

    @property
    def ready(self) -> bool:
        """Whether this instance may take traffic: started, global tables whole, state restored.

        An instance with no partitions assigned (more replicas than partitions) is ready.
        """
        return self.health.ready

    @property
    def live(self) -> bool:
        """Whether the loop has turned within ``liveness_timeout_s`` (restores count as turns).

        False for good once :meth:`run` has ended on an error (a fenced or failed consumer or
        producer): the process must exit and be started again.
        """
        return self.health.live

    def run(self, *, until: Callable[[], bool] | None = None) -> None:
        """Run until :meth:`stop` is called (or ``until()`` returns true).

        A consumer fenced out of its group is replaced in-process (:meth:`_rejoin`). Raises
        :class:`~streams.runtime.checkpoint.RuntimeFatalError` when the producer can never work
        again (fenced by a newer instance, or a fatal librdkafka error) or the consumer is
        fenced more often than :data:`~streams.runtime.options.REJOINS_ALLOWED`: the process
        must end (non-zero) and be started again; :attr:`live` is false from then on.
        """

        def keep_going() -> bool:
            return self._running and not (until and until())

        probe: BrokerProbe | None = None
        try:
            partitions = wait_for_topics(
                self._kafka_config, self.spec, self.physical, self.health, keep_going
            )
            if partitions is None:
                return
            self.topology.bind(partitions)
            probe = BrokerProbe.started(
                self._kafka_config, self.physical(self.spec.sources[0]), self.health, self.options
            )
            self.gc.apply()
            if not self._start_up(keep_going):
                return
            sources = [self.physical(t) for t in self.spec.sources]
            if not wait_for_metadata(self.consumer, sources, partitions, keep_going):
                return
            self._subscribe()
            while keep_going():
                try:
                    self._iteration()
                except ConsumerFencedError as exc:
                    self._rejoin(exc)
            self._commit_open()  # what an open transaction holds (commit_interval_ms)
        except Exception as exc:  # the loop is over for good: /live says so until the exit
            self.health.failed = f"{type(exc).__name__}: {exc}"
            log.error("%s stops: %s", self.group, exc)
            raise
        finally:
            if probe is not None:
                probe.stop()
            self.txn.abort()
            self.health.started = False
            self.metrics.ready.set(0)
            self.consumer.close()
            for reader in self.globals:
                reader.close()
            self.assignment.close()

    def _start_up(self, keep_going: Callable[[], bool]) -> bool:
        """Initialise transactions, then read every global table to its end, through an outage.

        Returns False if ``keep_going()`` turns false first. Not ready meanwhile: nothing is
        subscribed yet.
        """
        log.info(
            "%s: initialising transactions, then reading %d global table(s) to their end",
            self.group,
            len(self.globals),
        )
        return start_up.init_transactions(
            self.producer, self._retry, keep_going
        ) and start_up.catch_up(self.globals, self._retry, keep_going)

    def _retry(self, exc: TransientError, failures: int) -> None:
        self.metrics.transient_errors.inc()
        self.back_off(exc, failures)

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.physical(t) for t in self.spec.sources],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.health.joined = False  # not ready until the group answers (it may be unreachable)
        self.health.started = True

    def _rejoin(self, fenced: ConsumerFencedError) -> None:
        """Replace a consumer fenced out of the group, as a restarted process would rejoin.

        The open transaction is aborted and every partition given up (a kept store keeps its
        committed state), so the new member restores and resumes from the last commit exactly
        as after a restart; the producer stays. Not ready until the new member is assigned.
        Raises ``fenced`` when it happens more often than ``REJOINS_ALLOWED``.
        """
        if self._rejoins.exceeded(self._rejoins.spend(time.monotonic())):
            raise fenced
        log.warning("%s: %s; rejoining the group with a new consumer", self.group, fenced)
        self.metrics.consumer_rejoins.inc()
        self.health.started = False
        self.txn.abort()
        for partition in list(self.tasks):
            self.assignment.drop(partition)
        self.metrics.assigned_partitions.set(0)
        try:
            self.consumer.close()  # leaves nothing: the fenced membership is gone already
        except Exception as exc:
            log.warning("closing the fenced consumer failed (ignored): %s", exc)
        self.consumer = group_consumer(
            self._kafka_config, self.group, self._instance_id, self.options
        )
        self.intake.restart(self.consumer)
        self.flow.consumer = self.consumer
        self._subscribe()

    def _iteration(self) -> None:
        self.health.turned()
        self.metrics.last_iteration.set(time.time())
        self.loop.turn(stopping=not self._running)
        self.flow.update(self.tasks, self.physical, self.intake.cross)
        self.metrics.ready.set(1 if self.ready else 0)
        if time.monotonic() >= self._next_lag_report:
            self._next_lag_report = time.monotonic() + self.options.lag_interval_s
            report_lag(self.consumer, self._logical, self.spec.sources, self.metrics.consumer_lag)

    def _commit_open(self) -> bool:
        return self.loop.commit_open()

    # -- the transport of the loop ----------------------------------------------------------------
    @property
    def letter_sources(self) -> list[LetterSource]:
        """The global tables' readers (their dead letters are written by the loop)."""
        return list(self.globals)

    def fetch(self, budget: int, wait_s: float) -> list[RawInput]:
        """Return up to ``budget`` inputs released in order, after polling the global tables.

        Waits up to ``wait_s`` for the consumer when nothing is fetched yet.
        """
        messages = self._consume(budget, wait_s)
        for reader in self.globals:
            reader.poll()
        self._accept(messages)
        return self._drain(budget)

    def sources_behind(self, partition: int) -> bool:
        """Whether a source of ``partition`` has records on the broker not yet released."""
        return self.intake.sources_behind(partition)

    def begin(self) -> Transaction:
        """Begin a Kafka transaction on the processor's producer.

        The producer is replaced first if it wedged, or if it failed fatally without being
        fenced (:func:`~streams.runtime.checkpoint.replaceable`).
        """
        if self._checkpoint is not None and self._checkpoint.wedged:
            self._replace_producer()
        try:
            self._checkpoint = Checkpoint(self.producer)
        except KafkaException as exc:
            if not replaceable(exc.args[0]):
                raise
            log.error("%s: cannot begin a transaction: %s", self.group, exc)
            self._replace_producer()
            self._checkpoint = Checkpoint(self.producer)
        return self._checkpoint

    def _replace_producer(self) -> None:
        """Put a new transactional producer in place of one wedged in a call.

        Its ``init_transactions`` fences the old one and has the coordinator abort the
        transaction it left open (retried while the cluster is unreachable, turning so that
        /live holds). Raises :class:`~streams.runtime.checkpoint.RuntimeFatalError` when
        producers wedge more often than ``REJOINS_ALLOWED``.
        """
        budget = self._replacements
        wedged = budget.spend(time.monotonic())
        if budget.exceeded(wedged):
            raise RuntimeFatalError(
                f"{wedged} transactional producers wedged within {budget.window_s:.0f}s",
                hint="the process restarts from its last commit; check the brokers",
            )
        log.warning("%s: replacing the wedged (or fatally failed) producer", self.group)
        self.metrics.producer_replacements.inc()
        self._wedged.append(self.producer)  # its blocked call still holds it: never destroyed
        self._checkpoint = None
        self.health.replacing = "the transactional producer"
        self.producer = transactional_producer(
            self._kafka_config, self._transactional_id, self.options
        )
        if not start_up.init_transactions(self.producer, self.back_off, lambda: self._running):
            raise TransientError("stopped before the new producer was initialised")
        self.health.replacing = None

    def group_metadata(self) -> Any:
        """Return the consumer's group metadata (it fences a zombie's offsets)."""
        return self.consumer.consumer_group_metadata()

    def rewind(self) -> None:
        """After an abort, forget uncommitted work: restore state again, seek to committed.

        Partitions paused for their tasks' merge buffers are resumed (those buffers are gone).
        A wedged producer is replaced first: its fencing aborts the transaction it left open,
        which the restore's read_committed reads would otherwise wait on until it times out.
        """
        if self._checkpoint is not None and self._checkpoint.wedged:
            self._replace_producer()
        paused = [
            TopicPartition(self.physical(topic), partition)
            for partition, task in self.tasks.items()
            for topic in task.paused
        ]
        if paused:
            self.consumer.resume(paused)
        self.intake.clear()
        self.assignment.rewind(self.consumer)

    def back_off(self, exc: TransientError, failures: int) -> None:
        """Wait (turning, so /live holds) before the ``failures``-th retry; stop early on stop."""
        wait = TRANSIENT_BACKOFF_S[min(failures - 1, len(TRANSIENT_BACKOFF_S) - 1)]
        log.warning("transient failure, batch retried in %.1fs: %s", wait, exc)
        deadline = time.monotonic() + wait
        while self._running and time.monotonic() < deadline:
            self.health.turned()
            time.sleep(0.1)

    # -- intake ---------------------------------------------------------------------------------
    def _consume(self, budget: int, wait_s: float) -> list[Message]:
        """Return up to ``budget`` of what is already fetched, waiting only when nothing is."""
        if budget <= 0:
            return []
        messages = self.consumer.consume(budget, timeout=0)
        if messages:
            return messages
        first = self.consumer.poll(wait_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(budget - 1, timeout=0)]

    # bench/report.py profiles the intake and the merge under these two names
    def _accept(self, messages: list[Message]) -> None:
        self.intake.accept(messages)

    def _drain(self, budget: int) -> list[RawInput]:
        return self.intake.drain(budget)

    # -- assignment -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, assigned: list[Any]) -> None:
        # Reading committed offsets with read_committed waits for any transaction the previous
        # owner left committing, so the changelog read below sees all of its effects.
        self._commit_open()  # never restore or rebalance under an open transaction
        whole, missing = co_assigned(
            assigned, frozenset(self.spec.sources), lambda t: self._logical.get(t, t)
        )
        if missing:  # fail closed: a partition number in two processes would split its state
            log.error(
                "%s: partition(s) assigned without all their sources, not processed until the"
                " next rebalance: %s",
                self.group,
                {number: sorted(names) for number, names in sorted(missing.items())},
            )
        self.health.restoring = True
        try:
            try:
                consumer.committed(assigned, timeout=60)
            except KafkaException as exc:  # the restore below reads to the true end anyway
                log.warning("%s: committed offsets not read on assignment: %s", self.group, exc)
            for partition in sorted(whole - set(self.tasks)):
                self._restore_retrying(partition)
        finally:
            self.health.restoring = False
        self.gc.freeze(force=True)  # the restored state is long-lived
        self.intake.reassigned()
        self.metrics.assigned_partitions.set(len(self.tasks))
        self.health.joined = True

    def _on_revoke(self, consumer: Consumer, revoked: list[Any]) -> None:
        if self.txn.is_open:
            try:
                self._commit_open()  # the revoked partitions' work, before their new owner reads
            except Exception as exc:  # fenced or lost: the new owner redoes it from the commit
                log.warning("open transaction not committed on revocation: %s", exc)
                self.txn.abort()
        for partition in {tp.partition for tp in revoked}:
            self.assignment.drop(partition)
        self.intake.keep_assigned()
        self.metrics.assigned_partitions.set(len(self.tasks))

    def _on_lost(self, consumer: Consumer, lost: list[Any]) -> None:
        self.health.joined = False  # out of the group (its session expired): no progress here
        self._on_revoke(consumer, lost)

    def _restore_retrying(self, partition: int) -> None:
        """Restore ``partition``, retrying with back-off while the broker is unreachable.

        A stop meanwhile ends the wait at once; the partition is then not taken (nothing of it
        is processed, its next owner restores it), and the run ends as stopped, not failed.
        """
        failures = 0
        while self._running:
            try:
                self.assignment.restore(partition)
                return
            except TransientError as exc:
                if not self._running:
                    log.info("%s: stopping; partition %d not restored", self.group, partition)
                    return
                failures += 1
                self._retry(exc, failures)

    def restore_partition(self, partition: int) -> int:
        """Restore one partition's state from the changelog, as on assignment; return records."""
        return self.assignment.restore(partition)
