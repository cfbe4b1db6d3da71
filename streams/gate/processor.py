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
from streams.core.evaluate import decide_safely
from streams.core.model import AccessRequest, ConsentRecord, PhotoRecord, decision_record
from streams.core.policy import Policy
from streams.core.times import iso_moment
from streams.errors import ConsentinelError
from streams.gate import metrics
from streams.gate.state import PartitionState
from streams.runtime.dead_letters import dead_letter, derived_id
from streams.runtime.records import Output, Processed, RawInput

log = logging.getLogger(__name__)


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
        log.warning(
            "dead letter %s/%d/%d (%s): %s", raw.topic, raw.partition, raw.offset, kind, error
        )
        letter = dead_letter(raw, kind, error, at_ms=self.clock_ms())
        return Processed([letter], dead_letter_kind=kind)

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
        record = decision_record(
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
