"""State restore from a compacted changelog partition, and the runtime's own topics.

A partition's state is the changelog partition with the same number, replayed from its
beginning (into a :class:`~streams.runtime.kept_store.KeptStore`: from the offset that its copy
reflects, :func:`restore_kept`) to its high watermark when the restore began (see
:mod:`streams.runtime.read_to_end`: a transaction the previous owner was still committing is
waited for, not cut off; asked of the ``read_committed`` restorer itself, the end would be the
last stable offset, which is still the first record of the previous owner's last transaction
until its commit markers are written).
Internal topics (repartition topics, changelogs) are created before the first subscription, with
the sources' partition count, so that no stage can start idle for want of a topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.errors import AuthorizationError, MissingTopicError, TopicLayoutError, TransientError
from streams.runtime.kept_store import ChangelogIdentity, KeptStore, StoreMeta
from streams.runtime.read_to_end import (
    END_PROBE_CONFIG,
    READER_CONFIG,
    REFUSALS,
    read_to_end,
    watermarks,
)
from streams.runtime.topology import PartitionState

log = logging.getLogger(__name__)


def restore_start(
    meta: StoreMeta | None,
    identity: ChangelogIdentity,
    low: int,
    high: int,
    *,
    now_ms: int,
    max_age_ms: int,
) -> tuple[int | None, str | None]:
    """Decide where a kept copy's restore starts: ``(offset or None for the beginning, why wipe)``.

    A copy is used only when it copies this very changelog partition (``identity``) and its
    offset lies within the partition's present ``[low, high]``: an offset beyond the end means
    the changelog was truncated or recreated, one before its start means records it would need
    were deleted. It is also discarded when written more than ``max_age_ms`` ago: compaction may
    since have removed tombstones (after the topic's ``delete.retention.ms``) that it must apply.
    The second element is None when the copy is used (or there is none), else the reason to
    wipe it first; the restore then starts at the beginning.
    """
    if meta is None:
        return None, None
    if meta.identity != identity:
        return None, f"it copies {meta.identity}, not {identity}"
    if meta.offset > high:
        return None, f"its offset {meta.offset} is beyond the changelog's end {high}"
    if meta.offset < low:
        return None, f"its offset {meta.offset} is before the changelog's start {low}"
    if now_ms - meta.written_ms > max_age_ms:
        age_h = (now_ms - meta.written_ms) / 3_600_000
        return None, f"it was written {age_h:.1f} h ago, longer than tombstones are sure to live"
    return meta.offset, None


def describe_changelog(admin: AdminClient, topic: str, partition: int) -> ChangelogIdentity:
    """Return the identity (topic id, partition count) of ``topic[partition]`` as the broker has it.

    Raises :class:`~streams.errors.TransientError` when the cluster does not answer, and
    :class:`~streams.errors.AuthorizationError` at once when the principal may not describe it.
    """
    try:
        description = admin.describe_topics(TopicCollection([topic]))[topic].result(30)
    except KafkaException as exc:
        if exc.args and getattr(exc.args[0], "code", lambda: None)() in REFUSALS:
            raise AuthorizationError(
                f"the broker refuses to describe the changelog {topic}: {exc}",
                hint="grant the processor READ on its changelog: deploy/acls.yaml, then"
                " `consentinel acls apply`",
            ) from exc
        raise TransientError(
            f"cannot describe the changelog {topic}: {exc}",
            hint="check that the brokers are up; retrying",
        ) from exc
    return ChangelogIdentity(
        topic, partition, len(description.partitions), str(description.topic_id or "")
    )


def restore_partition(
    kafka_config: dict[str, Any],
    group: str,
    changelog_topic: str,
    partition: int,
    state: PartitionState,
    *,
    timeout_s: float,
    cancelled: Callable[[], bool] = lambda: False,
) -> int:
    """Replay ``changelog_topic[partition]`` into ``state``; return the records replayed.

    Every committed record up to the partition's high watermark at the start is replayed: a
    transaction still open then is waited for (up to ``timeout_s``, or until ``cancelled()``),
    never cut off.
    """
    restorer = Consumer({**kafka_config, **READER_CONFIG, "group.id": group})
    probe = Consumer({**kafka_config, **END_PROBE_CONFIG, "group.id": group})
    try:
        return read_to_end(
            restorer,
            [TopicPartition(changelog_topic, partition, OFFSET_BEGINNING)],
            lambda messages: state.restore_many([(m.key() or b"", m.value()) for m in messages]),
            timeout_s=timeout_s,
            what=f"the changelog {changelog_topic}[{partition}]",
            ends_from=probe,
            cancelled=cancelled,
        )
    finally:
        probe.close()
        restorer.close()


def restore_kept(
    kafka_config: dict[str, Any],
    group: str,
    store: KeptStore,
    open_state: Callable[[KeptStore], PartitionState],
    *,
    timeout_s: float,
    max_age_ms: int,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[PartitionState, int]:
    """Bring a kept store up to its changelog's end; return the state over it and records read.

    The store's copy is checked first (:func:`restore_start`; wiped when it fails), then the
    state is opened over it (``open_state``) and only the records from the store's offset on
    are replayed, as :func:`restore_partition` replays them all. Each batch is committed to the
    store with the offset after its last record, and the changelog's end once it is reached
    (the markers and aborted records before it are never read again). On failure the store is
    left open, as committed so far: the caller closes it.
    """
    topic, partition = store.identity.topic, store.identity.partition
    restorer = Consumer({**kafka_config, **READER_CONFIG, "group.id": group})
    probe = Consumer({**kafka_config, **END_PROBE_CONFIG, "group.id": group})
    try:
        tp = TopicPartition(topic, partition)
        low, high = watermarks(probe, [tp], min(timeout_s, 30.0))[(topic, partition)]
        start, wipe = restore_start(
            store.meta,
            store.identity,
            low,
            high,
            now_ms=int(time.time() * 1000),
            max_age_ms=max_age_ms,
        )
        if wipe is not None:
            log.warning("%s[%d]: kept state wiped: %s", topic, partition, wipe)
            store.wipe(wipe)
        state = open_state(store)

        def on_records(messages: list[Message]) -> None:
            state.restore_many([(m.key() or b"", m.value()) for m in messages])
            store.commit((messages[-1].offset() or 0) + 1, log=False)

        count = read_to_end(
            restorer,
            [TopicPartition(topic, partition, OFFSET_BEGINNING if start is None else start)],
            on_records,
            timeout_s=timeout_s,
            what=f"the changelog {topic}[{partition}]",
            ends_from=probe,
            cancelled=cancelled,
        )
        store.commit(max(store.offset, high), log=False)
        store.flush()  # before any logged write lands on this copy
        return state, count
    finally:
        probe.close()
        restorer.close()


def partition_counts(admin: AdminClient, names: list[str]) -> dict[str, int]:
    """Return the partition count of each existing topic among ``names``."""
    try:
        metadata = admin.list_topics(timeout=30)
    except KafkaException as exc:
        raise TransientError(
            f"the cluster did not answer a metadata request: {exc}",
            hint="check that the brokers are up; retrying",
        ) from exc
    return {
        name: len(metadata.topics[name].partitions)
        for name in names
        if name in metadata.topics and metadata.topics[name].error is None
    }


def check_sources(admin: AdminClient, sources: list[str]) -> int:
    """Return the sources' common partition count; raise if one is missing or they differ."""
    counts = partition_counts(admin, sources)
    missing = [name for name in sources if name not in counts]
    if missing:
        raise MissingTopicError(
            f"input topic(s) missing: {', '.join(missing)}",
            hint="run `consentinel topics apply`; the processor is not ready until they exist",
        )
    if len(set(counts.values())) != 1:
        raise TopicLayoutError(
            f"input topics must share one partition count, found {counts}",
            hint="see deploy/topics.yaml: co-partitioned topics have the same partition count",
        )
    return next(iter(counts.values()))


def ensure_internal_topics(
    admin: AdminClient, partitions: int, internal: list[str], changelogs: list[str]
) -> list[str]:
    """Create the missing internal and changelog topics; return the names created.

    An existing one with another partition count is a :class:`TopicLayoutError` (its records
    would be on the wrong partitions).
    """
    wanted = internal + changelogs
    counts = partition_counts(admin, wanted)
    wrong = {name: n for name, n in counts.items() if n != partitions}
    if wrong:
        raise TopicLayoutError(
            f"internal topic(s) {wrong} do not have the sources' {partitions} partitions",
            hint="delete them (with the processor stopped) so that they are created again",
        )
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=-1,
            config=(
                {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
                if name in changelogs
                else {"cleanup.policy": "delete", "retention.ms": "604800000"}
            ),
        )
        for name in wanted
        if name not in counts
    ]
    if not new:
        return []
    for name, future in admin.create_topics(new, operation_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):  # created meanwhile by another instance
                continue
            if exc.args and _is_transient(exc.args[0]):
                raise TransientError(
                    f"could not create internal topic {name} yet: {exc}",
                    hint="the cluster has no controller or too few brokers right now; retrying",
                ) from exc
            raise
        log.info("created internal topic %s (%d partitions)", name, partitions)
    return [topic.topic for topic in new]


def _is_transient(error: object) -> bool:
    """Whether a topic creation failed for the moment only (no controller, too few brokers)."""
    if not isinstance(error, KafkaError):
        return False
    return bool(error.retriable()) or error.code() in (
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NOT_CONTROLLER,
        KafkaError.INVALID_REPLICATION_FACTOR,
    )
