"""Stream a topic of the contract, within a time window, without holding it in memory.

The regulator reports read trails that grow forever (``governance.decisions`` and
``consent.changes`` have infinite retention), so nothing here keeps the whole topic:

- :func:`plan_read` turns ``--since``/``--until`` into offsets with ``offsets_for_times``: each
  partition is read from the first record stamped at or after ``since - SLACK_MS`` and stops
  before the first stamped at or after ``until + SLACK_MS``. The slack covers the gap between a
  record's Kafka timestamp and the time inside it (``decided_at`` is taken just before the
  gate's transaction commits), so callers still filter on the record's own field, exactly.
- :func:`stream_topic` reads those ranges with the runtime's one read-to-end primitive
  (:func:`streams.runtime.read_to_end.read_to_end`, ``read_committed``, outside any group),
  decodes each batch and hands every record to a callback, printing progress to stderr.
- :func:`spool_topic` keeps the records a predicate accepts as rows, written in batches of
  Parquet files into a directory; :meth:`Spool.scan` is a lazy polars frame over them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from streams.errors import ConsentinelError, MissingTopicError, TransientError
from streams.runtime.read_to_end import READER_CONFIG, read_to_end, watermarks
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings

log = logging.getLogger(__name__)

SLACK_MS: Final = 5 * 60_000
"""How far a record's Kafka timestamp may stray from the time it carries (seek and stop bounds)."""

PROGRESS_RECORDS: Final = 200_000
"""Print a progress line at least every this many records ..."""

PROGRESS_SECONDS: Final = 5.0
"""... or every this many seconds, whichever comes first."""

BATCH_ROWS: Final = 50_000
"""Rows per spooled Parquet file."""

MIN_RECORDS_PER_S: Final = 2_000
"""The slowest read rate tolerated before a read is declared stuck (with a 120 s floor)."""

Say = Callable[[str], None]
OnRecord = Callable[[int, int, dict[str, Any] | None], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ReadPlan:
    """Where each partition's read starts and stops (offsets), and how many records that is."""

    topic: str
    starts: dict[int, int]
    stops: dict[int, int]

    @property
    def total(self) -> int:
        """How many offsets the plan covers (an upper bound on the records: aborted writes)."""
        return sum(max(0, self.stops[p] - self.starts[p]) for p in self.starts)


@dataclass
class ReadStats:
    """What a read saw: ``read`` records decoded, and where the undecodable ones are."""

    topic: str
    partitions: int
    read: int = 0
    unreadable: list[tuple[int, int]] = field(default_factory=list)


class Progress:
    """Progress of a long read on stderr: records read and the share of the planned offsets."""

    def __init__(
        self,
        plan: ReadPlan,
        *,
        say: Say = _stderr,
        every_records: int = PROGRESS_RECORDS,
        every_s: float = PROGRESS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.say = say
        self.every_records = every_records
        self.every_s = every_s
        self.clock = clock
        self.records = 0
        self.lines = 0
        self._next_offsets = dict(plan.starts)
        self._began = self._last_at = clock()
        self._last_records = 0

    def fraction(self) -> float:
        """Return the share of the planned offsets read so far (1.0 for an empty plan)."""
        total = self.plan.total
        if total == 0:
            return 1.0
        done = sum(self._next_offsets[p] - self.plan.starts[p] for p in self.plan.starts)
        return min(1.0, done / total)

    def advance(self, partition: int, offset: int) -> None:
        """Count one record at ``partition``/``offset``; print a line when one is due."""
        self.records += 1
        if offset + 1 > self._next_offsets.get(partition, 0):
            self._next_offsets[partition] = offset + 1
        due = self.records - self._last_records >= self.every_records
        if due or (self.records % 1000 == 0 and self.clock() - self._last_at >= self.every_s):
            self._line()

    def finish(self) -> None:
        """Print the last line, if any progress line was printed (short reads stay quiet)."""
        if self.lines:
            self._line(final=True)

    def _line(self, *, final: bool = False) -> None:
        now = self.clock()
        state = "done" if final else "reading"
        self.say(
            f"{self.plan.topic}: {state}, {self.records} records"
            f" ({100.0 * (1.0 if final else self.fraction()):.1f}% of {self.plan.total} offsets,"
            f" {now - self._began:.1f}s)"
        )
        self.lines += 1
        self._last_at, self._last_records = now, self.records


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {**settings.kafka_config(), **READER_CONFIG, "group.id": "consentinel-report-reader"}
    )


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise MissingTopicError(
            f"topic {topic} does not exist",
            hint="run `consentinel topics apply` (and check CONSENTINEL_TOPIC_PREFIX)",
        )
    return sorted(metadata.partitions)


def _offsets_at(
    consumer: Consumer, topic: str, partitions: list[int], at_ms: int
) -> dict[int, int]:
    """Return, per partition, the first offset stamped at or after ``at_ms`` (-1: none)."""
    asked = [TopicPartition(topic, p, max(0, at_ms)) for p in partitions]
    try:
        found = consumer.offsets_for_times(asked, timeout=30)
    except KafkaException as exc:
        raise TransientError(
            f"cannot look up offsets by time in {topic}: {exc.args[0]}",
            hint="is the broker reachable?",
        ) from exc
    return {tp.partition: int(tp.offset) for tp in found}


def plan_read(
    consumer: Consumer, topic: str, *, since_ms: int | None = None, until_ms: int | None = None
) -> ReadPlan:
    """Return the offsets to read for records of ``[since_ms, until_ms)`` (see module docs).

    Raises:
        MissingTopicError: the topic does not exist.
        TransientError: the broker cannot be asked.
    """
    partitions = _partitions(consumer, topic)
    marks = watermarks(consumer, [TopicPartition(topic, p) for p in partitions], timeout_s=30)
    low = {p: marks[(topic, p)][0] for p in partitions}
    high = {p: marks[(topic, p)][1] for p in partitions}
    starts, stops = dict(low), dict(high)
    if since_ms is not None and partitions:
        for p, offset in _offsets_at(consumer, topic, partitions, since_ms - SLACK_MS).items():
            starts[p] = high[p] if offset < 0 else max(low[p], offset)
    if until_ms is not None and partitions:
        for p, offset in _offsets_at(consumer, topic, partitions, until_ms + SLACK_MS).items():
            stops[p] = high[p] if offset < 0 else min(high[p], offset)
    return ReadPlan(topic, starts, stops)


def stream_topic(
    settings: Settings,
    contract_topic: str,
    on_record: OnRecord,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    codec: AvroCodec | None = None,
    say: Say = _stderr,
    every_records: int = PROGRESS_RECORDS,
    every_s: float = PROGRESS_SECONDS,
) -> ReadStats:
    """Read ``contract_topic`` (under the prefix) in the window; call ``on_record`` per record.

    ``on_record(partition, offset, record)`` gets ``None`` for a record that cannot be decoded
    (it is also listed in :attr:`ReadStats.unreadable`). Records come in offset order within a
    partition; partitions interleave.

    Raises:
        MissingTopicError: the topic does not exist.
        TransientError: the broker cannot be read, or the read does not finish in time.
    """
    topic = settings.topic_prefix + contract_topic
    if codec is None:
        codec = AvroCodec(RegistrySchemaSource.from_settings(settings), prefixed_catalog(settings))
    consumer = _consumer(settings)
    try:
        plan = plan_read(consumer, topic, since_ms=since_ms, until_ms=until_ms)
        stats = ReadStats(topic=topic, partitions=len(plan.starts))
        progress = Progress(plan, say=say, every_records=every_records, every_s=every_s)

        def on_batch(messages: list[Message]) -> None:
            for message in messages:
                partition, offset = message.partition() or 0, message.offset() or 0
                try:
                    record: dict[str, Any] | None = codec.decode(topic, message.value() or b"")
                    stats.read += 1
                except ConsentinelError as exc:
                    log.warning("%s[%d]@%d cannot be decoded: %s", topic, partition, offset, exc)
                    stats.unreadable.append((partition, offset))
                    record = None
                on_record(partition, offset, record)
                progress.advance(partition, offset)

        starts = [TopicPartition(topic, p, plan.starts[p]) for p in sorted(plan.starts)]
        stop_at = {(topic, p): plan.stops[p] for p in plan.stops}
        timeout = max(120.0, plan.total / MIN_RECORDS_PER_S)
        read_to_end(consumer, starts, on_batch, timeout_s=timeout, what=topic, stop_at=stop_at)
        progress.finish()
        return stats
    finally:
        consumer.close()


@dataclass
class Spool:
    """Rows kept from a read, as Parquet files in ``directory`` (see :meth:`scan`)."""

    stats: ReadStats
    directory: Path
    schema: pl.Schema
    kept: int = 0
    files: list[Path] = field(default_factory=list)

    def scan(self) -> pl.LazyFrame:
        """Return a lazy frame over the spooled rows (an empty, typed one when none were kept)."""
        if not self.files:
            return pl.LazyFrame(schema=self.schema)
        return pl.scan_parquet(self.files)


class RowSpool:
    """Buffers rows and writes them as numbered Parquet files of at most ``batch_rows`` rows."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        to_frame: Callable[[Iterable[Mapping[str, Any]]], pl.DataFrame],
        *,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.directory, self.stem, self.to_frame = directory, stem, to_frame
        self.batch_rows = batch_rows
        self.rows: list[Mapping[str, Any]] = []
        self.files: list[Path] = []
        self.kept = 0
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, row: Mapping[str, Any]) -> None:
        """Keep one row; write a file when the batch is full."""
        self.rows.append(row)
        self.kept += 1
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows (if any) as the next file."""
        if not self.rows:
            return
        path = self.directory / f"{self.stem}-{len(self.files):05d}.parquet"
        self.to_frame(self.rows).write_parquet(path)
        self.files.append(path)
        self.rows = []


def spool_topic(
    settings: Settings,
    contract_topic: str,
    directory: Path,
    *,
    to_frame: Callable[[Iterable[Mapping[str, Any]]], pl.DataFrame],
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    codec: AvroCodec | None = None,
    say: Say = _stderr,
    batch_rows: int = BATCH_ROWS,
) -> Spool:
    """Read like :func:`stream_topic`; spool the records ``keep`` accepts through ``to_frame``.

    ``to_frame`` turns a batch of decoded records into a frame of a fixed schema (an empty batch
    included: that gives :attr:`Spool.schema`).
    """
    rows = RowSpool(directory, contract_topic.replace(".", "_"), to_frame, batch_rows=batch_rows)

    def on_record(_partition: int, _offset: int, record: dict[str, Any] | None) -> None:
        if record is not None and (keep is None or keep(record)):
            rows.add(record)

    stats = stream_topic(
        settings,
        contract_topic,
        on_record,
        since_ms=since_ms,
        until_ms=until_ms,
        codec=codec,
        say=say,
    )
    rows.flush()
    return Spool(stats, directory, to_frame([]).schema, rows.kept, rows.files)
