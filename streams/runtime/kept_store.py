"""A RocksDB store kept across restarts, with the changelog position it reflects.

The compacted changelog stays the source of truth. A :class:`KeptStore` is a local copy of one
changelog partition that says exactly how much of it it holds: the offset of the next changelog
record it has not applied (:attr:`KeptStore.offset`). On assignment the runtime restores only the
records from there on (the tail), instead of the whole partition
(:func:`streams.runtime.changelog.restore_partition`).

What it guarantees:

- **Committed state only.** Writes (``put``, ``delete``, ``put_many``) go to an in-memory overlay
  that reads see at once; nothing reaches RocksDB until :meth:`KeptStore.commit`, which the
  runtime calls only after the Kafka transaction that wrote the same changes to the changelog has
  committed (or, during a restore, for records read ``read_committed``). A transaction that
  aborts is undone by :meth:`KeptStore.rollback`; a process killed mid-transaction leaves nothing
  of it on disk.
- **State and offset together.** The overlay and the new offset are written in one RocksDB write
  batch, which RocksDB applies atomically (its write-ahead log replays whole batches; a batch
  written without the log reaches disk in a memtable flush, also whole). A crash between the
  Kafka commit and this write leaves the older state with the older offset: the next restore
  reads the tail again from there.
- **State ahead of its offset is harmless; state not in the changelog never exists.** Replaying
  changelog records over a copy that already holds them gives the same copy (the last record of a
  key wins), so an offset that is behind costs only a longer tail.
- **Another changelog means a wipe.** The store records which changelog it copies (topic name,
  topic id, partition, partition count): opened for another one it is emptied
  (:meth:`KeptStore.open`); :func:`streams.runtime.changelog.restore_start` also empties it when
  its offset is beyond the changelog's end or before its start, or older than tombstones live.
"""

from __future__ import annotations

import heapq
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from streams.runtime.task import PartitionTask

META_KEY = b"\x00consentinel.changelog"
"""The one reserved key: the changelog this store copies, and up to which offset (JSON)."""


@dataclass(frozen=True)
class ChangelogIdentity:
    """Which changelog partition a store copies; a store opened for another one is wiped."""

    topic: str
    partition: int
    partitions: int
    """The changelog topic's partition count (another count puts keys on other partitions)."""
    topic_id: str = ""
    """The broker's id of the topic ("" when unknown): it changes when the topic is recreated."""


@dataclass(frozen=True)
class StoreMeta:
    """What a kept store holds: a copy of ``identity`` up to (not including) ``offset``."""

    identity: ChangelogIdentity
    offset: int
    written_ms: int
    """Wall-clock time of the write that stored this offset."""

    def to_bytes(self) -> bytes:
        """Return the stored form (JSON)."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_bytes(raw: bytes) -> StoreMeta | None:
        """Return the meta stored as ``raw``, or None when it cannot be read (then: wipe)."""
        try:
            data = json.loads(raw)
            return StoreMeta(
                ChangelogIdentity(**data["identity"]), int(data["offset"]), int(data["written_ms"])
            )
        except (ValueError, KeyError, TypeError):
            return None


class KeptStore:
    """One partition's state on disk, kept across restarts, written only at commits.

    Satisfies :class:`~streams.runtime.stores.KeyValueStore`; see the module's docstring for what
    it guarantees.
    """

    def __init__(self, directory: Path, identity: ChangelogIdentity) -> None:
        self.directory = directory
        self.identity = identity
        self.wiped_because: str | None = None
        """Why the copy found on disk was discarded at open, or None (none, or it was kept)."""
        self._pending: dict[bytes, bytes | None] = {}
        self._db: Any = cast(Any, None)
        self._open()
        meta = self.meta
        if meta is None:
            if next(self._stored(b""), None) is not None or self._db.get(META_KEY) is not None:
                self.wipe("its changelog position is unreadable")
        elif meta.identity != identity:
            self.wipe(f"it copies {meta.identity}, not {identity}")

    @classmethod
    def open(cls, directory: Path, identity: ChangelogIdentity) -> KeptStore:
        """Open (or create) the store in ``directory`` for the changelog partition ``identity``."""
        return cls(directory, identity)

    def _open(self) -> None:
        from rocksdict import Options, Rdict

        self.directory.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(64 * 1024 * 1024)
        options.increase_parallelism(2)
        self._db = Rdict(str(self.directory), options=options)

    # -- the changelog position -----------------------------------------------------------------
    @property
    def meta(self) -> StoreMeta | None:
        """The committed copy's changelog and offset, or None for an empty (new or wiped) store."""
        raw = self._db.get(META_KEY)
        return None if raw is None else StoreMeta.from_bytes(bytes(raw))

    @property
    def offset(self) -> int:
        """The next changelog offset to apply: where a restore starts (0 for an empty store)."""
        meta = self.meta
        return 0 if meta is None else meta.offset

    def commit(self, offset: int | None, *, log: bool = True) -> None:
        """Write the overlay and ``offset`` (None: keep the stored one) in one write batch.

        Call it only once the changes are committed in the changelog, ``offset`` being the one
        after the last changelog record they include. ``log=False`` skips RocksDB's write-ahead
        log (restore batches: a crash loses whole batches with their offset, never half of one);
        call :meth:`flush` before the next logged write, so that a logged batch never lands on a
        copy missing unlogged ones.
        """
        from rocksdict import WriteBatch, WriteOptions

        if offset is None:
            if not self._pending:
                return
            offset = self.offset
        batch = WriteBatch(raw_mode=True)
        for key, value in self._pending.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        meta = StoreMeta(self.identity, offset, int(time.time() * 1000))
        batch.put(META_KEY, meta.to_bytes())
        options = WriteOptions()
        options.disable_wal = not log  # type: ignore[method-assign,assignment]
        self._db.write(batch, options)
        self._pending = {}

    def rollback(self) -> None:
        """Forget every write since the last :meth:`commit` (an aborted transaction's)."""
        self._pending = {}

    def flush(self) -> None:
        """Persist what RocksDB holds in memory (after unlogged restore batches)."""
        self._db.flush(True)

    def wipe(self, reason: str) -> None:
        """Delete the whole copy and its offset: the next restore reads the changelog in full."""
        self._pending = {}
        self._db.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        self._open()
        self.wiped_because = reason

    # -- KeyValueStore --------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` as of the last write (committed or not), or None."""
        if key in self._pending:
            return self._pending[key]
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` (on disk at the next :meth:`commit`)."""
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        """Remove ``key`` if present (on disk at the next :meth:`commit`)."""
        self._pending[key] = None

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        """Set every key of ``entries`` to its value (on disk at the next :meth:`commit`)."""
        self._pending.update(entries)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate in key order over the entries whose key starts with ``prefix``.

        The overlay's writes count: a pending delete hides a stored key, a pending put shows.
        """
        pending = sorted((k, v) for k, v in self._pending.items() if k.startswith(prefix))
        overlay = dict(pending)
        merged = heapq.merge(
            ((k, 0, v) for k, v in self._stored(prefix) if k not in overlay),
            ((k, 1, v) for k, v in pending),
        )
        for key, _, value in merged:
            if value is not None:
                yield key, value

    def _stored(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            raw_key = bytes(key)
            if not raw_key.startswith(prefix):
                break
            if raw_key != META_KEY:
                yield raw_key, bytes(value)

    def __len__(self) -> int:
        """Count the entries (a full scan: never on a hot path)."""
        return sum(1 for _ in self.items())

    def close(self) -> None:
        """Forget uncommitted writes, persist the rest and close; the files stay for next time."""
        if self._db is None:
            return
        self._pending = {}
        self._db.flush(True)
        self._db.close()
        self._db = None


class KeptWrites:
    """What one transaction changed in kept stores, to be written once (and if) it commits.

    :meth:`changelog` queues a partition's state changes in the transaction, noting the offset
    its last changelog record gets; :meth:`committed` then writes each kept store's overlay with
    the offset after that record. After an abort it is only cleared (:meth:`clear`; the
    runtime's rewind drops the stores' overlays). Without a noted offset (no delivery report) a
    store is written with its old offset: a copy ahead of its offset only costs a longer tail.
    """

    def __init__(self) -> None:
        self._stores: dict[int, KeptStore] = {}
        self._ends: dict[int, int] = {}

    def changelog(self, transaction: Any, topic: str, partition: int, task: PartitionTask) -> None:
        """Queue ``task``'s state changes in ``transaction`` (its ``changelog`` and ``produce``)."""
        changes = task.state.take_changes()
        if task.kept is None or not changes:
            transaction.changelog(topic, partition, changes)
            return
        self._stores[partition] = task.kept
        transaction.changelog(topic, partition, changes[:-1])
        key, value = changes[-1]
        transaction.produce(topic, key, value, partition, on_offset=self._noting(partition))

    def _noting(self, partition: int) -> Callable[[int], None]:
        def on_offset(offset: int) -> None:
            self._ends[partition] = max(offset, self._ends.get(partition, -1))

        return on_offset

    def committed(self) -> None:
        """Write every changed kept store with its changelog offset: the transaction committed.

        Only now does a kept store change on disk. A crash before this leaves the store behind
        its changelog, and the next restore reads the tail again.
        """
        for partition, store in self._stores.items():
            end = self._ends.get(partition)
            store.commit(None if end is None else end + 1)

    def clear(self) -> None:
        """Forget this transaction's stores and offsets (after its commit, or its abort)."""
        self._stores = {}
        self._ends = {}
