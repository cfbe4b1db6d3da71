"""The gate's state for one partition: users' consent state, photo owners, the hash-chain head.

The compacted changelog topic is the source of truth; this object is its local materialisation
(restored on assignment) plus the changes made since the last commit. ``take_changes`` hands those
changes to the runner, which writes them to the changelog in the same transaction as the decisions
they led to, so state and outputs can never disagree after a crash.

Changelog keys (one partition of the changelog per input partition number):
``u:<user_id>`` -> :class:`~streams.core.consent.UserState` bytes; ``l:<user_id>`` -> the user's
:class:`~streams.core.recall.RecallLedger` (what left, to whom, and erasure tombstones);
``p:<photo_id>`` -> the photo's owner, ownership status and content hash
(:mod:`streams.gate.photos`); ``P:<user_id>`` -> the user's photo ids, one per line;
``I:<id:photo|sha:hash>`` -> the first uploader, or ``0xff`` once erased (this partition's share
of the photo index); ``w:<user_id>`` -> the user's inputs waiting (in order) behind a request the
index must answer; ``x:<photo_id>`` -> the users waiting for that photo's claims (both kept by
:mod:`streams.gate.user_queues`);
``e:<event_id>`` -> ``<digest>:<append time>`` of an input seen recently (duplicate detection);
``h`` -> the hex hash of the last decision written on this partition; ``n`` -> how many decisions
the partition's chain holds; ``t`` -> the partition's stream time (greatest ``occurred_at`` seen);
``T`` -> its upload time (greatest ``occurred_at`` of an upload seen); ``U`` -> the users whose
queue waits to be sure a photo the index does not know was never uploaded (JSON, user -> the
request's ``occurred_at`` and the wall-clock deadline; see :mod:`streams.gate.user_queues`).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from streams.core.audit import GENESIS_HASH
from streams.core.consent import UserState
from streams.core.recall_ledger import RecallLedger
from streams.gate.photos import (
    ERASED_ENTRY,
    INDEX_PREFIX,
    PHOTO_PREFIX,
    PhotoStatus,
    decode_status,
    encode_status,
)
from streams.runtime.stores import KeyValueStore

USER_PREFIX = b"u:"
HEAD_KEY = b"h"
LEDGER_PREFIX = b"l:"
USER_PHOTOS_PREFIX = b"P:"
SEEN_PREFIX = b"e:"
PARKED_PREFIX = b"w:"
WAITERS_PREFIX = b"x:"
COUNT_KEY = b"n"
STREAM_TIME_KEY = b"t"
UPLOAD_TIME_KEY = b"T"
UNSURE_KEY = b"U"
_REMEMBERED = (HEAD_KEY, COUNT_KEY, STREAM_TIME_KEY, UPLOAD_TIME_KEY, UNSURE_KEY)
"""Keys held in memory (and written to the store at each commit), not read from the store."""


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
        self._count = 0
        self._stream_time: int | None = None
        self._upload_time: int | None = None
        self._unsure: dict[str, list[int]] = {}
        self._ledgers: dict[str, RecallLedger] = {}
        self._dirty_ledgers: set[str] = set()
        self._seen: dict[str, tuple[str, int]] = {}
        self._seen_order: deque[tuple[int, str]] = deque()
        self._load_kept()

    def _load_kept(self) -> None:
        """Take the chain head, count, stream time and recent inputs from a kept store.

        A store kept across restarts (:class:`~streams.runtime.kept_store.KeptStore`) already
        holds the partition's state up to its changelog offset, these keys included; an empty
        store (every memory store) holds none of them.
        """
        for key in _REMEMBERED:
            value = self.store.get(key)
            if value is not None:
                self._remember(key, value)
        seen = [(key, value) for key, value in self.store.items(SEEN_PREFIX)]
        if seen:
            for key, value in sorted(seen, key=lambda entry: int(entry[1].rpartition(b":")[2])):
                self._restore_seen(key, value)

    # -- restore --------------------------------------------------------------------------------
    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (``None`` is a tombstone) while restoring."""
        if self._remember(key, value):
            if not self._cache_all:  # a memory store is never reopened: no second copy there
                self._keep(key, value)
        else:
            self._restore_stored(key, value)

    def _remember(self, key: bytes, value: bytes | None) -> bool:
        """Apply a record of a key held in memory; False when ``key`` is not one of those."""
        if key == HEAD_KEY:
            self._head = value.decode() if value else GENESIS_HASH
        elif key == COUNT_KEY:
            self._count = int(value) if value else 0
        elif key == STREAM_TIME_KEY:
            self._stream_time = int(value) if value else None
        elif key == UPLOAD_TIME_KEY:
            self._upload_time = int(value) if value else None
        elif key == UNSURE_KEY:
            self._unsure = json.loads(value) if value else {}
        elif key.startswith(SEEN_PREFIX):
            self._restore_seen(key, value)
        else:
            return False
        return True

    def _keep(self, key: bytes, value: bytes | None) -> None:
        """Write a key the state also holds in memory to the store (a kept store reloads it)."""
        if value is None:
            self.store.delete(key)
        else:
            self.store.put(key, value)

    def _restore_stored(self, key: bytes, value: bytes | None) -> None:
        if key.startswith(LEDGER_PREFIX):
            self._ledgers.pop(key[len(LEDGER_PREFIX) :].decode(), None)
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
            if key in _REMEMBERED or key.startswith(SEEN_PREFIX):
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
        if self._users or self._ledgers:
            for key in puts:
                if key.startswith(USER_PREFIX):
                    self._users.pop(key[len(USER_PREFIX) :].decode(), None)
                elif key.startswith(LEDGER_PREFIX):
                    self._ledgers.pop(key[len(LEDGER_PREFIX) :].decode(), None)

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
        """Return the owner requests for a known photo are checked against, or None.

        That is the first uploader across all partitions once the photo index has answered; a
        photo still pending, or erased in the index, has none here (see :meth:`photo_status`).
        """
        found = self.photo_status(photo_id)
        if found is None or found[0].pending or found[0].erased:
            return None
        return found[0].effective_owner

    def photo_status(self, photo_id: str) -> tuple[PhotoStatus, int] | None:
        """Return what this partition knows of a photo and its claims outstanding, or None."""
        raw = self.store.get(PHOTO_PREFIX + photo_id.encode())
        return None if raw is None else decode_status(raw)

    def set_photo_status(self, photo_id: str, status: PhotoStatus, outstanding: int = 0) -> None:
        """Record a photo's status (a new one joins its uploader's photo list)."""
        key = PHOTO_PREFIX + photo_id.encode()
        if self.store.get(key) is None:
            photos_key = USER_PHOTOS_PREFIX + status.owner.encode()
            photos = self.store.get(photos_key)
            joined = photo_id.encode() if not photos else photos + b"\n" + photo_id.encode()
            self._put(photos_key, joined)
        self._put(key, encode_status(status, outstanding))

    def set_photo_owner(self, photo_id: str, owner_id: str) -> None:
        """Record a photo as owned by ``owner_id`` (settled, e.g. by tests and tools)."""
        self.set_photo_status(photo_id, PhotoStatus(owner_id))

    # -- the photo index (this partition's share of photo ids and content hashes) --------------
    def index_claim(self, key: str) -> tuple[str | None, bool]:
        """Return an index key's first claimant (None if none) and whether the key is erased.

        Keys are ``id:<photo_id>`` and ``sha:<content hash>``; an erased key names nobody.
        """
        raw = self.store.get(INDEX_PREFIX + key.encode())
        if raw is None or raw == ERASED_ENTRY:
            return None, raw is not None
        return raw.decode(), False

    def set_index_owner(self, key: str, owner_id: str) -> None:
        """Record the first claimant of an index key."""
        self._put(INDEX_PREFIX + key.encode(), owner_id.encode())

    def erase_index_entry(self, key: str) -> None:
        """Replace an index key's entry by the erased one (it names nobody, refuses claims)."""
        self._put(INDEX_PREFIX + key.encode(), ERASED_ENTRY)

    # -- a user's inputs waiting for the photo index ----------------------------------------
    def queue(self, user_id: str) -> list[dict[str, Any]]:
        """Return the user's inputs waiting behind a request the photo index must answer."""
        raw = self.store.get(PARKED_PREFIX + user_id.encode())
        return [] if raw is None else list(json.loads(raw))

    def set_queue(self, user_id: str, entries: list[dict[str, Any]]) -> None:
        """Replace the user's waiting inputs (an empty list forgets them)."""
        key = PARKED_PREFIX + user_id.encode()
        if entries:
            self._put(key, json.dumps(entries, separators=(",", ":")).encode())
        elif self.store.get(key) is not None:
            self._tombstone(key)

    def waiters(self, photo_id: str) -> list[str]:
        """Return the users whose waiting inputs wait for this (pending) photo's claims."""
        raw = self.store.get(WAITERS_PREFIX + photo_id.encode())
        return raw.decode().split("\n") if raw else []

    def set_waiters(self, photo_id: str, users: list[str]) -> None:
        """Replace the users waiting for a photo (an empty list forgets them)."""
        key = WAITERS_PREFIX + photo_id.encode()
        if users:
            self._put(key, "\n".join(users).encode())
        elif self.store.get(key) is not None:
            self._tombstone(key)

    def user_photos(self, user_id: str) -> list[str]:
        """Return the ids of the photos the user uploaded (and that are not forgotten)."""
        raw = self.store.get(USER_PHOTOS_PREFIX + user_id.encode())
        return raw.decode().split("\n") if raw else []

    def forget_photo(self, photo_id: str, owner_id: str | None = None) -> None:
        """Forget a photo's record (an erasure), and drop it from ``owner_id``'s photo list."""
        self._tombstone(PHOTO_PREFIX + photo_id.encode())
        if owner_id is None:
            return
        kept = [other for other in self.user_photos(owner_id) if other != photo_id]
        photos_key = USER_PHOTOS_PREFIX + owner_id.encode()
        if kept:
            self._put(photos_key, "\n".join(kept).encode())
        elif self.store.get(photos_key) is not None:
            self._tombstone(photos_key)

    def delete_user(self, user_id: str) -> None:
        """Forget the user's consent state and photos (an account erasure)."""
        self._users.pop(user_id, None)
        self._dirty_users.discard(user_id)
        self._tombstone(USER_PREFIX + user_id.encode())
        for photo_id in self.user_photos(user_id):
            self.forget_photo(photo_id)
        self._tombstone(USER_PHOTOS_PREFIX + user_id.encode())

    # -- recall ledgers -------------------------------------------------------------------------
    def ledger(self, user_id: str) -> RecallLedger | None:
        """Return the user's recall ledger, or None if nothing of theirs ever left or was erased."""
        ledger = self._ledgers.get(user_id)
        if ledger is not None:
            return ledger
        raw = self.store.get(LEDGER_PREFIX + user_id.encode())
        if raw is None:
            return None
        ledger = RecallLedger.from_bytes(raw)
        self._ledgers[user_id] = ledger
        return ledger

    def ledger_for_update(self, user_id: str) -> RecallLedger:
        """Return the user's ledger, created if absent, marked to be written at the next commit."""
        ledger = self.ledger(user_id)
        if ledger is None:
            ledger = self._ledgers[user_id] = RecallLedger(user_id)
        self._dirty_ledgers.add(user_id)
        return ledger

    # -- duplicates -----------------------------------------------------------------------------
    def seen(self, event_id: str) -> str | None:
        """Return the content digest of an input with ``event_id`` seen recently, or None."""
        entry = self._seen.get(event_id)
        return None if entry is None else entry[0]

    def remember(self, event_id: str, digest: str, at_ms: int) -> None:
        """Remember an input's id and content digest (appended at ``at_ms``) for a while."""
        self._seen[event_id] = (digest, at_ms)
        self._seen_order.append((at_ms, event_id))
        self._put(SEEN_PREFIX + event_id.encode(), f"{digest}:{at_ms}".encode())

    def expire_seen(self, before_ms: int) -> None:
        """Forget the inputs appended before ``before_ms``."""
        order = self._seen_order
        while order and order[0][0] < before_ms:
            at_ms, event_id = order.popleft()
            entry = self._seen.get(event_id)
            if entry is not None and entry[1] == at_ms:
                del self._seen[event_id]
                self._tombstone(SEEN_PREFIX + event_id.encode())

    def _restore_seen(self, key: bytes, value: bytes | None) -> None:
        event_id = key[len(SEEN_PREFIX) :].decode()
        if value is None:
            self._seen.pop(event_id, None)
            return
        digest, _, at = value.decode().rpartition(":")
        self._seen[event_id] = (digest, int(at))
        self._seen_order.append((int(at), event_id))

    # -- stream time ----------------------------------------------------------------------------
    @property
    def stream_time(self) -> int | None:
        """The greatest ``occurred_at`` processed on this partition (None before any)."""
        return self._stream_time

    def advance_stream_time(self, occurred_at_ms: int) -> None:
        """Move the stream time forward to ``occurred_at_ms`` if it is later."""
        if self._stream_time is None or occurred_at_ms > self._stream_time:
            self._stream_time = occurred_at_ms
            self._changes[STREAM_TIME_KEY] = str(occurred_at_ms).encode()

    @property
    def upload_time(self) -> int | None:
        """The greatest ``occurred_at`` of an upload processed on this partition (None before)."""
        return self._upload_time

    def advance_upload_time(self, occurred_at_ms: int) -> None:
        """Move the upload time forward to ``occurred_at_ms`` if it is later."""
        if self._upload_time is None or occurred_at_ms > self._upload_time:
            self._upload_time = occurred_at_ms
            self._changes[UPLOAD_TIME_KEY] = str(occurred_at_ms).encode()

    # -- requests for a photo the index does not know -------------------------------------------
    def unsure(self) -> dict[str, list[int]]:
        """Users whose queue head waits to be sure its photo was never uploaded → [at, until]."""
        return self._unsure

    def set_unsure(self, users: dict[str, list[int]]) -> None:
        """Replace the unsure users (an empty dict forgets them)."""
        self._unsure = users
        self._changes[UNSURE_KEY] = json.dumps(users, separators=(",", ":")).encode()

    def _put(self, key: bytes, value: bytes) -> None:
        self._changes[key] = value
        self.store.put(key, value)

    def _tombstone(self, key: bytes) -> None:
        self._changes[key] = None
        self.store.delete(key)

    # -- hash chain -----------------------------------------------------------------------------
    @property
    def head(self) -> str:
        """The hash of the last decision on this partition (the next one's ``prev_hash``)."""
        return self._head

    @property
    def decisions(self) -> int:
        """How many decisions this partition's chain holds."""
        return self._count

    def advance_head(self, new_hash: str) -> None:
        """Move the chain head to the decision just written."""
        self._head = new_hash
        self._count += 1
        self._changes[HEAD_KEY] = new_hash.encode()
        self._changes[COUNT_KEY] = str(self._count).encode()

    # -- commit ---------------------------------------------------------------------------------
    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """Return the changelog records made since the last call and apply them to the store.

        Stores are written as changes are made; a transaction that aborts is undone by restoring
        the partition again from its changelog (the runtime's rewind), or, for a kept store, by
        dropping the store's uncommitted writes and reopening this state over it.
        """
        for user_id in self._dirty_users:
            key = USER_PREFIX + user_id.encode()
            value = self._users[user_id].to_bytes()
            self._changes[key] = value
            self.store.put(key, value)
        self._dirty_users.clear()
        for user_id in self._dirty_ledgers:
            self._put(LEDGER_PREFIX + user_id.encode(), self._ledgers[user_id].to_bytes())
        self._dirty_ledgers.clear()
        if not self._cache_all:
            self._users.clear()
            self._ledgers.clear()
        for key in _REMEMBERED:  # the others are in the store already
            kept = self._changes.get(key)
            if kept is not None:
                self.store.put(key, kept)
        changes = list(self._changes.items())
        self._changes.clear()
        return changes

    def close(self) -> None:
        """Release the store."""
        self.store.close()
