"""Read partitions from given offsets up to where they ended when the read began.

One primitive for every "catch up, then act" read of the project: state restore from a
changelog, the global tables every instance reads in full, reports over the decision trail and
the demo's checks. "The end" is each partition's high watermark when the read starts, so a
``read_committed`` reader also waits for a transaction that was still open (or committing) at
that moment to be resolved, instead of stopping short at the last stable offset: a restore that
stopped there would miss state that the committed offsets already account for.

librdkafka's watermark query honours the consumer's ``isolation.level`` (since 1.7.1): asked
through a ``read_committed`` consumer it answers the last stable offset, not the high watermark.
A ``commit_transaction`` returns before the coordinator's markers are on the partitions, so right
after a previous owner's commit that is still the first offset of its last transaction. Reads
that must see every committed record (a state restore) therefore ask a ``read_uncommitted``
consumer for the end (:data:`END_PROBE_CONFIG`, the ``ends_from`` argument of
:func:`read_to_end`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.errors import AuthorizationError, TransientError

REFUSALS = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
)
"""Errors that no retry cures: the principal lacks an ACL. (A reader's group refused is not one:
an assigned consumer that never commits reads on without it.)"""

READER_CONFIG = {
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "isolation.level": "read_committed",
    # The end of a partition shows as an empty fetch that the broker holds for fetch.wait.max.ms
    # (default 500 ms) before answering: half a second per partition read to its end.
    "fetch.wait.max.ms": 10,
    "max.partition.fetch.bytes": 4 * 1024 * 1024,
    # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) once its queue is full;
    # a reader that empties the queue quickly would then sit idle.
    "fetch.queue.backoff.ms": 10,
}
"""librdkafka settings of a consumer used only to read partitions to their end."""

END_PROBE_CONFIG = {**READER_CONFIG, "isolation.level": "read_uncommitted"}
"""librdkafka settings of a consumer that only asks for partitions' high watermarks (their true
ends, open transactions included), for :func:`read_to_end`'s ``ends_from``."""


def _leader_moving(error: object) -> bool:
    code = getattr(error, "code", lambda: None)()
    return code in (
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TIMED_OUT,
    )


def watermarks(
    consumer: Consumer, partitions: list[TopicPartition], timeout_s: float
) -> dict[tuple[str, int], tuple[int, int]]:
    """Return ``{(topic, partition): (low, high) watermarks}`` queried from the broker now."""
    marks: dict[tuple[str, int], tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    for tp in partitions:
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(tp.topic, tp.partition), timeout=max(timeout_s / 3, 1.0)
                )
                break
            except KafkaException as exc:
                error = exc.args[0]
                if getattr(error, "code", lambda: None)() in REFUSALS:
                    raise AuthorizationError(
                        f"the broker refuses to tell this principal the end of"
                        f" {tp.topic}[{tp.partition}]: {error}",
                        hint="grant it READ on the topic: deploy/acls.yaml, then"
                        " `consentinel acls apply`",
                    ) from exc
                retriable = getattr(error, "retriable", lambda: False)()
                if time.monotonic() < deadline and (retriable or _leader_moving(error)):
                    time.sleep(0.2)  # a topic just created has no leader yet, for instance
                    continue
                raise TransientError(
                    f"cannot read the end of {tp.topic}[{tp.partition}]: {error}",
                    hint="is the broker reachable?",
                ) from exc
        marks[(tp.topic, tp.partition)] = (int(low), int(high))
    return marks


def read_to_end(
    consumer: Consumer,
    starts: list[TopicPartition],
    on_records: Callable[[list[Message]], None],
    *,
    timeout_s: float,
    what: str,
    stop_at: Mapping[tuple[str, int], int] | None = None,
    ends_from: Consumer | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Assign ``starts`` to ``consumer`` and hand every record up to the ends to ``on_records``.

    Every partition of ``starts`` stays assigned afterwards, so the caller may go on polling.

    ``consumer`` must have ``enable.partition.eof`` (see :data:`READER_CONFIG`). Records come in
    batches, in offset order per partition. Returns how many records were handed over. Raises
    :class:`~streams.errors.TransientError` when the ends are not reached within ``timeout_s``
    (the broker is unreachable, or a transaction stays open that long), and
    :class:`~streams.errors.AuthorizationError` at once when the principal may not read them.

    ``stop_at`` bounds the read: ``{(topic, partition): offset}`` to stop before, where that is
    earlier than the high watermark (a report's ``--until`` found with ``offsets_for_times``).
    Records from that offset on are not handed over, and a partition is paused once it reaches
    its bound (it stays assigned). Without ``stop_at`` nothing is filtered or paused.

    ``ends_from`` is a ``read_uncommitted`` consumer (:data:`END_PROBE_CONFIG`) to ask for the
    ends: then a transaction open (or still committing) when the read begins is waited for and
    read once committed. Without it the ends are asked of ``consumer``, which for a
    ``read_committed`` consumer are the last stable offsets: what is committed and visible now.

    ``cancelled()`` true (the process is stopping) ends the wait at once with a
    :class:`~streams.errors.TransientError`: a stop never waits out ``timeout_s``.
    """
    marks = watermarks(ends_from or consumer, starts, timeout_s=min(timeout_s, 30.0))
    ends = {key: high for key, (_, high) in marks.items()}
    if stop_at:
        ends = {key: min(high, stop_at.get(key, high)) for key, high in ends.items()}
    remaining = set()
    for tp in starts:
        key = (tp.topic, tp.partition)
        low, _ = marks[key]
        if ends[key] > max(int(tp.offset), low):
            remaining.add(key)
    consumer.assign(starts)
    if stop_at:  # nothing to read on these: do not fetch them
        idle = [TopicPartition(t, p) for t, p in marks if (t, p) not in remaining]
        if idle:
            consumer.pause(idle)
    if not remaining:
        return 0
    deadline = time.monotonic() + timeout_s
    count = 0
    while remaining:
        if cancelled():
            raise TransientError(
                f"stopped while reading {what} to its end ({len(remaining)} partition(s) short)"
            )
        if time.monotonic() > deadline:
            raise TransientError(
                f"could not read {what} to its end within {timeout_s:.0f}s"
                f" ({len(remaining)} partition(s) short)",
                hint="is the broker reachable, or is a transaction still open on it?",
            )
        messages = consumer.consume(10_000, timeout=0) or consumer.consume(1, timeout=0.5)
        records: list[Message] = []
        for message in messages:
            error = message.error()
            key = (message.topic() or "", message.partition() or 0)
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if (message.offset() or 0) >= ends.get(key, 0):
                        remaining.discard(key)
                    continue
                if error.code() in REFUSALS:
                    raise AuthorizationError(
                        f"the broker refuses to let this principal read {what}: {error.str()}",
                        hint="grant it READ on the topic (and its reader group): "
                        "deploy/acls.yaml, then `consentinel acls apply`",
                    )
                if error.fatal():
                    raise TransientError(f"reading {what} failed: {error}")
                continue  # librdkafka retries transient errors itself
            offset = message.offset() or 0
            if stop_at and offset >= ends.get(key, 0):
                remaining.discard(key)  # past the bound asked for
                continue
            records.append(message)
            if offset + 1 >= ends.get(key, 0):
                remaining.discard(key)
                if stop_at:
                    consumer.pause([TopicPartition(key[0], key[1])])
        if records:
            on_records(records)
            count += len(records)
    return count
