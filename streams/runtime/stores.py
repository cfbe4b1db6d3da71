"""Key-value stores for the gate's per-partition state.

The source of truth is always the compacted changelog topic; a store is a local materialisation of
one partition of it, rebuilt on assignment. :class:`MemoryStore` keeps everything in a dict (fast,
bounded by RAM); :class:`RocksDBStore` keeps it on disk through ``rocksdict`` for state larger than
memory. Both hold ``bytes -> bytes`` and support prefix scans.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class KeyValueStore(Protocol):
    """The few operations the gate needs from a store of one partition."""

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""

    def delete(self, key: bytes) -> None:
        """Remove ``key`` if present."""

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        """Set every key of ``entries`` to its value (one batch: restores write millions)."""

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate over the entries whose key starts with ``prefix``."""

    def __len__(self) -> int:
        """Return the number of entries."""

    def close(self) -> None:
        """Release resources; the store must not be used afterwards."""


class MemoryStore:
    """A dict-backed store: the default, and the fastest for state that fits in memory."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        """Remove ``key`` if present."""
        self._data.pop(key, None)

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        """Set every key of ``entries`` to its value."""
        self._data.update(entries)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate over the entries whose key starts with ``prefix``."""
        for key, value in list(self._data.items()):
            if key.startswith(prefix):
                yield key, value

    def __len__(self) -> int:
        return len(self._data)

    def close(self) -> None:
        """Drop the contents."""
        self._data.clear()


class RocksDBStore:
    """An on-disk store in ``directory`` (wiped on open: the changelog is the truth).

    Hence no write-ahead log: after a crash the directory is wiped and rebuilt from the
    changelog anyway, so the WAL would only double every write.
    """

    def __init__(self, directory: Path) -> None:
        from rocksdict import Options, Rdict, WriteOptions

        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        options = Options(raw_mode=True)
        options.set_write_buffer_size(64 * 1024 * 1024)
        options.increase_parallelism(2)
        self._db = Rdict(str(directory), options=options)
        write_options = WriteOptions()
        write_options.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(write_options)
        self._directory = directory

    def get(self, key: bytes) -> bytes | None:
        """Return the value of ``key`` or None."""
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""
        self._db[key] = value

    def delete(self, key: bytes) -> None:
        """Remove ``key`` if present."""
        del self._db[key]

    def put_many(self, entries: dict[bytes, bytes]) -> None:
        """Set every key of ``entries`` to its value, in one write batch."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for key, value in entries.items():
            batch.put(key, value)
        self._db.write(batch)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate over the entries whose key starts with ``prefix``."""
        for key, value in self._db.items(from_key=prefix):
            raw_key = bytes(key)  # type: ignore[arg-type]
            if not raw_key.startswith(prefix):
                break
            yield raw_key, bytes(value)

    def __len__(self) -> int:
        """Count the entries (a full scan: the gate never needs it on its hot path)."""
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 (an Rdict iterates by index)

    def close(self) -> None:
        """Close the database and remove its files."""
        self._db.close()
        shutil.rmtree(self._directory, ignore_errors=True)


def open_store(kind: str, state_dir: Path, partition: int) -> KeyValueStore:
    """Open an empty store of ``kind`` ('memory' or 'rocksdb') for one partition."""
    if kind == "rocksdb":
        return RocksDBStore(state_dir / f"partition-{partition}")
    return MemoryStore()
