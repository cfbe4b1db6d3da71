"""The gate's holes of issue #18 (CONTRACT §3 "Duplicates", "Recipient ids", "Routing", §4).

Each test attacks one hole as a producer, consent service or operator who lies would, on the real
gate topology over the in-process driver (or the pure core where the hole is in the rules), and
failed on the code before the fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams import topics
from streams.core.consent import AllowedAccess, AllowedAccessLog, ConsentHistory
from streams.core.evaluate import evaluate
from streams.core.model import (
    AccessRequest,
    ConsentRecord,
    DataCategory,
    Purpose,
    Reason,
    SubjectKind,
    Verdict,
    canonical_recipient,
    recipient_id_problem,
)
from streams.core.policy import load_policy, parse_policy
from streams.errors import PolicyError
from streams.gate.ids import decision_id
from streams.gate.topology import GateTopology
from streams.runtime.testing import TopologyDriver, sample_record
from streams.testing.topologies import EXAMPLE_POLICY, gate_driver
from tests.unit.gate_stories import Writer, decisions_by_subject

MINUTE = 60_000
POLICY = load_policy(EXAMPLE_POLICY)
HORIZON_MS = POLICY.time.max_skew_ms + POLICY.time.max_lateness_ms
"""How long the gate remembers an event id (CONTRACT §3: at least max_skew + max_lateness)."""


def _share(
    driver: TopologyDriver[GateTopology],
    owner: str,
    photo: str,
    at: int,
    *,
    event_id: str,
    recipient: str = "acme-vision",
    categories: list[str] | None = None,
) -> None:
    record = sample_record(
        driver.codec,
        topics.TOPIC_SHARE_REQUESTS,
        event_id=event_id,
        occurred_at=at,
        share_id=f"share-{event_id}-{photo}",
        photo_id=photo,
        owner_id=owner,
        requester="share-svc",
        recipient_org=recipient,
        purpose="ML_TRAINING",
        categories=["IMAGE"] if categories is None else categories,
    )
    driver.feed(topics.TOPIC_SHARE_REQUESTS, owner, record, timestamp_ms=at)


def _erase_photo(driver: TopologyDriver[GateTopology], owner: str, photo: str, at: int) -> None:
    record = sample_record(
        driver.codec,
        topics.TOPIC_ERASURE_REQUESTS,
        event_id=f"erase-{photo}",
        occurred_at=at,
        request_id=f"erase-{photo}",
        user_id=owner,
        scope="PHOTO",
        photo_id=photo,
        reason="USER_REQUEST",
    )
    driver.feed(topics.TOPIC_ERASURE_REQUESTS, owner, record, timestamp_ms=at)


# -- 1. a reused event_id after the duplicate memory forgot it ---------------------------------


def test_a_reused_event_id_is_a_new_decision_and_its_photo_is_recalled() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    start = driver.clock()
    owner = "u-reuser"
    writer.upload(owner, "p-first", start - 2 * MINUTE)
    writer.upload(owner, "p-second", start - 2 * MINUTE)
    writer.consent(owner, start - MINUTE, granted=True, purpose="ML_TRAINING", categories=[])
    _share(driver, owner, "p-first", start, event_id="ev-reused")
    driver.run()

    later = driver.clock.advance(HORIZON_MS + MINUTE)  # the duplicate memory forgot ev-reused
    _share(driver, owner, "p-second", later, event_id="ev-reused")
    driver.run()

    decisions = decisions_by_subject(driver)["ev-reused"]
    assert [(d["photo_id"], d["verdict"]) for d in decisions] == [
        ("p-first", "ALLOW"),
        ("p-second", "ALLOW"),
    ]
    first, second = decisions
    assert first["decision_id"] != second["decision_id"], "one decision id per input record"
    assert len(driver.records(topics.TOPIC_SHARE_APPROVED)) == 2
    assert driver.outputs(topics.TOPIC_DLQ) == []

    _erase_photo(driver, owner, "p-second", later + 1000)
    driver.run()
    (order,) = driver.outputs(topics.TOPIC_RECALLS)
    assert order["recipient_org"] == "acme-vision"
    assert order["photo_ids"] == ["p-second"]
    assert order["decision_ids"] == [second["decision_id"]]


def test_decision_ids_are_stable_per_record_and_distinct_across_records() -> None:
    one = decision_id(topics.TOPIC_SHARE_REQUESTS, 3, 17, "ev-1")
    assert one == decision_id(topics.TOPIC_SHARE_REQUESTS, 3, 17, "ev-1")
    others = {
        decision_id(topics.TOPIC_SHARE_REQUESTS, 3, 18, "ev-1"),
        decision_id(topics.TOPIC_SHARE_REQUESTS, 2, 17, "ev-1"),
        decision_id(topics.TOPIC_TRAINING_READS, 3, 17, "ev-1"),
        decision_id(topics.TOPIC_SHARE_REQUESTS, 3, 17, "ev-2"),
    }
    assert one not in others and len(others) == 4


def test_the_allowed_access_log_keeps_two_accesses_that_share_an_event_id() -> None:
    log = AllowedAccessLog()
    for decision in ("d-1", "d-2"):
        access = AllowedAccess(decision, "ev-reused", 1000, Purpose.ML_TRAINING, "acme-vision", "c")
        assert log.add(access)
    assert [a.decision_id for a in log] == ["d-1", "d-2"]
    assert not log.add(AllowedAccess("d-1", "ev-reused", 1000, Purpose.ML_TRAINING, "x", "c"))


# -- 2. a photo is always IMAGE ------------------------------------------------------------------


@pytest.mark.parametrize("kind", [SubjectKind.SHARE, SubjectKind.TRAINING_READ])
@pytest.mark.parametrize("listed", [frozenset(), frozenset({DataCategory.PROFILE_TEXT})])
def test_a_consent_without_image_covers_no_photo(
    kind: SubjectKind, listed: frozenset[DataCategory]
) -> None:
    history = ConsentHistory("u1")
    history.add(
        ConsentRecord(
            "c-text", "u1", 1000, Purpose.ML_TRAINING, None,
            frozenset({DataCategory.PROFILE_TEXT}), True,
        )
    )  # fmt: skip
    request = AccessRequest(
        "ev-1", kind, 5000, "p1", "u1", "actor", "acme-vision", Purpose.ML_TRAINING, listed
    )
    decision = evaluate(request, photo_owner="u1", consents=history, suspended=False, policy=POLICY)
    assert (decision.verdict, decision.reason) == (Verdict.DENY, Reason.CATEGORY_NOT_CONSENTED)
    assert "IMAGE" in decision.explanation


def test_a_share_listing_no_category_is_judged_as_image_on_the_gate() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("u-text", "p-text", now - 2 * MINUTE)
    writer.consent(
        "u-text", now - MINUTE, granted=True, purpose="ML_TRAINING", categories=["PROFILE_TEXT"]
    )
    _share(driver, "u-text", "p-text", now, event_id="ev-empty", categories=[])
    driver.run()
    (decision,) = decisions_by_subject(driver)["ev-empty"]
    assert (decision["verdict"], decision["reason"]) == ("DENY", "CATEGORY_NOT_CONSENTED")
    assert driver.records(topics.TOPIC_SHARE_APPROVED) == []


# -- 3. recipient ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Acme-Vision", "acme-vision"),
        ("acme-vision ", "acme-vision"),
        ("\tACME-VISION\u00a0", "acme-vision"),
        ("\uff41cme-vision", "acme-vision"),  # full-width a: NFKC maps it
        ("acme\u2010vision", "acme\u2010vision"),  # U+2010 HYPHEN: NFKC keeps it
    ],
)
def test_recipient_ids_are_compared_after_nfkc_casefold_and_trim(
    given: str, canonical: str
) -> None:
    assert canonical_recipient(given) == canonical


def _policy_with_recipient(key: str) -> str:
    return f"""
purposes:
  ML_TRAINING: {{basis: consent}}
recipients:
  {key}:
    agreement: {{id: DPA-1}}
    purposes: [ML_TRAINING]
"""


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("Acme-Vision", "canonical form"),
        ('"acme-vision "', "canonical form"),
        ("acme\u2010vision", "outside [a-z0-9._-]"),
        ('"acme vision"', "outside [a-z0-9._-]"),
        ("acme/vision", "outside [a-z0-9._-]"),
    ],
)
def test_the_policy_refuses_recipient_ids_not_in_canonical_form(key: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(_policy_with_recipient(key), "p.yaml")
    message = str(caught.value)
    assert message.startswith("p.yaml:5:3: recipient id ")
    assert says in message
    assert repr(key.strip('"')) in message


def test_canonical_policy_ids_load() -> None:
    policy = parse_policy(_policy_with_recipient("acme-vision.eu_2"), "p.yaml")
    assert list(policy.recipients) == ["acme-vision.eu_2"]
    assert recipient_id_problem("acme-vision.eu_2") is None


@pytest.mark.parametrize("named", ["Acme-Vision", "acme-vision "])
def test_a_withdrawal_naming_the_recipient_differently_still_withdraws(named: str) -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    owner = "u-withdraws"
    writer.upload(owner, "p-1", now - 3 * MINUTE)
    grant = writer.consent(
        owner, now - 2 * MINUTE, granted=True, purpose="ML_TRAINING", categories=["IMAGE"],
        recipient_org="acme-vision",
    )  # fmt: skip
    withdrawal = writer.consent(
        owner, now - MINUTE, granted=False, purpose="ML_TRAINING", categories=["IMAGE"],
        recipient_org=named,
    )  # fmt: skip
    _share(driver, owner, "p-1", now, event_id="ev-after")
    driver.run()
    (decision,) = decisions_by_subject(driver)["ev-after"]
    assert (decision["verdict"], decision["reason"]) == ("DENY", "CONSENT_REVOKED")
    assert decision["consent_event_id"] == withdrawal != grant
    assert driver.outputs(topics.TOPIC_DLQ) == []


def test_a_consent_naming_an_unknown_recipient_is_dead_lettered_never_kept() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    owner = "u-lookalike"
    writer.upload(owner, "p-1", now - 3 * MINUTE)
    writer.consent(
        owner, now - 2 * MINUTE, granted=True, purpose="ML_TRAINING", categories=["IMAGE"],
        recipient_org="acme\u2010vision",  # U+2010: not acme-vision, and no recipient at all
    )  # fmt: skip
    _share(driver, owner, "p-1", now, event_id="req-1")
    driver.run()
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert (letter["source_topic"], letter["error_kind"]) == (
        topics.TOPIC_CONSENT_CHANGES,
        "UNKNOWN_RECIPIENT",
    )
    assert "acme\u2010vision" in letter["error"]
    (decision,) = decisions_by_subject(driver)["req-1"]
    assert (decision["verdict"], decision["reason"]) == ("DENY", "NO_CONSENT")


def test_requests_and_controls_naming_the_recipient_differently_are_that_recipient() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    writer.upload("u-case", "p-1", now - 3 * MINUTE)
    writer.consent("u-case", now - 2 * MINUTE, granted=True, purpose="ML_TRAINING")
    _share(driver, "u-case", "p-1", now, event_id="ev-upper", recipient="ACME-Vision ")
    driver.run()
    (allowed,) = decisions_by_subject(driver)["ev-upper"]
    assert (allowed["verdict"], allowed["recipient_org"]) == ("ALLOW", "acme-vision")

    control = _control("Acme-Vision", "SUSPEND_RECIPIENT", now)
    driver.control(topics.TOPIC_CONTROLS, "Acme-Vision", control)
    _share(driver, "u-case", "p-1", now + 1, event_id="ev-held", recipient="acme-vision")
    driver.run()
    (held,) = decisions_by_subject(driver)["ev-held"]
    assert (held["verdict"], held["reason"]) == ("HOLD", "RECIPIENT_SUSPENDED")


# -- 4. FACE_BIOMETRIC is always sensitive -------------------------------------------------------


@pytest.mark.parametrize("listed", ["[]", "[DEMOGRAPHIC]"])
def test_the_policy_refuses_sensitive_categories_without_face_biometric(listed: str) -> None:
    text = f"sensitive_categories: {listed}\n" + _policy_with_recipient("acme-vision")
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert str(caught.value).startswith("p.yaml:1:23: sensitive_categories must include")
    assert "FACE_BIOMETRIC" in str(caught.value)


# -- 10. a control keyed other than its recipient -----------------------------------------------


def _control(recipient: str, kind: str, at: int, control_id: str = "c-1") -> dict[str, Any]:
    return {
        "control_id": control_id,
        "at": at,
        "kind": kind,
        "recipient_org": recipient,
        "reason": "test",
        "actor": "unit",
    }


@pytest.mark.parametrize("key", ["someone-else", None])
def test_a_misrouted_control_is_dead_lettered_and_not_applied(key: str | None) -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    driver.control(topics.TOPIC_CONTROLS, key, _control("acme-vision", "SUSPEND_RECIPIENT", now))
    writer.upload("u-ctl", "p-1", now - 3 * MINUTE)
    writer.consent("u-ctl", now - 2 * MINUTE, granted=True, purpose="ML_TRAINING")
    _share(driver, "u-ctl", "p-1", now, event_id="req-1")
    driver.run()
    (letter,) = driver.outputs(topics.TOPIC_DLQ)
    assert (letter["source_topic"], letter["error_kind"]) == (topics.TOPIC_CONTROLS, "MISROUTED")
    (decision,) = decisions_by_subject(driver)["req-1"]
    assert decision["verdict"] == "ALLOW", "a misrouted SUSPEND is not applied"
    assert driver.topology.controls.whole, "a misrouted control holds nothing"


def test_a_misrouted_resume_does_not_lift_a_suspension() -> None:
    driver = gate_driver(partitions=1)
    writer = Writer(driver)
    now = driver.clock()
    driver.control(
        topics.TOPIC_CONTROLS, "acme-vision", _control("acme-vision", "SUSPEND_RECIPIENT", now)
    )
    resume = _control("acme-vision", "RESUME_RECIPIENT", now + 1, "c-2")
    driver.control(topics.TOPIC_CONTROLS, "lovebird-partners", resume)
    writer.upload("u-ctl", "p-1", now - 3 * MINUTE)
    writer.consent("u-ctl", now - 2 * MINUTE, granted=True, purpose="ML_TRAINING")
    _share(driver, "u-ctl", "p-1", now, event_id="req-1")
    driver.run()
    (decision,) = decisions_by_subject(driver)["req-1"]
    assert (decision["verdict"], decision["reason"]) == ("HOLD", "RECIPIENT_SUSPENDED")
    assert [d["error_kind"] for d in driver.outputs(topics.TOPIC_DLQ)] == ["MISROUTED"]
