"""What the gate does with one input event, as plain data: no Kafka in here.

:class:`GateProcessor` turns each decoded input into the outputs the runtime must write in the
current transaction — decisions, approved shares, alerts, recall orders and dead letters — and
updates the partition's :class:`~streams.gate.state.PartitionState`. Guarantees:

* nothing a producer asserts is believed beyond the contract (§3): an input whose key or partition
  is not its owner's (``MISROUTED``), whose ``occurred_at`` is outside the policy's time bounds of
  the broker's append time (``INVALID_TIME``), or that reuses a recent ``event_id`` with other
  content (``DUPLICATE_EVENT_ID``) is dead-lettered; an exact duplicate is decided once;
* every other ``PhotoShareRequested`` and ``TrainingRead`` gets exactly one decision, judged at
  its effective time (the later of its ``occurred_at`` and the partition's stream time) and
  chained onto the partition's hash chain;
* a share is forwarded (its original bytes, with the decision's id and hash as headers) iff its
  verdict is ``ALLOW``;
* a request for an erased photo or account is ``DENY``/``ERASED``; a withdrawal, an erasure and a
  training read that was not allowed issue recall orders for what already left;
* any failure inside evaluation yields ``DENY``/``UNKNOWN``, never ``ALLOW`` (fail closed);
* every id it derives (decision, alert, order, dead letter) is a function of the input, so a
  replay after an aborted transaction writes the same records.

:class:`~streams.gate.topology.GateTopology` puts it on the stream runtime.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from streams import topics
from streams.core.consent import AllowedAccess
from streams.core.controls import SuspensionRegistry
from streams.core.egress import decision_headers
from streams.core.evaluate import decide_safely
from streams.core.model import AccessRequest, ConsentRecord, PhotoRecord, decision_record
from streams.core.policy import Policy
from streams.core.recall import ErasureRequest, Transfer, erased_decision
from streams.core.times import iso_moment
from streams.core.trust import check_routing, check_time, conflict, effective_time
from streams.errors import ConsentinelError, InvalidEventError
from streams.gate import metrics
from streams.gate.recalls import RecallIssuer
from streams.gate.state import PartitionState
from streams.runtime.dead_letters import dead_letter, derived_id
from streams.runtime.records import Output, Processed, RawInput

log = logging.getLogger(__name__)

_OWNER_FIELD = {
    topics.TOPIC_PHOTO_UPLOADS: "owner_id",
    topics.TOPIC_CONSENT_CHANGES: "user_id",
    topics.TOPIC_SHARE_REQUESTS: "owner_id",
    topics.TOPIC_TRAINING_READS: "owner_id",
    topics.TOPIC_ERASURE_REQUESTS: "user_id",
}
"""Input topic → the value's field that names the user its key and partition must match."""


class GateProcessor:
    """Applies the gate's rules to the inputs of the partitions it is given."""

    def __init__(
        self,
        policy: Policy,
        suspensions: SuspensionRegistry,
        *,
        clock_ms: Callable[[], int],
        stream_clock: bool = False,
    ) -> None:
        self.policy = policy
        self.suspensions = suspensions
        self.clock_ms = clock_ms
        self.stream_clock = stream_clock
        self.partitions = 0
        self.recalls = RecallIssuer(policy.recall_within_days, clock_ms)
        bounds = policy.time
        self._seen_window_ms = bounds.max_lateness_ms + bounds.max_skew_ms

    def bind(self, partitions: int) -> None:
        """Learn the input topics' partition count (routing checks and recall partitions)."""
        self.partitions = partitions
        self.recalls.partitions = partitions

    # -- entry points ---------------------------------------------------------------------------
    def process(self, raw: RawInput, record: dict[str, Any], state: PartitionState) -> Processed:
        """Handle one decoded input (dead-lettering what the contract refuses)."""
        try:
            refused = self._refusal(raw, record, state)
            if refused is not None:
                return refused
            if raw.topic == topics.TOPIC_PHOTO_UPLOADS:
                processed = self._upload(PhotoRecord.from_record(record), state)
            elif raw.topic == topics.TOPIC_CONSENT_CHANGES:
                processed = self._consent(ConsentRecord.from_record(record), raw, state)
            elif raw.topic == topics.TOPIC_SHARE_REQUESTS:
                processed = self._request(AccessRequest.from_share(record), raw, state)
            elif raw.topic == topics.TOPIC_TRAINING_READS:
                processed = self._request(AccessRequest.from_training_read(record), raw, state)
            else:
                processed = self._erasure(ErasureRequest.from_record(record), state)
        except ConsentinelError as exc:
            return self.dead_letter(raw, exc.error_kind, str(exc))
        state.advance_stream_time(record["occurred_at"])
        return processed

    def dead_letter(self, raw: RawInput, kind: str, error: str) -> Processed:
        """Return the dead letter for an input the gate cannot handle."""
        log.warning(
            "dead letter %s/%d/%d (%s): %s", raw.topic, raw.partition, raw.offset, kind, error
        )
        letter = dead_letter(raw, kind, error, at_ms=self.clock_ms())
        return Processed([letter], dead_letter_kind=kind)

    def _refusal(
        self, raw: RawInput, record: dict[str, Any], state: PartitionState
    ) -> Processed | None:
        """Return what to do instead of processing ``raw`` (a dead letter, or nothing at all)."""
        field = _OWNER_FIELD.get(raw.topic)
        if field is None:
            return self.dead_letter(raw, "UNEXPECTED_TOPIC", f"the gate does not read {raw.topic}")
        owner, occurred, event_id = (
            record.get(field),
            record.get("occurred_at"),
            record.get("event_id"),
        )
        if not isinstance(owner, str) or not isinstance(event_id, str) or not event_id:
            raise InvalidEventError(f"{raw.topic}: the event has no {field} or event_id")
        if not isinstance(occurred, int) or isinstance(occurred, bool):
            raise InvalidEventError(f"{raw.topic} event {event_id}: occurred_at is missing")
        problem = check_routing(raw.key, owner, raw.partition, self.partitions) or check_time(
            occurred, raw.timestamp_ms, self.policy.time
        )
        if problem is not None:
            return self.dead_letter(raw, problem.error_kind, str(problem))
        digest = hashlib.blake2b(raw.value or b"", digest_size=12).hexdigest()
        state.expire_seen(raw.timestamp_ms - self._seen_window_ms)
        seen = state.seen(event_id)
        if seen == digest:
            log.info(
                "exact duplicate of %s at %s/%d/%d: decided once",
                event_id,
                raw.topic,
                raw.partition,
                raw.offset,
            )
            return Processed()
        if seen is not None:
            duplicate = conflict(event_id, raw.partition)
            return self.dead_letter(raw, duplicate.error_kind, str(duplicate))
        state.remember(event_id, digest, raw.timestamp_ms)
        return None

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
        ledger = state.ledger(consent.user_id)
        if ledger is not None and ledger.account_erased:
            log.info("consent %s for erased user ignored", consent.event_id)
            return Processed()
        violations = state.user_for_update(consent.user_id).apply_consent(consent)
        outputs = [self._retroactive_alert(consent, access, raw) for access in violations]
        if violations:
            metrics.RETROACTIVE_VIOLATIONS.inc(len(violations))
        outputs += self.recalls.on_withdrawal(consent, state)
        return Processed(outputs)

    def _erasure(self, erasure: ErasureRequest, state: PartitionState) -> Processed:
        return Processed(self.recalls.on_erasure(erasure, state))

    def _request(self, request: AccessRequest, raw: RawInput, state: PartitionState) -> Processed:
        owner = request.owner_id
        ledger = state.ledger(owner)
        if ledger is not None and ledger.is_erased(request.photo_id):
            decision = erased_decision(request, self.policy.version, account=ledger.account_erased)
        else:
            user = state.user(owner)
            decision = decide_safely(
                request,
                photo_owner=state.photo_owner(request.photo_id),
                consents=None if user is None else user.consents,
                suspended=self.suspensions.suspension(request.recipient_org) is not None,
                policy=self.policy,
                at_ms=effective_time(request.occurred_at_ms, state.stream_time),
            )
        decision_id = derived_id(f"{request.kind.value}:{request.event_id}")
        if self.stream_clock:  # a replay: stamp the decision with the partition's stream time
            decided_at = effective_time(request.occurred_at_ms, state.stream_time)
        else:
            decided_at = self.clock_ms()
        record = decision_record(
            decision,
            decision_id=decision_id,
            decided_at_ms=decided_at,
            prev_hash=state.head,
            partition=raw.partition,
        )
        state.advance_head(record["hash"])
        key = owner.encode()
        outputs = [Output(topics.TOPIC_DECISIONS, raw.partition, key, record)]
        transfer = Transfer.from_decision(decision, decision_id)
        if transfer is not None and not (ledger is not None and ledger.account_erased):
            state.ledger_for_update(owner).record(transfer)
        if decision.allowed:
            if request.kind.value == "SHARE" and raw.value is not None:
                outputs.append(
                    Output(
                        topics.TOPIC_SHARE_APPROVED,
                        raw.partition,
                        raw.key,
                        raw.value,
                        headers=decision_headers(record),
                    )
                )
            if decision.consent_event_id is not None:
                state.user_for_update(owner).record_allowed(
                    AllowedAccess(
                        decision_id=decision_id,
                        subject_event_id=request.event_id,
                        occurred_at_ms=request.occurred_at_ms,
                        purpose=request.purpose,
                        recipient_org=request.recipient_org,
                        consent_event_id=decision.consent_event_id,
                    )
                )
        elif transfer is not None:  # a training read that was not allowed: the model read it
            outputs += self.recalls.on_unconsented_read(owner, decision_id, state)
        return Processed(outputs, facts=decision)

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
