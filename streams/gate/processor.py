"""What the gate does with one input event, as plain data: no Kafka in here.

:class:`GateProcessor` turns each input (already decoded, or a decoding failure) into the outputs
the runner must write in the current transaction — decisions, approved shares, alerts and dead
letters — and updates the partition's :class:`~streams.gate.state.PartitionState`. Guarantees:

* every ``PhotoShareRequested`` and ``TrainingRead`` that decodes into a valid request gets exactly
  one decision, chained onto the partition's hash chain;
* a share is forwarded (its original bytes, unchanged) iff its verdict is ``ALLOW``;
* any failure inside evaluation yields ``DENY``/``UNKNOWN``, never ``ALLOW`` (fail closed);
* an input that cannot be decoded or breaks the contract becomes one dead letter, never a decision;
* every id it derives (decision, alert, dead letter) is a function of the input, so a replay after
  an aborted transaction writes the same records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams import topics
from streams.core.audit import GENESIS_HASH
from streams.core.consent import AllowedAccess
from streams.core.controls import SuspensionRegistry
from streams.core.evaluate import decide_safely
from streams.core.model import (
    AccessRequest,
    ConsentRecord,
    DataCategory,
    Decision,
    PhotoRecord,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
    decision_record,
)
from streams.core.policy import Policy
from streams.core.times import iso_moment
from streams.errors import ConsentinelError
from streams.gate import metrics
from streams.gate.state import PartitionState

log = logging.getLogger(__name__)

_DECISION_NS = uuid.UUID("6f1c1f0e-6a43-4d55-9d0f-5d3b3c1e0a01")
_DECISION_NS_BYTES = _DECISION_NS.bytes

# The canonical JSON of streams.core.audit.canonical_content, as one reusable encoder.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def derived_id(name: str) -> str:
    """Return ``str(uuid.uuid5(_DECISION_NS, name))``, three times faster.

    ``uuid.UUID`` validates and converts its argument in Python; this formats the same SHA-1
    digest (version 5, RFC 4122 variant) directly.
    """
    digest = bytearray(hashlib.sha1(_DECISION_NS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def fast_decision_record(
    decision: Decision, *, decision_id: str, decided_at_ms: int, prev_hash: str, partition: int
) -> dict[str, Any]:
    """Return exactly :func:`streams.core.model.decision_record`'s record, hash included.

    The core hashes ``canonical_content(record)``, which first normalises every value (enums,
    datetimes, sets, nested mappings) to plain JSON. Every value of a decision record is already
    plain (str, int, None, a list of str), so normalising changes nothing and costs more than
    half of the hashing; this builds the same record and hashes the same bytes without it.
    :class:`GateProcessor` checks at start-up that both agree (:func:`check_fast_decision_record`).
    """
    request = decision.request
    record: dict[str, Any] = {
        "decision_id": decision_id,
        "decided_at": decided_at_ms,
        "subject_event_id": request.event_id,
        "subject_kind": request.kind.value,
        "photo_id": request.photo_id,
        "owner_id": request.owner_id,
        "actor": request.actor,
        "recipient_org": request.recipient_org,
        "purpose": request.purpose.value,
        "verdict": decision.verdict.value,
        "reason": decision.reason.value,
        "explanation": decision.explanation,
        "policy_version": decision.policy_version,
        "consent_event_id": decision.consent_event_id,
        "prev_hash": prev_hash,
        "categories": sorted([c.value for c in request.categories]),
        "occurred_at": request.occurred_at_ms,
        "partition": partition,
        "model_id": request.model_id,
    }
    digest = hashlib.sha256(_CANONICAL.encode(record).encode("utf-8"))
    digest.update(prev_hash.encode("ascii"))
    record["hash"] = digest.hexdigest()
    return record


def check_fast_decision_record() -> None:
    """Fail at start-up if :func:`fast_decision_record` and the core's record ever diverge."""
    request = AccessRequest(
        event_id='e-\u00e9"\\',
        kind=SubjectKind.TRAINING_READ,
        occurred_at_ms=1_764_000_000_123,
        photo_id="p1",
        owner_id="u1",
        actor="job-1",
        recipient_org="acme-vision",
        purpose=Purpose.ML_TRAINING,
        categories=frozenset({DataCategory.IMAGE, DataCategory.FACE_BIOMETRIC}),
        job_id="job-1",
        model_id="m\u2603",
    )
    decision = Decision(
        Verdict.ALLOW, Reason.CONSENTED, "an explanation \u00e9", "c-1", "v1", request
    )
    args: dict[str, Any] = {
        "decision_id": derived_id("x"),
        "decided_at_ms": 1_764_000_000_456,
        "prev_hash": GENESIS_HASH,
        "partition": 3,
    }
    core = decision_record(decision, **args)
    fast = fast_decision_record(decision, **args)
    if core != fast or list(core) != list(fast):
        raise AssertionError(
            "streams.gate.processor.fast_decision_record no longer matches"
            " streams.core.model.decision_record: update it to build the same record"
        )
    if derived_id("x") != str(uuid.uuid5(_DECISION_NS, "x")):
        raise AssertionError("derived_id no longer matches uuid.uuid5")


@dataclass(slots=True)
class RawInput:
    """One consumed record: where it came from and its bytes."""

    topic: str  # the contract's (logical) topic name
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class Output:
    """One record to write in the current transaction.

    ``value`` is a record dict to encode with ``topic``'s schema, or ``bytes`` forwarded verbatim.
    """

    topic: str
    partition: int | None  # None: let the producer's partitioner choose from the key
    key: bytes | None
    value: dict[str, Any] | bytes


@dataclass(slots=True)
class Processed:
    """What processing one input produced, plus facts the runner reports as metrics."""

    outputs: list[Output]
    decision: Decision | None = None
    dead_letter_kind: str | None = None


class GateProcessor:
    """Applies the gate's rules to the inputs of the partitions it is given."""

    def __init__(
        self,
        policy: Policy,
        suspensions: SuspensionRegistry,
        *,
        clock_ms: Callable[[], int],
    ) -> None:
        self.policy = policy
        self.suspensions = suspensions
        self.clock_ms = clock_ms
        check_fast_decision_record()

    # -- entry points ---------------------------------------------------------------------------
    def process(
        self, raw: RawInput, record: dict[str, Any] | None, state: PartitionState
    ) -> Processed:
        """Handle one input; ``record`` is its decoded value, or None when ``error`` was set."""
        try:
            if raw.topic == topics.TOPIC_PHOTO_UPLOADS:
                return self._upload(PhotoRecord.from_record(record or {}), state)
            if raw.topic == topics.TOPIC_CONSENT_CHANGES:
                return self._consent(ConsentRecord.from_record(record or {}), raw, state)
            if raw.topic == topics.TOPIC_SHARE_REQUESTS:
                return self._request(AccessRequest.from_share(record or {}), raw, state)
            if raw.topic == topics.TOPIC_TRAINING_READS:
                return self._request(AccessRequest.from_training_read(record or {}), raw, state)
        except ConsentinelError as exc:
            return self.dead_letter(raw, exc.error_kind, str(exc))
        return self.dead_letter(raw, "UNEXPECTED_TOPIC", f"the gate does not read {raw.topic}")

    def dead_letter(self, raw: RawInput, kind: str, error: str) -> Processed:
        """Return the dead letter for an input the gate cannot handle."""
        ident = f"{raw.topic}/{raw.partition}/{raw.offset}"
        record = {
            "dead_letter_id": derived_id("dlq:" + ident),
            "at": self.clock_ms(),
            "source_topic": raw.topic,
            "partition": raw.partition,
            "offset": raw.offset,
            "key": raw.key,
            "value": raw.value or b"",
            "error_kind": kind,
            "error": error[:4000],
        }
        log.warning("dead letter %s (%s): %s", ident, kind, error)
        return Processed(
            [Output(topics.TOPIC_DLQ, raw.partition, raw.key, record)], dead_letter_kind=kind
        )

    # -- per input kind -------------------------------------------------------------------------
    def _upload(self, photo: PhotoRecord, state: PartitionState) -> Processed:
        owner = state.photo_owner(photo.photo_id)
        if owner is None:
            state.set_photo_owner(photo.photo_id, photo.owner_id)
        elif owner != photo.owner_id:
            log.warning(
                "photo %s re-uploaded by %s but owned by %s: ownership unchanged",
                photo.photo_id,
                photo.owner_id,
                owner,
            )
        return Processed([])

    def _consent(self, consent: ConsentRecord, raw: RawInput, state: PartitionState) -> Processed:
        violations = state.user_for_update(consent.user_id).apply_consent(consent)
        outputs = [self._retroactive_alert(consent, access, raw) for access in violations]
        if violations:
            metrics.RETROACTIVE_VIOLATIONS.inc(len(violations))
        return Processed(outputs)

    def _request(self, request: AccessRequest, raw: RawInput, state: PartitionState) -> Processed:
        user = state.user(request.owner_id)
        suspension = self.suspensions.suspension(request.recipient_org)
        decision = decide_safely(
            request,
            photo_owner=state.photo_owner(request.photo_id),
            consents=None if user is None else user.consents,
            suspended=suspension is not None,
            policy=self.policy,
        )
        decision_id = derived_id(f"{request.kind.value}:{request.event_id}")
        record = fast_decision_record(
            decision,
            decision_id=decision_id,
            decided_at_ms=self.clock_ms(),
            prev_hash=state.head,
            partition=raw.partition,
        )
        state.advance_head(record["hash"])
        key = request.owner_id.encode()
        outputs = [Output(topics.TOPIC_DECISIONS, raw.partition, key, record)]
        if decision.allowed:
            if request.kind.value == "SHARE" and raw.value is not None:
                outputs.append(
                    Output(topics.TOPIC_SHARE_APPROVED, raw.partition, raw.key, raw.value)
                )
            if decision.consent_event_id is not None:
                state.user_for_update(request.owner_id).record_allowed(
                    AllowedAccess(
                        decision_id=decision_id,
                        subject_event_id=request.event_id,
                        occurred_at_ms=request.occurred_at_ms,
                        purpose=request.purpose,
                        recipient_org=request.recipient_org,
                        consent_event_id=decision.consent_event_id,
                    )
                )
        return Processed(outputs, decision=decision)

    def _retroactive_alert(
        self, withdrawal: ConsentRecord, access: AllowedAccess, raw: RawInput
    ) -> Output:
        alert_id = hashlib.sha256(
            f"RETROACTIVE_VIOLATION:{access.decision_id}:{withdrawal.event_id}".encode()
        ).hexdigest()[:32]
        summary = (
            f"Decision {access.decision_id} allowed {access.recipient_org} to use user "
            f"{withdrawal.user_id}'s photo for {access.purpose.value} at "
            f"{iso_moment(access.occurred_at_ms)}, but the user had withdrawn consent at "
            f"{iso_moment(withdrawal.occurred_at_ms)} (consent {withdrawal.event_id}); "
            "recall the data from the recipient."
        )
        record = {
            "alert_id": alert_id,
            "raised_at": self.clock_ms(),
            "kind": "RETROACTIVE_VIOLATION",
            "severity": "CRITICAL",
            "subject": access.recipient_org,
            "window_start": withdrawal.occurred_at_ms,
            "window_end": access.occurred_at_ms,
            "observed": 1,
            "threshold": 0.0,
            "baseline": None,
            "summary": summary,
            "sample_event_ids": [access.subject_event_id, withdrawal.event_id],
            "action": "NONE",
        }
        return Output(topics.TOPIC_ALERTS, None, access.recipient_org.encode(), record)
