"""The detectors end to end on simulated decisions (the gate's verdicts as predicted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.core.policy import load_policy
from streams.detect.core.pipeline import DetectorSet
from streams.detect.core.records import Alert, AlertKind
from streams.simulate.scenarios import ScenarioSpec
from streams.simulate.workload import Workload, WorkloadConfig

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "deploy" / "policy.example.yaml")
DAY = 86_400_000
HOUR = 3_600_000


def detect(workload: Workload, detectors: DetectorSet) -> list[Alert]:
    raised = []
    for event in workload.events():
        if event.kind == "training_read":
            detectors.note_job_model(event.fields["job_id"], event.fields["model_id"])
        decision = event.decision()
        if decision is None:
            continue
        raised.extend(a for a in detectors.observe(decision).alerts if a.revision == 0)
    return raised


def test_an_hour_with_every_short_scenario() -> None:
    scenarios = [
        ScenarioSpec("probe", 5 * 60_000),
        ScenarioSpec("bulk-2014", 15 * 60_000, {"minutes": 20}),
    ]
    config = WorkloadConfig(rate=3.0, duration_s=3600.0, users=5000, seed=5)
    workload = Workload(POLICY, config, scenarios)
    detectors = DetectorSet.from_policy(POLICY)
    alerts = detect(workload, detectors)
    kinds = sorted((a.kind.value, a.subject) for a in alerts)
    truth = sorted(
        (g.expected_alert, g.subject) for g in workload.ground_truth if g.crossing_ms is not None
    )
    assert kinds == truth  # no miss, no false alert
    for alert in alerts:
        [g] = [
            g
            for g in workload.ground_truth
            if (g.expected_alert, g.subject) == (alert.kind.value, alert.subject)
        ]
        assert g.crossing_ms is not None and abs(alert.raised_at - g.crossing_ms) <= 5_000
    bulk = next(a for a in alerts if a.kind is AlertKind.BULK_EXPORT)
    assert bulk.action.value == "RECIPIENT_SUSPENDED" and bulk.observed == 5001
    unconsented = next(a for a in alerts if a.kind is AlertKind.UNCONSENTED_TRAINING)
    assert "faceprint-2014" in unconsented.summary
    job = unconsented.subject
    assert detectors.job_states[job].affected_users > 1000
    # the state survives a JSON round trip
    again = DetectorSet.from_policy(POLICY)
    again.load(json.loads(json.dumps(detectors.to_dict())))
    assert again.to_dict() == detectors.to_dict()


@pytest.mark.slow
def test_a_week_of_normal_traffic_alerts_only_on_the_injected_slow_drip() -> None:
    scenarios = [
        ScenarioSpec("slow-drip", 5 * DAY + 10 * HOUR, {"hours": 3}),
        ScenarioSpec("revoke-after-training", 6 * DAY + 12 * HOUR),
    ]
    config = WorkloadConfig(rate=1.0, duration_s=7 * 86400.0, users=1500, seed=11)
    workload = Workload(POLICY, config, scenarios)
    detectors = DetectorSet.from_policy(POLICY)
    alerts = detect(workload, detectors)
    assert [(a.kind, a.subject) for a in alerts] == [(AlertKind.BULK_EXPORT, "acme-vision")]
    [drip] = [g for g in workload.ground_truth if g.scenario == "slow-drip"]
    [alert] = alerts
    assert drip.start_ms < alert.raised_at < drip.start_ms + HOUR
    assert alert.observed < 5000 and alert.baseline is not None
    # lineage: the revoked user's photos trained scene-v3
    [revoke] = [g for g in workload.ground_truth if g.scenario == "revoke-after-training"]
    models = detectors.lineage.models_for_user(revoke.details["user_id"])
    assert "scene-v3" in [m.model_id for m in models]
    assert revoke.details["user_id"] in detectors.lineage.users_for_model("scene-v3")
