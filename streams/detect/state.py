"""The detectors' partition state: live detector states, written to the changelog per commit.

Stage 2 of the detectors keeps, per subject, the pure detectors' state objects
(:mod:`streams.detect.core`). Keys: ``b:<recipient>`` bulk export, ``r:<recipient>`` the
recipient's denial burst, ``q:<actor>`` the requester's denial burst, ``j:<actor>`` the job's
unconsented training (each a :class:`Tracked`), and ``m:<actor>`` the job's model (a string).

:class:`DetectorState` hands out the *live* objects: a subject's state is decoded once, changed
in place by every decision that follows, and encoded (JSON) once per transaction, when the
runtime takes the changelog records before its commit. After an abort the runtime rebuilds the
whole partition state from the changelog, so an uncommitted change never outlives its
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.detect.core.pipeline import DetectorSet
from streams.detect.core.unconsented_training import TrainingJobState
from streams.detect.recalls import RecallState
from streams.runtime.stores import KeyValueStore

_JSON = json.JSONEncoder(separators=(",", ":"))

BULK, RECIPIENT_BURST, REQUESTER_BURST, JOB, MODEL = "b:", "r:", "q:", "j:", "m:"
"""Key prefixes of the detector state (see the module's docstring)."""

LIVE_LIMIT = 20_000
"""Above this many decoded subjects, a commit drops the clean ones (they are decoded again)."""


@dataclass(slots=True)
class Tracked:
    """One subject's detector state and the last source offset applied to it, per partition.

    A forwarded decision whose source offset is not beyond the last one applied is a replay
    and is not counted again (:meth:`seen`).
    """

    state: Any
    src: dict[str, int] = field(default_factory=dict)

    def seen(self, src: Sequence[int] | None) -> bool:
        """Whether the forwarded copy from source ``[partition, offset]`` was applied already."""
        if not src:
            return False
        last = self.src.get(str(src[0]))
        return last is not None and src[1] <= last

    def note(self, src: Sequence[int] | None) -> None:
        """Record that the copy from ``[partition, offset]`` is applied."""
        if src:
            self.src[str(src[0])] = src[1]

    def to_json(self) -> dict[str, Any]:
        """Return the stored (JSON-able) form: ``{"src": ..., "state": ...}``."""
        return {"src": self.src, "state": self.state.to_dict()}


class StateCodec:
    """Turns stored JSON values into live detector states by key prefix, and back."""

    def __init__(self, detectors: DetectorSet) -> None:
        loaders: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            BULK: detectors.bulk.load,
            RECIPIENT_BURST: detectors.bursts.load,
            REQUESTER_BURST: detectors.bursts.load,
            JOB: TrainingJobState.from_dict,
        }
        self._loaders = loaders

    def load(self, key: str, data: Any) -> Any:
        """Return the live value of ``key`` from its stored JSON form (None stays None)."""
        if data is None:
            return None
        loader = self._loaders.get(key[:2])
        if loader is None:
            return data  # a plain JSON value (a job's model)
        return Tracked(loader(data["state"]), {str(p): int(o) for p, o in data["src"].items()})

    @staticmethod
    def dump(value: Any) -> Any:
        """Return the stored JSON form of a live value."""
        return value.to_json() if isinstance(value, Tracked) else value


class DetectorState:
    """A partition's detector state over its store; recall orders share the store."""

    def __init__(self, store: KeyValueStore, codec: StateCodec) -> None:
        self.store = store
        self.codec = codec
        self.recalls = RecallState(store)
        self._live: dict[str, Any] = {}
        self._dirty: set[str] = set()

    def get(self, key: str) -> Any:
        """Return the live value of ``key`` (None if absent); after changing it, :meth:`put` it."""
        live = self._live
        if key in live:
            return live[key]
        raw = self.store.get(key.encode())
        value = None if raw is None else self.codec.load(key, json.loads(raw))
        live[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` for the next commit; None deletes it (a changelog tombstone)."""
        self._live[key] = value
        self._dirty.add(key)

    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records in order."""
        puts: dict[bytes, bytes] = {}
        for key, value in records:
            if value is None:
                puts.pop(key, None)
                self.store.delete(key)
            else:
                puts[key] = value
        self.store.put_many(puts)
        self._live.clear()
        self._dirty.clear()
        self.recalls.invalidate()

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        """Return the changelog records of the changes since the last call, applied to the store."""
        changes: list[tuple[bytes, bytes | None]] = []
        store, live, dump = self.store, self._live, self.codec.dump
        for key in self._dirty:
            raw_key = key.encode()
            value = live[key]
            if value is None:
                if store.get(raw_key) is None:
                    continue  # never stored: nothing to delete
                store.delete(raw_key)
                changes.append((raw_key, None))
            else:
                raw = _JSON.encode(dump(value)).encode()
                store.put(raw_key, raw)
                changes.append((raw_key, raw))
        self._dirty.clear()
        for order_key, order in self.recalls.changes.items():
            if order is None:
                store.delete(order_key)
            else:
                store.put(order_key, order)
            changes.append((order_key, order))
        self.recalls.changes.clear()
        if len(live) > LIVE_LIMIT:
            live.clear()
        return changes

    def close(self) -> None:
        """Release the store."""
        self.store.close()
