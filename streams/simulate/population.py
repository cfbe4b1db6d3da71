"""The simulated app's users, their photos and consents, and the verdict the gate should give.

:func:`predict` mirrors the contract's decision rules (section 3) on the simulator's own model of
what it has emitted, ignoring suspensions (the simulator does not read controls). The simulator
uses it to make realistic choices (a partner sync mostly asks for users who opted in) and to
compute the ground truth: when an injected scenario's volume or denials cross a threshold.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streams.core.model import Purpose
from streams.core.policy import Policy

T = TypeVar("T")

ALLOW = "ALLOW"
DENY = "DENY"


class RandomSet(Generic[T]):
    """A set with O(1) add, discard and uniform random choice."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._index: dict[T, int] = {}

    def add(self, item: T) -> None:
        """Add ``item`` (no-op if present)."""
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        """Remove ``item`` if present."""
        position = self._index.pop(item, None)
        if position is None:
            return
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> T | None:
        """Return a uniformly chosen item, or None if empty."""
        return self._items[rng.randrange(len(self._items))] if self._items else None

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class Grant:
    """The latest consent record for one (purpose, recipient-or-any) of a user."""

    event_id: str
    at_ms: int
    granted: bool
    categories: frozenset[str]
    expires_at_ms: int | None


@dataclass
class User:
    """A simulated user: photos uploaded so far and latest consent per (purpose, recipient)."""

    user_id: str
    photos: list[str] = field(default_factory=list)
    consents: dict[tuple[str, str | None], Grant] = field(default_factory=dict)

    def record(self, purpose: str, recipient: str | None, grant: Grant) -> None:
        """Keep ``grant`` if it is the latest by event time for its key."""
        key = (purpose, recipient)
        current = self.consents.get(key)
        if current is None or grant.at_ms >= current.at_ms:
            self.consents[key] = grant

    def deciding(self, purpose: str, recipient: str, at_ms: int) -> Grant | None:
        """Return the record that decides ``purpose`` for ``recipient`` at ``at_ms`` (rule 3)."""
        candidates = [
            g
            for key in ((purpose, None), (purpose, recipient))
            if (g := self.consents.get(key)) is not None and g.at_ms <= at_ms
        ]
        return max(candidates, key=lambda g: g.at_ms) if candidates else None

    def holds_grant(self, purpose: str) -> bool:
        """Whether any record of ``purpose`` is currently a grant (expiry not checked)."""
        return any(g.granted for (p, _), g in self.consents.items() if p == purpose)


def predict(
    policy: Policy,
    user: User,
    *,
    purpose: str,
    recipient: str,
    categories: Iterable[str],
    at_ms: int,
) -> tuple[str, str]:
    """Return the ``(verdict, reason)`` the gate should give, by the contract's rules.

    The photo is assumed known and owned by ``user`` (the simulator only asks for such photos)
    and the recipient not suspended.
    """
    org = policy.recipient(recipient)
    if org is None:
        return DENY, "RECIPIENT_UNKNOWN"
    if org.agreement is None or not org.agreement.valid_at(at_ms):
        return DENY, "NO_AGREEMENT"
    rule = policy.rule(Purpose(purpose))
    if rule is None or Purpose(purpose) not in org.purposes:
        return DENY, "PURPOSE_NOT_PERMITTED"
    if rule.internal_only and not org.internal:
        return DENY, "PURPOSE_NOT_PERMITTED"
    if not rule.consent_based:
        return ALLOW, "NOT_CONSENT_BASED"
    grant = user.deciding(purpose, recipient, at_ms)
    if grant is None:
        return DENY, "NO_CONSENT"
    if not grant.granted:
        return DENY, "CONSENT_REVOKED"
    if grant.expires_at_ms is not None and at_ms >= grant.expires_at_ms:
        return DENY, "CONSENT_EXPIRED"
    sensitive = {c.value for c in policy.sensitive_categories}
    requested = set(categories) | {"IMAGE"}  # a request names a photo (CONTRACT §3)
    missing = requested - grant.categories if grant.categories else requested & sensitive
    if missing:
        return DENY, "CATEGORY_NOT_CONSENTED"
    return ALLOW, "CONSENTED"
