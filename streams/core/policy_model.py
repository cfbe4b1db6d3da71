"""Policy data model (contract section 4), as :func:`~streams.core.policy.load_policy` builds it.

Every class here is immutable; a :class:`Policy` that exists was validated by the loader (see
:mod:`streams.core.policy` for what that guarantees). Look-ups are plain mapping reads, cheap enough
for the gate's hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from streams.core.model import DataCategory, Purpose
from streams.core.times import day_end_millis


class Basis(StrEnum):
    """The legal basis of a purpose; only ``consent`` makes the gate look at consent records."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGITIMATE_INTEREST = "legitimate_interest"
    LEGAL_OBLIGATION = "legal_obligation"


@dataclass(frozen=True, slots=True)
class PurposeRule:
    """How one purpose may be used: its legal basis and whether it may leave the company."""

    purpose: Purpose
    basis: Basis
    internal_only: bool = False
    categories: frozenset[DataCategory] = frozenset()
    """The data categories this purpose may carry (never a sensitive one unless consent-based)."""

    @property
    def consent_based(self) -> bool:
        """Whether the owner's consent decides (basis ``consent``)."""
        return self.basis is Basis.CONSENT


@dataclass(frozen=True, slots=True)
class Agreement:
    """A data agreement with a recipient, valid through the end of ``expires`` (UTC) if set."""

    id: str
    expires: date | None = None
    ends_at_ms: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.expires is not None:
            object.__setattr__(self, "ends_at_ms", day_end_millis(self.expires))

    def valid_at(self, at_ms: int) -> bool:
        """Whether the agreement is in force at epoch millisecond ``at_ms``."""
        return self.ends_at_ms is None or at_ms < self.ends_at_ms


@dataclass(frozen=True, slots=True)
class BulkExportLimit:
    """How many photos per hour a recipient may receive before a ``BULK_EXPORT`` alert."""

    max_photos_per_hour: int
    auto_suspend: bool = False


@dataclass(frozen=True, slots=True)
class Recipient:
    """An organisation registered to receive photos, and what for."""

    org: str
    internal: bool
    agreement: Agreement | None
    purposes: frozenset[Purpose]
    bulk_export: BulkExportLimit | None = None
    recall_within_days: float | None = None
    """This recipient's own recall deadline in days, or ``None`` for the policy's default."""
    ack_keys: Mapping[str, bytes] = field(default_factory=dict)
    """Keys that may sign this recipient's recall acks: key id -> raw Ed25519 public key
    (:mod:`streams.core.ack_signing`); empty: no ack of it counts."""


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far producers' clocks are trusted (contract section 3), in seconds.

    An input whose ``occurred_at`` is ahead of the broker's append time by more than
    ``max_skew_s``, or behind it by more than ``max_lateness_s``, is dead-lettered
    (``INVALID_TIME``); see :func:`streams.core.trust.check_time`.
    """

    max_skew_s: float = 60.0
    max_lateness_s: float = 300.0

    @property
    def max_skew_ms(self) -> int:
        """``max_skew_s`` in whole milliseconds."""
        return round(self.max_skew_s * 1000)

    @property
    def max_lateness_ms(self) -> int:
        """``max_lateness_s`` in whole milliseconds."""
        return round(self.max_lateness_s * 1000)


DEFAULT_RECALL_WITHIN_DAYS = 30.0
"""The deadline of a ``RecallOrder`` when the policy sets none (contract section 3)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated, immutable policy. Look-ups are plain mapping reads (hot path)."""

    version: str
    fingerprint: str
    source: str
    sensitive_categories: frozenset[DataCategory]
    purposes: Mapping[Purpose, PurposeRule]
    recipients: Mapping[str, Recipient]
    time: TimeBounds = field(default_factory=TimeBounds)
    default_recall_within_days: float = DEFAULT_RECALL_WITHIN_DAYS

    def rule(self, purpose: Purpose) -> PurposeRule | None:
        """Return the rule for ``purpose``, or ``None`` if the policy does not configure it."""
        return self.purposes.get(purpose)

    def recipient(self, org: str) -> Recipient | None:
        """Return the registered recipient ``org``, or ``None``."""
        return self.recipients.get(org)

    def recall_within_days(self, recipient: str | Recipient) -> float:
        """Return the recall deadline in days for ``recipient`` (a name or a :class:`Recipient`).

        The recipient's own ``recall_within_days`` if it sets one, otherwise the policy's
        default (also for a name the policy does not register).
        """
        found = self.recipients.get(recipient) if isinstance(recipient, str) else recipient
        if found is not None and found.recall_within_days is not None:
            return found.recall_within_days
        return self.default_recall_within_days

    def recall_within_ms(self, recipient: str | Recipient) -> int:
        """Return :meth:`recall_within_days` in whole milliseconds (for ``due_at``)."""
        return round(self.recall_within_days(recipient) * 86_400_000)

    def categories_not_carried(
        self, purpose: Purpose, categories: Iterable[DataCategory]
    ) -> frozenset[DataCategory]:
        """Return the requested ``categories`` that ``purpose`` may not carry (all if unknown).

        Empty means every category is within the purpose's ``categories``. For a purpose whose
        basis is not consent, a sensitive category is always in the result.
        """
        rule = self.purposes.get(purpose)
        requested = frozenset(categories)
        return requested if rule is None else requested - rule.categories


DEFAULT_SENSITIVE = frozenset({DataCategory.FACE_BIOMETRIC})
