"""Each user's inputs, held in ``occurred_at`` order while a request waits for the photo index.

A request whose photo's owner is not settled yet (its upload's claims are in flight, or nobody on
this partition uploaded it) is never decided on a guess (CONTRACT §3, photo identity). It is
queued, and so is every later input of the same user (requests, consent changes, erasures), in the
order the event-time merge would have given them: nothing of the user's overtakes it, so a
withdrawal still sees the requests it follows and an erasure the requests before it.

State (in :class:`~streams.gate.state.PartitionState`, so written in the runtime's transactions
and restored from the changelog: a crash neither loses nor repeats a queued input):
``w:<user_id>`` -> the user's queue, oldest first (:func:`park_entry`); ``x:<photo_id>`` -> the
users whose queue waits for that photo's claims.

Release: the index's answer to a lookup (:meth:`UserQueues.answered`) or the settled claims of a
photo (:meth:`UserQueues.wake`) drain the queues concerned: their inputs are processed in order
for as long as the head can be.

**Unknown is not decided on the first "no".** The index can only say that nobody has uploaded the
photo *yet*. A producer's batches to different partitions land in any order, so the upload a
request follows (earlier ``occurred_at``) can be appended after the request, past the merge's
idle limit: decided at once, such a request was ``UNKNOWN_PHOTO`` or not depending on how the
producer's batches happened to land (two gates reading a backlog as it was written decided 92 of
100,000 requests so, where one gate reading it whole decided none). So a request the index does
not know stays at its queue's head, its owner listed in the partition's unsure users, until
either an upload later than the request has been processed on its partition (uploads of a
partition arrive in ``occurred_at`` order, so none before it is still to come) or
``unknown_grace_ms`` of wall clock have passed (the gate's punctuation decides it then) at a
moment when no source of the partition has records still to come: an upload on the broker that
the gate has not been given yet (behind the consumer's prefetch, say) may be the one it waits
for. An upload of the photo meanwhile wakes it like any upload's waiters, and it is decided with
that owner. Only these requests, and their owner's later inputs, wait.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from streams import topics
from streams.core.model import AccessRequest
from streams.core.trust import effective_time
from streams.errors import ConsentinelError, TransientError
from streams.gate import photos
from streams.gate.state import PartitionState
from streams.runtime.records import Output, Processed, RawInput

REQUEST_TOPICS = frozenset({topics.TOPIC_SHARE_REQUESTS, topics.TOPIC_TRAINING_READS})

WAIT = object()
"""What :meth:`UserQueues.photo_owner` returns while the photo index has not answered."""
ERASED = object()
"""What :meth:`UserQueues.photo_owner` returns for a photo the index says is erased."""
UNSURE = object()
"""What :meth:`UserQueues.photo_owner` returns while an upload the index does not know may come."""

Decode = Callable[[RawInput], dict[str, Any]]
RequestOf = Callable[[RawInput, dict[str, Any]], AccessRequest]
Decide = Callable[[AccessRequest, RawInput, PartitionState, int, Any], Processed]
"""Decides a request whose photo owner is known: (request, input, state, effective time, owner)."""
ApplyEvent = Callable[[RawInput, dict[str, Any], PartitionState], Processed]
Refuse = Callable[[RawInput, ConsentinelError], Processed]
"""Dead-letters a waiting event that can no longer be applied (say, under a new policy)."""


class UserQueues:
    """Holds a user's inputs behind a request the photo index must answer, then releases them."""

    def __init__(
        self,
        *,
        decode: Decode,
        request_of: RequestOf,
        decide: Decide,
        apply_event: ApplyEvent,
        refuse: Refuse,
        clock_ms: Callable[[], int],
        unknown_grace_ms: int = 2_000,
    ) -> None:
        self.clock_ms = clock_ms
        self.unknown_grace_ms = unknown_grace_ms
        self.decode = decode
        self.request_of = request_of
        self.decide = decide
        self.apply_event = apply_event
        self.refuse = refuse
        self.partitions = 0
        """The input topics' partition count (where lookups go); set by the processor."""

    def arrive(self, request: AccessRequest, raw: RawInput, state: PartitionState) -> Processed:
        """Decide a request now, or queue it (and what follows for its owner) until it can be."""
        effective_at = effective_time(request.occurred_at_ms, state.stream_time)
        if not state.queue(request.owner_id):
            owner = self.photo_owner({}, request, state)
            if owner is not WAIT:
                return self.decide(request, raw, state, effective_at, owner)
        self._enqueue(
            request.owner_id,
            raw,
            effective_at,
            state,
            photo=request.photo_id,
            occurred_at=request.occurred_at_ms,
        )
        return self.drain(request.owner_id, state)

    def event(self, raw: RawInput, record: dict[str, Any], state: PartitionState) -> Processed:
        """Apply a consent change or erasure now, or after the user's waiting requests."""
        user = record.get("user_id")
        if isinstance(user, str) and state.queue(user):
            at = record["occurred_at"]
            self._enqueue(user, raw, at, state, occurred_at=at)
            return self.drain(user, state)  # it may now come first: it happened earlier
        return self.apply_event(raw, record, state)

    def answered(
        self,
        photo_id: str,
        asker: str,
        first: str | None,
        state: PartitionState,
        *,
        erased: bool = False,
    ) -> Processed:
        """Apply the index's answer to the asker's lookup of a photo, then drain their queue.

        What this partition settled meanwhile (an upload of the photo here) wins over the answer.
        """
        entries = state.queue(asker)
        found = state.photo_status(photo_id)
        if found is not None and not found[0].pending:
            first, erased = found[0].effective_owner, found[0].erased
        unknown = first is None and not erased
        for entry in entries:
            if entry.get("photo") == photo_id and "answered" not in entry:
                entry["answered"], entry["owner"] = True, None if erased else first
                if erased:
                    entry["erased"] = True
                if unknown:
                    entry["until"] = self.clock_ms() + self.unknown_grace_ms
        state.set_queue(asker, entries)
        if unknown and asker not in state.waiters(photo_id):
            state.set_waiters(photo_id, [*state.waiters(photo_id), asker])  # its upload wakes it
        return self.drain(asker, state)

    def release_unsure(self, state: PartitionState, now_ms: int | None = None) -> Processed:
        """Drain the unsure users whose wait is over.

        Over when an upload later than their request was processed here, or (``now_ms``, the
        punctuation's wall clock) when their grace has passed.
        """
        unsure = state.unsure()
        if not unsure:
            return Processed()
        upload_time = state.upload_time
        due = [
            user
            for user, (at, until) in unsure.items()
            if (upload_time is not None and upload_time > at)
            or (now_ms is not None and now_ms >= until)
        ]
        if not due:
            return Processed()
        return _merged([self.drain(user, state, now_ms) for user in due])

    def wake(
        self, photo_id: str, asker: str, state: PartitionState, *, forgotten: bool = False
    ) -> Processed:
        """Drain the queues of the uploader and of every user waiting for a settled photo.

        ``forgotten``: the photo was erased while its claims were in flight; those who waited
        for them ask the index instead (it answers that the photo is erased).
        """
        waiting = state.waiters(photo_id)
        state.set_waiters(photo_id, [])
        users = list(dict.fromkeys([asker, *waiting]))
        if forgotten:
            for user in users:
                entries = state.queue(user)
                for entry in entries:
                    if entry.get("photo") == photo_id and "answered" not in entry:
                        entry.pop("asked", None)
                state.set_queue(user, entries)
        return _merged([self.drain(user, state) for user in users])

    def drain(self, user: str, state: PartitionState, now_ms: int | None = None) -> Processed:
        """Process the user's waiting inputs, in order, for as long as the head can be.

        ``now_ms``: the punctuation's wall clock (an unsure head whose grace has passed is
        decided ``UNKNOWN_PHOTO``); otherwise only an upload later than it ends its wait.
        """
        entries = state.queue(user)
        outputs: list[Output] = []
        decisions = []
        unsure = False
        while entries:
            entry = entries[0]
            raw, effective_at = unpark_entry(entry)
            record = self.decode(raw)
            if raw.topic in REQUEST_TOPICS:
                request = self.request_of(raw, record)
                owner = self.photo_owner(entry, request, state, now_ms)
                if owner is UNSURE:
                    unsure = True
                    break
                if owner is WAIT:
                    if not entry.get("asked"):
                        entry["asked"] = True
                        if state.photo_status(request.photo_id) is None:
                            # nobody here uploaded it: ask the index who did
                            outputs.append(photos.lookup(request.photo_id, user, self.partitions))
                        else:  # its claims are in flight: wake this user when they are settled
                            state.set_waiters(
                                request.photo_id, [*state.waiters(request.photo_id), user]
                            )
                    break
                done = self.decide(request, raw, state, effective_at, owner)
                decisions.append(done.facts)
                if "until" in entry:  # it waited for an upload: stop waiting for it
                    waiting = state.waiters(request.photo_id)
                    if user in waiting:
                        state.set_waiters(request.photo_id, [u for u in waiting if u != user])
            else:
                try:
                    done = self.apply_event(raw, record, state)
                except TransientError:
                    raise
                except ConsentinelError as exc:  # its dead letter takes its place in the queue
                    done = self.refuse(raw, exc)
            outputs += done.outputs
            entries.pop(0)
        state.set_queue(user, entries)
        self._mark_unsure(user, entries[0] if unsure else None, state)
        return Processed(outputs, facts=decisions or None)

    @staticmethod
    def _mark_unsure(user: str, head: dict[str, Any] | None, state: PartitionState) -> None:
        """List the user among the partition's unsure users while ``head`` is unsure, else not."""
        unsure = state.unsure()
        if head is None:
            if user in unsure:
                state.set_unsure({u: wait for u, wait in unsure.items() if u != user})
            return
        wait = [int(head["at"]), int(head["until"])]
        if unsure.get(user) != wait:
            state.set_unsure({**unsure, user: wait})

    def photo_owner(
        self,
        entry: dict[str, Any],
        request: AccessRequest,
        state: PartitionState,
        now_ms: int | None = None,
    ) -> str | object | None:
        """Return the owner to check ``request`` against, or :data:`WAIT` while it is not known.

        :data:`ERASED` when the photo index says the photo is an erased one (or a copy of one);
        :data:`UNSURE` while the index knows no upload of it and one may still come (module doc).
        """
        ledger = state.ledger(request.owner_id)
        if ledger is not None and ledger.is_erased(request.photo_id):
            return None  # decided ERASED whoever owns it
        if "answered" in entry:
            if entry.get("erased"):
                return ERASED
            owner: str | None = entry["owner"]
            if owner is not None or "until" not in entry:
                return owner
            # the index knew no upload of it: what this partition learnt since wins
            found = state.photo_status(request.photo_id)
            if found is not None:
                if found[0].pending:
                    return WAIT
                return ERASED if found[0].erased else found[0].effective_owner
            upload_time = state.upload_time
            if upload_time is not None and upload_time > request.occurred_at_ms:
                return None
            if now_ms is not None and now_ms >= entry["until"]:
                return None
            return UNSURE
        found = state.photo_status(request.photo_id)
        if found is None or found[0].pending:
            return WAIT
        return ERASED if found[0].erased else found[0].effective_owner

    @staticmethod
    def _enqueue(
        user: str,
        raw: RawInput,
        effective_at: int,
        state: PartitionState,
        photo: str | None = None,
        *,
        occurred_at: int,
    ) -> None:
        """Queue one input among the user's waiting ones, in order of ``occurred_at``.

        As the event-time merge would have ordered them: a consent change that happened before a
        waiting request but arrived after it (another topic, fetched later) still comes first.
        """
        entry = park_entry(raw, effective_at)
        entry["at"] = occurred_at
        if photo is not None:
            entry["photo"] = photo
        entries = state.queue(user)
        index = next(
            (
                i
                for i, queued in enumerate(entries)
                if queued.get("at", queued["eff"]) > occurred_at
            ),
            len(entries),
        )
        entries.insert(index, entry)
        state.set_queue(user, entries)


def _merged(drained: list[Processed]) -> Processed:
    """Return what draining several users' queues produced, as one result."""
    return Processed(
        [output for done in drained for output in done.outputs],
        facts=[fact for done in drained for fact in (done.facts or [])] or None,
    )


def park_entry(raw: RawInput, effective_at_ms: int) -> dict[str, Any]:
    """Return what is kept of a queued input to process it later exactly as now."""
    return {
        "topic": raw.topic,
        "partition": raw.partition,
        "offset": raw.offset,
        "ts": raw.timestamp_ms,
        "key": None if raw.key is None else base64.b64encode(raw.key).decode(),
        "value": None if raw.value is None else base64.b64encode(raw.value).decode(),
        "eff": effective_at_ms,
    }


def unpark_entry(entry: dict[str, Any]) -> tuple[RawInput, int]:
    """Return a queued input and its effective time."""
    raw = RawInput(
        topic=entry["topic"],
        partition=entry["partition"],
        offset=entry["offset"],
        timestamp_ms=entry["ts"],
        key=None if entry["key"] is None else base64.b64decode(entry["key"]),
        value=None if entry["value"] is None else base64.b64decode(entry["value"]),
    )
    return raw, int(entry["eff"])
