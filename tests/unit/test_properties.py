"""Property tests: consent decisions against an independent, deliberately naive oracle."""

from __future__ import annotations

import dataclasses
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.consent import AllowedAccess, ConsentHistory, UserState
from streams.core.evaluate import evaluate
from streams.core.model import (
    AccessRequest,
    ConsentRecord,
    DataCategory,
    Decision,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
)
from streams.core.policy import parse_policy

BASE_POLICY = parse_policy(
    """\
purposes:
  ML_TRAINING: {basis: consent}
  RESEARCH:    {basis: consent}
recipients:
  acme-vision:
    agreement: {id: DPA-1}
    purposes: [ML_TRAINING, RESEARCH]
  no-deal:
    purposes: [ML_TRAINING, RESEARCH]
"""
)
PURPOSES = [Purpose.ML_TRAINING, Purpose.RESEARCH]
CATEGORIES = [DataCategory.IMAGE, DataCategory.FACE_BIOMETRIC, DataCategory.LOCATION]
ORG = "acme-vision"

times = st.integers(min_value=0, max_value=30)  # a small range, so ties are common
categories = st.frozensets(st.sampled_from(CATEGORIES))

consent_events = st.lists(
    st.builds(
        lambda event_id, at, purpose, org, cats, granted, expires: ConsentRecord(
            event_id, "u1", at, purpose, org, cats, granted, "n", expires
        ),
        event_id=st.text(alphabet="abcxyz", min_size=1, max_size=3),
        at=times,
        purpose=st.sampled_from(PURPOSES),
        org=st.sampled_from([None, ORG, "other-org"]),
        cats=categories,
        granted=st.booleans(),
        expires=st.none() | times,
    ),
    max_size=12,
    unique_by=lambda c: c.event_id,
)

requests = st.builds(
    lambda at, purpose, cats, kind: AccessRequest(
        "e1", kind, at, "p1", "u1", "actor", ORG, purpose, cats
    ),
    at=times,
    purpose=st.sampled_from(PURPOSES),
    cats=categories,
    kind=st.sampled_from(list(SubjectKind)),
)
sensitive_sets = st.frozensets(st.sampled_from(CATEGORIES))


def oracle(
    events: list[ConsentRecord], request: AccessRequest, sensitive: frozenset[DataCategory]
) -> tuple[Reason, str | None]:
    """The contract's section 3, step 3, written as plainly as possible."""
    relevant = [
        e
        for e in events
        if e.purpose == request.purpose
        and (e.recipient_org is None or e.recipient_org == request.recipient_org)
        and e.occurred_at_ms <= request.occurred_at_ms
    ]
    if not relevant:
        return Reason.NO_CONSENT, None

    def later(a: ConsentRecord, b: ConsentRecord) -> ConsentRecord:
        if a.occurred_at_ms != b.occurred_at_ms:
            return a if a.occurred_at_ms > b.occurred_at_ms else b
        if a.granted != b.granted:  # same millisecond: the withdrawal wins (fail closed)
            return b if a.granted else a
        return a if a.event_id > b.event_id else b

    latest = reduce(later, relevant)
    if not latest.granted:
        return Reason.CONSENT_REVOKED, latest.event_id
    if latest.expires_at_ms is not None and latest.expires_at_ms <= request.occurred_at_ms:
        return Reason.CONSENT_EXPIRED, latest.event_id
    for category in request.categories | {DataCategory.IMAGE}:  # a request names a photo
        if category in sensitive:
            covered = category in latest.categories
        else:
            covered = not latest.categories or category in latest.categories
        if not covered:
            return Reason.CATEGORY_NOT_CONSENTED, latest.event_id
    return Reason.CONSENTED, latest.event_id


def decide(
    events: list[ConsentRecord], request: AccessRequest, sensitive: frozenset[DataCategory]
) -> Decision:
    history = ConsentHistory("u1")
    for e in events:
        history.add(e)
    policy = dataclasses.replace(BASE_POLICY, sensitive_categories=sensitive)
    return evaluate(request, photo_owner="u1", consents=history, suspended=False, policy=policy)


@settings(max_examples=400, deadline=None)
@given(consent_events, requests, sensitive_sets)
def test_consent_decision_matches_oracle(
    events: list[ConsentRecord], request: AccessRequest, sensitive: frozenset[DataCategory]
) -> None:
    decision = decide(events, request, sensitive)
    assert (decision.reason, decision.consent_event_id) == oracle(events, request, sensitive)
    assert (decision.verdict is Verdict.ALLOW) == (decision.reason is Reason.CONSENTED)
    if decision.verdict is Verdict.ALLOW:
        grant = next(e for e in events if e.event_id == decision.consent_event_id)
        assert grant.granted and grant.purpose == request.purpose
        assert grant.recipient_org in (None, request.recipient_org)
        assert grant.occurred_at_ms <= request.occurred_at_ms
        assert grant.expires_at_ms is None or grant.expires_at_ms > request.occurred_at_ms
        judged = request.categories | {DataCategory.IMAGE}
        assert all(c in grant.categories for c in judged & sensitive)
        assert not grant.categories or judged <= grant.categories


@settings(deadline=None)
@given(st.data(), consent_events, requests, sensitive_sets)
def test_decision_independent_of_arrival_order(
    data: st.DataObject,
    events: list[ConsentRecord],
    request: AccessRequest,
    sensitive: frozenset[DataCategory],
) -> None:
    expected = decide(events, request, sensitive)
    shuffled = data.draw(st.permutations(events))
    replayed = shuffled + data.draw(st.lists(st.sampled_from(events))) if events else shuffled
    assert decide(replayed, request, sensitive) == expected


@settings(deadline=None)
@given(
    consent_events,
    requests,
    st.sampled_from([ORG, "no-deal", "nobody"]),
    st.booleans(),
    st.sampled_from(["u1", "u2", None]),
)
def test_allow_needs_every_gate_rule(
    events: list[ConsentRecord],
    request: AccessRequest,
    org: str,
    suspended: bool,
    photo_owner: str | None,
) -> None:
    request = dataclasses.replace(request, recipient_org=org)
    history = ConsentHistory("u1")
    for e in events:
        history.add(e)
    decision = evaluate(
        request, photo_owner=photo_owner, consents=history, suspended=suspended, policy=BASE_POLICY
    )
    if decision.verdict is Verdict.ALLOW:
        assert photo_owner == "u1" and org == ORG and not suspended
        assert oracle(events, request, BASE_POLICY.sensitive_categories)[0] is Reason.CONSENTED
    if suspended and decision.verdict is not Verdict.DENY:
        assert decision.verdict is Verdict.HOLD


@settings(deadline=None)
@given(consent_events, st.lists(requests, max_size=8))
def test_state_round_trip_preserves_decisions(
    events: list[ConsentRecord], batch: list[AccessRequest]
) -> None:
    state = UserState("u1")
    for e in events:
        state.apply_consent(e)
    restored = UserState.from_bytes(state.to_bytes())
    for request in batch:
        before = evaluate(
            request, photo_owner="u1", consents=state.consents, suspended=False, policy=BASE_POLICY
        )
        after = evaluate(
            request,
            photo_owner="u1",
            consents=restored.consents,
            suspended=False,
            policy=BASE_POLICY,
        )
        assert after == before


@settings(max_examples=300, deadline=None)
@given(
    consent_events,
    st.lists(requests, max_size=10),
    times,
    st.sampled_from([None, ORG, "other-org"]),
    st.sampled_from(PURPOSES),
)
def test_retroactive_violations_are_exactly_the_reversed_allows(
    events: list[ConsentRecord],
    batch: list[AccessRequest],
    withdrawal_at: int,
    withdrawal_org: str | None,
    withdrawal_purpose: Purpose,
) -> None:
    """A late withdrawal flags an earlier ALLOW iff re-deciding it now names that withdrawal."""
    state = UserState("u1")
    for e in events:
        state.apply_consent(e)
    allowed: dict[str, AccessRequest] = {}
    for i, request in enumerate(batch):
        request = dataclasses.replace(request, event_id=f"e{i}")
        decision = evaluate(
            request, photo_owner="u1", consents=state.consents, suspended=False, policy=BASE_POLICY
        )
        if decision.allowed:
            allowed[request.event_id] = request
            state.record_allowed(
                AllowedAccess(
                    f"d{i}", request.event_id, request.occurred_at_ms, request.purpose,
                    request.recipient_org, decision.consent_event_id,
                )
            )  # fmt: skip

    withdrawal = ConsentRecord(
        "w-late", "u1", withdrawal_at, withdrawal_purpose, withdrawal_org, frozenset(), False
    )
    flagged = {a.subject_event_id for a in state.apply_consent(withdrawal)}
    expected = set()
    for event_id, request in allowed.items():
        again = evaluate(
            request, photo_owner="u1", consents=state.consents, suspended=False, policy=BASE_POLICY
        )
        if again.consent_event_id == "w-late":
            assert again.reason is Reason.CONSENT_REVOKED
            expected.add(event_id)
        else:
            assert again.allowed  # nothing else changed
    assert flagged == expected
