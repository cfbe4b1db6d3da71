"""The gate's state for one partition: users' consent state, photo owners, the hash-chain head.

The compacted changelog topic is the source of truth; this object is its local materialisation
(restored on assignment) plus the changes made since the last commit. ``take_changes`` hands those
changes to the runner, which writes them to the changelog in the same transaction as the decisions
they led to, so state and outputs can never disagree after a crash.

Changelog keys (one partition of the changelog per input partition number):
``u:<user_id>`` -> :class:`~streams.core.consent.UserState` bytes; ``p:<photo_id>`` -> owner id;
``h`` -> the hex hash of the last decision written on this partition.
"""

from __future__ import annotations

from streams.core.audit import GENESIS_HASH
from streams.core.consent import UserState
from streams.runtime.stores import KeyValueStore

USER_PREFIX = b"u:"
PHOTO_PREFIX = b"p:"
HEAD_KEY = b"h"


class PartitionState:
    """Materialised state of one partition, with a write-back cache of user states."""

    def __init__(self, partition: int, store: KeyValueStore, *, cache_all: bool) -> None:
        self.partition = partition
        self.store = store
        self._cache_all = cache_all
        self._users: dict[str, UserState] = {}
        self._dirty_users: set[str] = set()
        self._changes: dict[bytes, bytes | None] = {}
        self._head = GENESIS_HASH

    # -- restore --------------------------------------------------------------------------------
    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (``None`` is a tombstone) while restoring."""
        if key == HEAD_KEY:
            self._head = value.decode() if value else GENESIS_HASH
            return
        if value is None:
            self.store.delete(key)
            if key.startswith(USER_PREFIX):
                self._users.pop(key[len(USER_PREFIX) :].decode(), None)
            return
        self.store.put(key, value)
        if self._cache_all and key.startswith(USER_PREFIX):
            self._users.pop(key[len(USER_PREFIX) :].decode(), None)

    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records in order, as :meth:`restore` each would, in one store batch.

        For one key only the last record counts, and records of different keys commute, so the
        batch keeps the last value per key and writes the values together.
        """
        puts: dict[bytes, bytes] = {}
        deletes: set[bytes] = set()
        for key, value in records:
            if key == HEAD_KEY:
                self.restore(key, value)
            elif value is None:
                puts.pop(key, None)
                deletes.add(key)
            else:
                puts[key] = value
                deletes.discard(key)
        for key in deletes:
            self.restore(key, None)
        self.store.put_many(puts)
        if self._cache_all and self._users:
            for key in puts:
                if key.startswith(USER_PREFIX):
                    self._users.pop(key[len(USER_PREFIX) :].decode(), None)

    # -- users ----------------------------------------------------------------------------------
    def user(self, user_id: str) -> UserState | None:
        """Return the user's state, or None if the gate has never seen a consent event for them."""
        state = self._users.get(user_id)
        if state is not None:
            return state
        raw = self.store.get(USER_PREFIX + user_id.encode())
        if raw is None:
            return None
        state = UserState.from_bytes(raw)
        self._users[user_id] = state
        return state

    def user_for_update(self, user_id: str) -> UserState:
        """Return the user's state, created if absent, marked to be written at the next commit."""
        state = self.user(user_id)
        if state is None:
            state = UserState(user_id)
            self._users[user_id] = state
        self._dirty_users.add(user_id)
        return state

    # -- photos ---------------------------------------------------------------------------------
    def photo_owner(self, photo_id: str) -> str | None:
        """Return the owner of a photo known from ``photo.uploads``, or None."""
        raw = self._changes.get(PHOTO_PREFIX + photo_id.encode())
        if raw is None:
            raw = self.store.get(PHOTO_PREFIX + photo_id.encode())
        return None if raw is None else raw.decode()

    def set_photo_owner(self, photo_id: str, owner_id: str) -> None:
        """Record a photo's owner (the first upload of a photo id wins; see the processor)."""
        key = PHOTO_PREFIX + photo_id.encode()
        value = owner_id.encode()
        self._changes[key] = value
        self.store.put(key, value)

    # -- hash chain -----------------------------------------------------------------------------
    @property
    def head(self) -> str:
        """The hash of the last decision on this partition (the next one's ``prev_hash``)."""
        return self._head

    def advance_head(self, new_hash: str) -> None:
        """Move the chain head to the decision just written."""
        self._head = new_hash
        self._changes[HEAD_KEY] = new_hash.encode()

    # -- commit ---------------------------------------------------------------------------------
    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """Return the changelog records made since the last call and apply them to the store."""
        for user_id in self._dirty_users:
            key = USER_PREFIX + user_id.encode()
            value = self._users[user_id].to_bytes()
            self._changes[key] = value
            self.store.put(key, value)
        self._dirty_users.clear()
        if not self._cache_all:
            self._users.clear()
        changes = list(self._changes.items())
        self._changes.clear()
        return changes

    def close(self) -> None:
        """Release the store."""
        self.store.close()
