"""One user's consent history and the accesses the gate allowed on the strength of it.

Consent events reach the gate on their own topic and may arrive after requests they predate, so
the gate keeps each user's *full* consent history and answers "what was in force at time t" rather
than "what is the latest". Consent changes are rare (a handful per user per purpose over years), so
an unbounded per-user history stays small; nothing is ever dropped from it, because a late request
may ask about any past moment.

Ordering: records are ordered by ``occurred_at``; at the same millisecond a withdrawal sorts
after a grant (fail closed: a simultaneous withdrawal wins), then by ``event_id`` -- a total,
deterministic order independent of arrival order.

:class:`UserState` bundles the history with an :class:`AllowedAccessLog` (the newest
:data:`MAX_ALLOWED_ACCESSES` consent-based ALLOWs, by ``occurred_at``) and serializes to compact
JSON bytes for the gate's compacted changelog. A withdrawal that arrives late is checked against
that log to find accesses it would have denied (``RETROACTIVE_VIOLATION``); an allowed access older
than the newest 1000 of its user is no longer checked.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from streams.core.model import ConsentRecord, DataCategory, Decision, Purpose
from streams.errors import SerdeError

MAX_ALLOWED_ACCESSES = 1000
"""How many allowed accesses are kept per user for retroactive-violation checks."""

STATE_FORMAT = 1
"""Version of the serialized :class:`UserState` layout; bumped on incompatible change."""

_occurred = attrgetter("occurred_at_ms")


def order_key(record: ConsentRecord) -> tuple[int, bool, str]:
    """Return the total order of consent records: time, then withdrawal after grant, then id."""
    return (record.occurred_at_ms, not record.granted, record.event_id)


class ConsentHistory:
    """All consent records of one user, queryable as of any moment. Idempotent per ``event_id``."""

    __slots__ = ("_by_id", "_by_purpose", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._by_id: dict[str, ConsentRecord] = {}
        self._by_purpose: dict[Purpose, list[ConsentRecord]] = {}

    def add(self, record: ConsentRecord) -> bool:
        """Add ``record`` in whatever order it arrives; return ``False`` if its id was seen already.

        A second record with a known ``event_id`` is ignored even if its content differs (the
        event id is the idempotency key). Raises ``ValueError`` for another user's record.
        """
        if record.user_id != self.user_id:
            raise ValueError(
                f"consent {record.event_id} is for user {record.user_id!r}, not {self.user_id!r}"
            )
        if record.event_id in self._by_id:
            return False
        self._by_id[record.event_id] = record
        insort(self._by_purpose.setdefault(record.purpose, []), record, key=order_key)
        return True

    def latest_matching(
        self, purpose: Purpose, recipient_org: str, at_ms: int
    ) -> ConsentRecord | None:
        """Return the record in force for ``purpose`` and ``recipient_org`` at ``at_ms``.

        That is the latest record (in the order above) with this purpose, whose ``recipient_org`` is
        ``None`` (any recipient) or equal to ``recipient_org``, and whose ``occurred_at`` is not
        later than ``at_ms``; ``None`` if there is none.
        """
        records = self._by_purpose.get(purpose)
        if not records:
            return None
        index = bisect_right(records, at_ms, key=_occurred)
        while index:
            index -= 1
            record = records[index]
            if record.recipient_org is None or record.recipient_org == recipient_org:
                return record
        return None

    def get(self, event_id: str) -> ConsentRecord | None:
        """Return the record with ``event_id``, if known."""
        return self._by_id.get(event_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[ConsentRecord]:
        """Iterate over all records, purpose by purpose, each in order."""
        for records in self._by_purpose.values():
            yield from records

    def to_data(self) -> list[list[Any]]:
        """Return the records as compact JSON-able rows (see :meth:`from_data`)."""
        return [
            [
                r.event_id,
                r.occurred_at_ms,
                r.purpose.value,
                r.recipient_org,
                sorted(c.value for c in r.categories),
                1 if r.granted else 0,
                r.notice_version,
                r.expires_at_ms,
            ]
            for r in self
        ]

    @classmethod
    def from_data(cls, user_id: str, rows: list[list[Any]]) -> ConsentHistory:
        """Rebuild a history from :meth:`to_data` rows."""
        history = cls(user_id)
        for event_id, occurred, purpose, recipient, cats, granted, notice, expires in rows:
            history.add(
                ConsentRecord(
                    event_id=event_id,
                    user_id=user_id,
                    occurred_at_ms=occurred,
                    purpose=Purpose(purpose),
                    recipient_org=recipient,
                    categories=frozenset(DataCategory(c) for c in cats),
                    granted=bool(granted),
                    notice_version=notice,
                    expires_at_ms=expires,
                )
            )
        return history


@dataclass(frozen=True, slots=True)
class AllowedAccess:
    """A consent-based request the gate allowed: what a late withdrawal might retroactively deny."""

    decision_id: str
    subject_event_id: str
    occurred_at_ms: int
    purpose: Purpose
    recipient_org: str
    consent_event_id: str | None

    @classmethod
    def of(cls, decision_id: str, decision: Decision) -> AllowedAccess:
        """Return the access that an allowed, consent-based ``decision`` records."""
        request = decision.request
        return cls(
            decision_id=decision_id,
            subject_event_id=request.event_id,
            occurred_at_ms=request.occurred_at_ms,
            purpose=request.purpose,
            recipient_org=request.recipient_org,
            consent_event_id=decision.consent_event_id,
        )


def _matches(access: AllowedAccess, withdrawal: ConsentRecord) -> bool:
    return (
        access.purpose is withdrawal.purpose
        and access.consent_event_id is not None
        and (withdrawal.recipient_org is None or withdrawal.recipient_org == access.recipient_org)
    )


class AllowedAccessLog:
    """The newest ``max_entries`` allowed accesses of one user, by ``occurred_at``.

    Idempotent per ``decision_id`` (one per input record, the same when replayed): two inputs
    that carry the same ``event_id`` are two accesses (CONTRACT §3, "Duplicates").
    When full, the access with the oldest ``occurred_at`` is evicted.
    """

    __slots__ = ("_decisions", "_entries", "max_entries")

    def __init__(self, max_entries: int = MAX_ALLOWED_ACCESSES) -> None:
        self.max_entries = max_entries
        self._entries: list[AllowedAccess] = []
        self._decisions: set[str] = set()

    def add(self, access: AllowedAccess) -> bool:
        """Record ``access``; return whether it is now held (not a duplicate, not evicted)."""
        if access.decision_id in self._decisions:
            return False
        insort(self._entries, access, key=_access_key)
        self._decisions.add(access.decision_id)
        if len(self._entries) > self.max_entries:
            evicted = self._entries.pop(0)
            self._decisions.discard(evicted.decision_id)
            return evicted is not access
        return True

    def violated_by(self, withdrawal: ConsentRecord) -> list[AllowedAccess]:
        """Return the held accesses ``withdrawal`` would have denied, oldest first.

        Those relied on consent, have the withdrawal's purpose, a recipient the withdrawal covers
        (``recipient_org`` ``None`` covers any), and occurred at or after the withdrawal (a request
        at the withdrawal's very millisecond sees it, as in evaluation). Empty for a grant. This
        does not know whether a newer grant supersedes the withdrawal; :meth:`UserState.violated_by`
        does.
        """
        if withdrawal.granted:
            return []
        start = bisect_left(self._entries, withdrawal.occurred_at_ms, key=_occurred)
        return [a for a in self._entries[start:] if _matches(a, withdrawal)]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[AllowedAccess]:
        return iter(self._entries)


def _access_key(access: AllowedAccess) -> tuple[int, str, str]:
    return (access.occurred_at_ms, access.subject_event_id, access.decision_id)


class UserState:
    """Everything the gate keeps per user: consent history plus allowed accesses."""

    __slots__ = ("allowed", "consents", "user_id")

    def __init__(
        self,
        user_id: str,
        consents: ConsentHistory | None = None,
        allowed: AllowedAccessLog | None = None,
    ) -> None:
        self.user_id = user_id
        self.consents = consents if consents is not None else ConsentHistory(user_id)
        self.allowed = allowed if allowed is not None else AllowedAccessLog()

    def apply_consent(self, record: ConsentRecord) -> list[AllowedAccess]:
        """Add a consent record; return the allowed accesses it retroactively violates.

        Empty for a grant and for a duplicate event (so a replay raises no second alert).
        """
        if not self.consents.add(record):
            return []
        return self.violated_by(record)

    def record_allowed(self, access: AllowedAccess) -> bool:
        """Remember a consent-based ALLOW; see :meth:`AllowedAccessLog.add`."""
        return self.allowed.add(access)

    def violated_by(self, withdrawal: ConsentRecord) -> list[AllowedAccess]:
        """Return the held accesses that ``withdrawal`` now shows should have been denied.

        An access qualifies if :meth:`AllowedAccessLog.violated_by` selects it *and* the withdrawal
        is (or, if not yet added, would be) the record in force at the access's ``occurred_at`` --
        so a withdrawal followed by a re-grant before the access is not a violation.
        """
        key = order_key(withdrawal)
        out = []
        for access in self.allowed.violated_by(withdrawal):
            latest = self.consents.latest_matching(
                access.purpose, access.recipient_org, access.occurred_at_ms
            )
            if latest is None or key >= order_key(latest):
                out.append(access)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return the state as compact JSON-able data."""
        return {
            "v": STATE_FORMAT,
            "u": self.user_id,
            "c": self.consents.to_data(),
            "a": [
                [
                    a.decision_id,
                    a.subject_event_id,
                    a.occurred_at_ms,
                    a.purpose.value,
                    a.recipient_org,
                    a.consent_event_id,
                ]
                for a in self.allowed
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserState:
        """Rebuild from :meth:`to_dict` output; raise ``SerdeError`` if it is not such data."""
        try:
            if data.get("v") != STATE_FORMAT:
                raise ValueError(f"unsupported state format {data.get('v')!r}")
            user_id = data["u"]
            state = cls(user_id, ConsentHistory.from_data(user_id, data["c"]))
            for decision_id, subject, occurred, purpose, recipient, consent in data["a"]:
                state.allowed.add(
                    AllowedAccess(
                        decision_id, subject, occurred, Purpose(purpose), recipient, consent
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SerdeError(f"stored user state is unreadable: {exc}") from exc
        return state

    def to_bytes(self) -> bytes:
        """Serialize to compact UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> UserState:
        """Deserialize :meth:`to_bytes` output; raise ``SerdeError`` if it is not such data."""
        try:
            decoded = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerdeError(f"stored user state is not JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise SerdeError("stored user state is not a JSON object")
        return cls.from_dict(decoded)
