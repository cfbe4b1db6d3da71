"""UNCONSENTED_TRAINING: the job, the model, the users affected; one alert per job episode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detect.core.records import AlertKind, Severity
from streams.detect.core.unconsented_training import (
    MODEL_UNKNOWN,
    TrainingJobState,
    UnconsentedTrainingDetector,
)
from tests.unit.detect_support import ALERTS, HOUR, T0, decision, fits_schema

JOB = "acme-bulk-2014"


@pytest.mark.parametrize(
    ("decision_model", "caller_model", "named"),
    [
        ("face-v2", None, "model face-v2"),
        (None, "scene-v3", "model scene-v3"),
        ("face-v2", "scene-v3", "model face-v2"),  # the decision's own model wins
        (None, None, MODEL_UNKNOWN),
    ],
)
def test_first_unallowed_read_alerts_naming_job_and_model(
    decision_model: str | None, caller_model: str | None, named: str
) -> None:
    det = UnconsentedTrainingDetector()
    state = det.new_state(JOB)
    event = decision(T0, verdict="DENY", actor=JOB, owner="u-1", model_id=decision_model)
    alert = det.observe(state, event, model_id=caller_model)
    assert alert is not None
    assert alert.kind is AlertKind.UNCONSENTED_TRAINING
    assert alert.severity is Severity.CRITICAL
    assert alert.subject == JOB
    assert alert.observed == 1 and alert.revision == 0
    assert named in alert.summary and JOB in alert.summary and "acme-vision" in alert.summary
    assert alert.sample_event_ids == (event.subject_event_id,)
    assert fits_schema(ALERTS, alert.to_record())


@pytest.mark.parametrize(
    ("verdict", "kind", "alerts"),
    [
        ("ALLOW", "TRAINING_READ", False),
        ("DENY", "TRAINING_READ", True),
        ("HOLD", "TRAINING_READ", True),
        ("UNKNOWN", "TRAINING_READ", True),  # a symbol newer than us is never an ALLOW
        ("DENY", "SHARE", False),
    ],
)
def test_which_decisions_count(verdict: str, kind: str, alerts: bool) -> None:
    det = UnconsentedTrainingDetector()
    state = det.new_state(JOB)
    event = decision(T0, verdict=verdict, kind=kind, actor=JOB)
    assert (det.observe(state, event) is not None) is alerts


def test_counts_grow_with_updates_not_new_alerts() -> None:
    det = UnconsentedTrainingDetector()
    state = det.new_state(JOB)
    out = []
    for i in range(150):
        user = f"u-{i % 120}"  # 120 distinct users, 150 reads
        reason = "CONSENT_REVOKED" if i % 10 == 0 else "NO_CONSENT"
        event = decision(T0 + i * 1000, verdict="DENY", actor=JOB, owner=user, reason=reason)
        alert = det.observe(state, event, model_id="scene-v3")
        if alert is not None:
            out.append(alert)
    assert [a.revision for a in out] == [0, 1, 2]  # the alert, then at 10 and 100 users
    assert len({a.alert_id for a in out}) == 1
    assert [a.observed for a in out] == [1, 10, 100]
    assert state.reads == 150 and state.affected_users == 120
    assert state.reasons == {"CONSENT_REVOKED": 15, "NO_CONSENT": 135}


def test_a_quiet_hour_ends_the_episode() -> None:
    det = UnconsentedTrainingDetector()
    state = det.new_state(JOB)
    first = det.observe(state, decision(T0, verdict="DENY", actor=JOB))
    same = det.observe(state, decision(T0 + HOUR, verdict="DENY", actor=JOB))
    late = det.observe(state, decision(T0 + 10, verdict="DENY", actor=JOB))  # out of order
    new = det.observe(state, decision(T0 + 2 * HOUR + 1, verdict="DENY", actor=JOB))
    assert first is not None and same is None and late is None and new is not None
    assert new.alert_id != first.alert_id and new.observed == 1


def test_alert_ids_are_stable_and_state_round_trips() -> None:
    det = UnconsentedTrainingDetector()
    ids = []
    for _ in range(2):
        state = det.new_state(JOB)
        alert = det.observe(state, decision(T0 + 1234, verdict="DENY", actor=JOB))
        assert alert is not None
        ids.append(alert.alert_id)
    assert ids[0] == ids[1]
    data = json.loads(json.dumps(state.to_dict()))
    assert TrainingJobState.from_dict(data).to_dict() == state.to_dict()


def test_user_tracking_is_capped() -> None:
    from streams.detect.core.unconsented_training import UnconsentedTrainingConfig

    det = UnconsentedTrainingDetector(UnconsentedTrainingConfig(max_tracked_users=5))
    state = det.new_state(JOB)
    for i in range(8):
        det.observe(state, decision(T0 + i, verdict="DENY", actor=JOB, owner=f"u-{i}"))
    assert state.affected_users == 5 and state.users_capped
    alert = det._alert(state, T0 + 8, revision=1)
    assert "at least 5" in alert.summary


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 * HOUR), st.booleans()), max_size=60))
def test_one_alert_per_job_episode(seq: list[tuple[int, bool]]) -> None:
    det = UnconsentedTrainingDetector()
    state = det.new_state(JOB)
    t = T0
    last_bad: int | None = None
    for gap, allowed in seq:
        t += gap
        alert = det.observe(
            state, decision(t, verdict="ALLOW" if allowed else "DENY", actor=JOB, owner="u-1")
        )
        if allowed:
            assert alert is None
            continue
        new_episode = last_bad is None or t - last_bad > HOUR
        assert (alert is not None) is new_episode
        last_bad = t
