"""One user's recall ledger: what left about them, and what they erased (contract section 3).

Pure: no Kafka, no clock. The gate keeps one :class:`RecallLedger` per user, beside (not inside)
the user's :class:`~streams.core.consent.UserState`, and changelogs it as ``key → to_bytes()``:
consent checks never pay for decoding transfers, and a user's ledger is decoded only when one of
their erasures or withdrawals arrives (or a transfer is appended).

A ledger holds

- every **transfer**: a share the gate allowed, and every training read whatever its verdict (a
  ``TrainingRead`` reports a read that happened; a denied one is unconsented training, and the model
  that read the photo must still purge it) -- with the decision, the consent relied on, the purpose
  and the time; reads also name the job and the model;
- the user's **erasure tombstones**: 8-byte BLAKE2b digests of erased photo ids (no identifier kept
  in clear, 8 bytes each, a false match inside one user's set needs ~2**32 erased photos), and a
  flag once the whole account is erased (the ledger is then empty and stays so).
"""

from __future__ import annotations

import base64
import hashlib
import json

from streams.core.recall_model import ErasureRequest, ErasureScope, Transfer
from streams.errors import SerdeError

LEDGER_FORMAT = 1
"""Version of the serialized :class:`RecallLedger` layout; bumped on incompatible change."""


def photo_digest(photo_id: str) -> bytes:
    """Return the 8-byte tombstone of an erased photo id (BLAKE2b; the id is not kept in clear)."""
    return hashlib.blake2b(photo_id.encode(), digest_size=8, person=b"cs-erased").digest()


class RecallLedger:
    """One user's transfers and erasure tombstones. Idempotent per ``decision_id``."""

    __slots__ = ("_decisions", "_erased", "account_erased", "transfers", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.transfers: list[Transfer] = []
        self._decisions: set[str] = set()
        self._erased: set[bytes] = set()
        self.account_erased = False

    def record(self, transfer: Transfer) -> bool:
        """Append a transfer; ``False`` if its decision is known or the account is erased."""
        if self.account_erased or transfer.decision_id in self._decisions:
            return False
        self._decisions.add(transfer.decision_id)
        self.transfers.append(transfer)
        return True

    def is_erased(self, photo_id: str | None = None) -> bool:
        """Whether the account, or (given) the photo, was erased: a request for it is ``ERASED``."""
        return self.account_erased or (
            photo_id is not None and photo_digest(photo_id) in self._erased
        )

    def forget(self, erasure: ErasureRequest) -> int:
        """Apply an erasure after its orders were built; return how many transfers were dropped.

        ``PHOTO``: drops the photo's transfers and tombstones it. ``ACCOUNT``: drops everything and
        marks the account erased (the caller also deletes the user's consent state and photos).
        """
        if erasure.user_id != self.user_id:
            raise ValueError(f"erasure {erasure.event_id} is for another user")
        before = len(self.transfers)
        if erasure.scope is ErasureScope.ACCOUNT:
            self.transfers, self._decisions, self._erased = [], set(), set()
            self.account_erased = True
        else:
            assert erasure.photo_id is not None  # from_record guarantees it
            self.transfers = [t for t in self.transfers if t.photo_id != erasure.photo_id]
            self._decisions = {t.decision_id for t in self.transfers}
            self._erased.add(photo_digest(erasure.photo_id))
        return before - len(self.transfers)

    def to_bytes(self) -> bytes:
        """Serialize to compact UTF-8 JSON (about 100 bytes per transfer with UUID ids).

        Strings other than decision ids are interned in one table; times are relative to the
        first transfer's.
        """
        table: dict[str, int] = {}

        def ref(value: str | None) -> int:
            return -1 if value is None else table.setdefault(value, len(table))

        base = self.transfers[0].at_ms if self.transfers else 0
        rows = [
            [
                t.decision_id,
                ref(t.photo_id),
                ref(t.recipient_org),
                ref(t.purpose),
                1 if t.allowed else 0,
                ref(t.consent_event_id),
                t.at_ms - base,
                ref(t.job_id),
                ref(t.model_id),
            ]
            for t in self.transfers
        ]
        data = {
            "v": LEDGER_FORMAT,
            "u": self.user_id,
            "s": list(table),
            "b": base,
            "t": rows,
            "e": base64.b64encode(b"".join(sorted(self._erased))).decode(),
            "x": 1 if self.account_erased else 0,
        }
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RecallLedger:
        """Rebuild from :meth:`to_bytes`; ``SerdeError`` if it is not such data."""
        try:
            raw = json.loads(data)
            if raw.get("v") != LEDGER_FORMAT:
                raise ValueError(f"unsupported ledger format {raw.get('v')!r}")
            strings: list[str] = raw["s"]

            def deref(index: int) -> str | None:
                return None if index < 0 else strings[index]

            ledger = cls(raw["u"])
            base = raw["b"]
            for decision, photo, org, purpose, allowed, consent, at, job, model in raw["t"]:
                ledger.record(
                    Transfer(
                        decision,
                        strings[photo],
                        strings[org],
                        strings[purpose],
                        bool(allowed),
                        deref(consent),
                        base + at,
                        deref(job),
                        deref(model),
                    )
                )
            erased = base64.b64decode(raw["e"])
            ledger._erased = {erased[i : i + 8] for i in range(0, len(erased), 8)}
            ledger.account_erased = bool(raw["x"])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise SerdeError(
                f"stored recall ledger is unreadable: {exc}",
                hint="restore the gate's changelog, or rebuild the state from the input topics",
            ) from exc
        return ledger
