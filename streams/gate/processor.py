"""What the gate does with one input event, as plain data: no Kafka in here.

:class:`GateProcessor` turns each decoded input into the outputs the runtime must write in the
current transaction — decisions, approved shares, alerts, recall orders and dead letters — and
updates the partition's :class:`~streams.gate.state.PartitionState`. Guarantees:

* nothing a producer asserts is believed beyond the contract (§3): an input whose key or partition
  is not its owner's (``MISROUTED``), whose ``occurred_at`` is outside the policy's time bounds of
  the broker's append time (``INVALID_TIME``), that reuses a recent ``event_id`` with other
  content (``DUPLICATE_EVENT_ID``), or a consent change naming a recipient the policy does not
  know (``UNKNOWN_RECIPIENT``) is dead-lettered; an exact duplicate is decided once. The duplicate
  memory spans ``max_skew_s + max_lateness_s`` of append time (every exact duplicate that passes
  the time check falls within it); an ``event_id`` reused later is a new input with its own
  ``decision_id`` (:mod:`streams.gate.ids`);
* every other ``PhotoShareRequested`` and ``TrainingRead`` gets exactly one decision, judged at
  its effective time (the later of its ``occurred_at`` and the partition's stream time) and
  chained onto the partition's hash chain;
* a share is forwarded (its original bytes, with the decision's id and hash as headers) iff its
  verdict is ``ALLOW``;
* a request for an erased photo or account, or for a copy of an erased photo (its id or content),
  is ``DENY``/``ERASED``; a withdrawal, an erasure and a training read that was not allowed issue
  recall orders for what already left; an erasure forgets the photos in the photo index too;
* any failure inside evaluation yields ``DENY``/``UNKNOWN``, never ``ALLOW`` (fail closed);
* every id it derives (decision, alert, order, dead letter) is a function of the input, so a
  replay after an aborted transaction writes the same records.

A request whose photo the photo index (:mod:`streams.gate.photos`) has not settled waits, with
what follows for its user, in :class:`~streams.gate.user_queues.UserQueues`.
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
from streams.core.governance import Alert, AlertKind, Severity, stable_id
from streams.core.model import AccessRequest, ConsentRecord, PhotoRecord, decision_record
from streams.core.policy import Policy
from streams.core.recall import ErasureRequest, Transfer, erased_decision
from streams.core.times import iso_moment
from streams.core.trust import check_routing, check_time, conflict
from streams.errors import ConsentinelError, InvalidEventError, UnknownRecipientError
from streams.gate import ids, metrics, photos
from streams.gate.recalls import RecallIssuer
from streams.gate.state import PartitionState
from streams.gate.user_queues import ERASED, REQUEST_TOPICS, UserQueues
from streams.runtime.dead_letters import dead_letter
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
        unknown_photo_grace_ms: int = 2_000,
    ) -> None:
        self.policy = policy
        self.suspensions = suspensions
        self.clock_ms = clock_ms
        self.stream_clock = stream_clock
        self.decode_input: Callable[[RawInput], dict[str, Any]] | None = None
        """Decodes a waiting input again when it is processed (set by the topology)."""
        self.partitions = 0
        self.recalls = RecallIssuer(policy.recall_within_days, clock_ms)
        self.queues = UserQueues(
            decode=self.codec_decode,
            request_of=self._request_of,
            decide=self._request,
            apply_event=self._apply_event,
            refuse=lambda raw, exc: self.dead_letter(raw, exc.error_kind, str(exc)),
            clock_ms=clock_ms,
            unknown_grace_ms=unknown_photo_grace_ms,
        )
        bounds = policy.time
        self._seen_window_ms = bounds.max_lateness_ms + bounds.max_skew_ms

    def codec_decode(self, raw: RawInput) -> dict[str, Any]:
        """Decode an input again (a waiting one); the topology supplies the codec."""
        if self.decode_input is None:
            raise RuntimeError("GateProcessor was built without a decoder for waiting inputs")
        return self.decode_input(raw)

    def bind(self, partitions: int) -> None:
        """Learn the input topics' partition count (routing checks and recall partitions)."""
        self.partitions = partitions
        self.recalls.partitions = partitions
        self.queues.partitions = partitions

    # -- entry points ---------------------------------------------------------------------------
    def process(self, raw: RawInput, record: dict[str, Any], state: PartitionState) -> Processed:
        """Handle one decoded input (dead-lettering what the contract refuses)."""
        try:
            refused = self._refusal(raw, record, state)
            if refused is not None:
                return refused
            if raw.topic == topics.TOPIC_PHOTO_UPLOADS:
                processed = self._upload(PhotoRecord.from_record(record), state)
                state.advance_upload_time(record["occurred_at"])
                if state.unsure():  # requests sure now that no earlier upload is to come
                    released = self.queues.release_unsure(state)
                    processed = Processed(processed.outputs + released.outputs, released.facts)
            elif raw.topic in REQUEST_TOPICS:
                processed = self.queues.arrive(self._request_of(raw, record), raw, state)
            else:
                processed = self.queues.event(raw, record, state)
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
        # an event that may wait in a user's queue is checked now: it must not fail later
        if raw.topic == topics.TOPIC_CONSENT_CHANGES:
            self._known_recipient(ConsentRecord.from_record(record))
        elif raw.topic == topics.TOPIC_ERASURE_REQUESTS:
            ErasureRequest.from_record(record)
        state.remember(event_id, digest, raw.timestamp_ms)
        return None

    def _known_recipient(self, consent: ConsentRecord) -> ConsentRecord:
        """Return ``consent``; raise ``UnknownRecipientError`` if it names an unknown recipient.

        Its ``recipient_org`` is already canonical (NFKC, case-folded, trimmed), as are the
        policy's ids: ``Acme-Vision`` is ``acme-vision``; ``acme\u2010vision`` is nobody.
        """
        org = consent.recipient_org
        if org is not None and org not in self.policy.recipients:
            raise UnknownRecipientError(
                f"ConsentChanged {consent.event_id} names recipient {org!r}, which policy"
                f" {self.policy.version} does not register: kept, it would "
                f"{'grant' if consent.granted else 'withdraw'} nothing",
                hint="the consent service must name a recipient id of the policy (compared after"
                " NFKC normalization, case folding and trimming); replay this event once fixed",
            )
        return consent

    # -- per input kind -------------------------------------------------------------------------
    def _upload(self, photo: PhotoRecord, state: PartitionState) -> Processed:
        known = state.photo_status(photo.photo_id)
        if known is not None:
            if known[0].owner != photo.owner_id:  # cannot happen: one partition per owner
                log.warning("photo %s re-uploaded by %s", photo.photo_id, photo.owner_id)
            return Processed()
        content = photos.content_key(photo.content_sha256)
        ledger = state.ledger(photo.owner_id)
        if ledger is not None and ledger.is_erased(photo.photo_id):
            # the account, or this photo, is erased: keep nothing of it, and erase its index keys
            log.info("upload %s of erased photo or account not recorded", photo.event_id)
            return Processed(
                photos.erase_claims(photo.photo_id, photo.owner_id, content, self.partitions)
            )
        claims = photos.claims(
            photo.photo_id, photo.owner_id, photo.content_sha256, self.partitions
        )
        state.set_photo_status(
            photo.photo_id,
            photos.PhotoStatus(photo.owner_id, pending=True, content=content),
            len(claims),
        )
        return Processed(claims)

    # -- the photo index ------------------------------------------------------------------------
    def on_claim(self, message: dict[str, Any], state: PartitionState) -> Processed:
        """Answer a claim or lookup on this partition's share of the photo index, or erase."""
        key, claimant, kind = message["k"], message["o"], message["t"]
        first, erased = state.index_claim(key)
        if kind == "erase":  # the eraser's entry, or none yet (its claim comes later): erased
            if not erased and first in (None, claimant):
                state.erase_index_entry(key)
            return Processed()
        if kind == "claim" and first is None and not erased:
            state.set_index_owner(key, claimant)
            first = claimant
        return Processed([photos.answer(message, first, self.partitions, erased=erased)])

    def on_verdict(self, message: dict[str, Any], state: PartitionState) -> Processed:
        """Apply the index's answer for a photo, then decide what waited for it."""
        photo_id, first, asker = message["p"], message.get("first"), message["o"]
        erased = bool(message.get("erased"))
        if message["t"] == "claim":
            found = state.photo_status(photo_id)
            if found is None:  # forgotten meanwhile (an erasure): decide what waited anyway
                return self.queues.wake(photo_id, asker, state, forgotten=True)
            status, outstanding = photos.settle(*found, first, erased=erased)
            if status.erased and not found[0].erased:
                log.warning("photo %s uploaded by %s is an erased photo's: ERASED", photo_id, asker)
            elif status.first_owner is not None and status.first_owner != found[0].first_owner:
                log.warning(
                    "photo %s uploaded by %s was first uploaded by %s: its requests are"
                    " OWNER_MISMATCH",
                    photo_id,
                    status.owner,
                    first,
                )
            state.set_photo_status(photo_id, status, outstanding)
            if status.pending:
                return Processed()
            return self.queues.wake(photo_id, asker, state)
        return self.queues.answered(photo_id, asker, first, state, erased=erased)

    # -- consent changes and erasures (in order with the user's waiting requests) ---------------
    def _apply_event(
        self, raw: RawInput, record: dict[str, Any], state: PartitionState
    ) -> Processed:
        if raw.topic == topics.TOPIC_CONSENT_CHANGES:
            consent = self._known_recipient(ConsentRecord.from_record(record))
            return self._consent(consent, raw, state)
        return self._erasure(ErasureRequest.from_record(record), state)

    @staticmethod
    def _request_of(raw: RawInput, record: dict[str, Any]) -> AccessRequest:
        if raw.topic == topics.TOPIC_SHARE_REQUESTS:
            return AccessRequest.from_share(record)
        return AccessRequest.from_training_read(record)

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

    def _request(
        self,
        request: AccessRequest,
        raw: RawInput,
        state: PartitionState,
        effective_at: int,
        photo_owner: Any,
    ) -> Processed:
        """Decide a request whose photo's owner is known.

        ``photo_owner`` None: no upload of it is known; :data:`~streams.gate.user_queues.ERASED`:
        the photo index says it is an erased photo (or a copy of one).
        """
        owner = request.owner_id
        ledger = state.ledger(owner)
        if ledger is not None and ledger.is_erased(request.photo_id):
            decision = erased_decision(request, self.policy.version, account=ledger.account_erased)
        elif photo_owner is ERASED:  # the index: the photo's id or content is an erased photo's
            decision = erased_decision(request, self.policy.version, account=False, copy=True)
        else:
            user = state.user(owner)
            decision = decide_safely(
                request,
                photo_owner=photo_owner if isinstance(photo_owner, str) else None,
                consents=None if user is None else user.consents,
                suspended=self.suspensions.suspension(request.recipient_org) is not None,
                policy=self.policy,
                at_ms=effective_at,
            )
        decision_id = ids.decision_id(raw.topic, raw.partition, raw.offset, request.event_id)
        # a replay stamps the decision with the partition's stream time, production its clock
        decided_at = effective_at if self.stream_clock else self.clock_ms()
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
                state.user_for_update(owner).record_allowed(AllowedAccess.of(decision_id, decision))
        elif transfer is not None:  # a training read that was not allowed: the model read it
            outputs += self.recalls.on_unconsented_read(owner, decision_id, state)
        return Processed(outputs, facts=decision)

    def _retroactive_alert(
        self, withdrawal: ConsentRecord, access: AllowedAccess, raw: RawInput
    ) -> Output:
        alert = Alert(
            alert_id=stable_id("RETROACTIVE_VIOLATION", access.decision_id, withdrawal.event_id),
            raised_at=self.clock_ms(),
            kind=AlertKind.RETROACTIVE_VIOLATION,
            severity=Severity.CRITICAL,
            subject=access.recipient_org,
            window_start=withdrawal.occurred_at_ms,
            window_end=access.occurred_at_ms,
            observed=1,
            threshold=0.0,
            baseline=None,
            summary=(
                f"Decision {access.decision_id} allowed {access.recipient_org} to use user "
                f"{withdrawal.user_id}'s photo for {access.purpose.value} at "
                f"{iso_moment(access.occurred_at_ms)}, but the user had withdrawn consent at "
                f"{iso_moment(withdrawal.occurred_at_ms)} (consent {withdrawal.event_id}); "
                "a recall order goes to the recipient."
            ),
            sample_event_ids=(access.subject_event_id, withdrawal.event_id),
        )
        return Output(topics.TOPIC_ALERTS, None, access.recipient_org.encode(), alert.to_record())
