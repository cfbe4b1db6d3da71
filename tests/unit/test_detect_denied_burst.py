"""DENIED_BURST: many denials quickly, per requester and per recipient, once per episode."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detect.core.denied_burst import (
    BurstDimension,
    DeniedBurstConfig,
    DeniedBurstDetector,
    DeniedBurstState,
)
from streams.detect.core.records import AlertKind, DecisionEvent, Severity
from streams.errors import ConfigError
from tests.unit.detect_support import ALERTS, T0, decision, fits_schema

PROBER = "scraper-9"
PARTNER = "lovebird-partners"


class Runner:
    """Routes decisions to per-subject states, as the faust app does with a table."""

    def __init__(self, config: DeniedBurstConfig | None = None) -> None:
        self.det = DeniedBurstDetector(config)
        self.states: dict[tuple[BurstDimension, str], DeniedBurstState] = {}
        self.alerts: list[tuple[BurstDimension, str, int, str]] = []

    def feed(self, event: DecisionEvent) -> None:
        for key in self.det.subjects(event):
            state = self.states.get(key) or self.det.new_state(*key)
            out = self.det.observe(state, event)
            self.states[key] = state
            if out.alert is not None:
                self.alerts.append((key[0], key[1], out.alert.raised_at, out.alert.alert_id))


def share(
    at: int, verdict: str, requester: str = PROBER, recipient: str = PARTNER
) -> DecisionEvent:
    return decision(at, verdict=verdict, actor=requester, recipient=recipient, kind="SHARE")


@pytest.mark.parametrize(
    ("denied", "allowed", "spacing_ms", "expected"),
    [
        (50, 0, 1000, set()),  # 50 is not more than 50
        (51, 0, 1000, {BurstDimension.REQUESTER, BurstDimension.RECIPIENT}),
        (51, 40, 500, {BurstDimension.REQUESTER, BurstDimension.RECIPIENT}),  # 56% denied
        (60, 100, 300, set()),  # a busy service with a normal share of denials
        (200, 0, 2000, set()),  # slow: never more than 30 in a minute
    ],
)
def test_burst_table(
    denied: int, allowed: int, spacing_ms: int, expected: set[BurstDimension]
) -> None:
    run = Runner()
    verdicts = ["DENY"] * denied + ["ALLOW"] * allowed
    random.Random(0).shuffle(verdicts)
    for n, verdict in enumerate(verdicts):
        run.feed(share(T0 + n * spacing_ms, verdict))
    assert {dim for dim, *_ in run.alerts} == expected
    assert len(run.alerts) == len(expected)  # one per subject


def test_alert_content_and_schema() -> None:
    det = DeniedBurstDetector()
    state = det.new_state(BurstDimension.REQUESTER, PROBER)
    outs = [det.observe(state, share(T0 + i * 100, "DENY")) for i in range(60)]
    raised = [o for o in outs if o.alert is not None]
    assert len(raised) == 1 and raised[0] is outs[50]
    alert = raised[0].alert
    assert alert is not None
    assert alert.kind is AlertKind.DENIED_BURST
    assert alert.severity is Severity.WARNING
    assert alert.subject == PROBER
    assert alert.observed == 51 and alert.threshold == 50
    assert alert.raised_at == T0 + 5000
    assert len(alert.sample_event_ids) == 10
    assert PROBER in alert.summary and "probing" in alert.summary
    assert fits_schema(ALERTS, alert.to_record())


def test_training_reads_and_holds_are_not_denials() -> None:
    run = Runner()
    for i in range(100):
        run.feed(decision(T0 + i * 10, verdict="DENY", kind="TRAINING_READ"))
        run.feed(share(T0 + i * 10, "HOLD"))
    assert run.alerts == []


def test_the_same_probe_rearms_only_after_it_calms_down() -> None:
    run = Runner()
    t = T0
    for i in range(120):  # two minutes at 1 denial a second: ~60 in any minute
        run.feed(share(t + i * 1000, "DENY"))
    assert len([a for a in run.alerts if a[0] is BurstDimension.REQUESTER]) == 1
    for i in range(300):  # 24 a minute: below 50% of 50, the episode ends
        run.feed(share(t + 120_000 + i * 2500, "DENY"))
    assert len([a for a in run.alerts if a[0] is BurstDimension.REQUESTER]) == 1
    assert not run.states[(BurstDimension.REQUESTER, PROBER)].episode.active
    for i in range(60):
        run.feed(share(t + 900_000 + i * 500, "DENY"))
    ids = [a[3] for a in run.alerts if a[0] is BurstDimension.REQUESTER]
    assert len(ids) == 2 and ids[0] != ids[1]


def test_state_round_trips_and_idles() -> None:
    det = DeniedBurstDetector()
    state = det.new_state(BurstDimension.RECIPIENT, PARTNER)
    for i in range(70):
        det.observe(state, share(T0 + i * 100, "DENY"))
    again = det.load(json.loads(json.dumps(state.to_dict())))
    assert again.to_dict() == state.to_dict()
    assert again.key == f"recipient:{PARTNER}"
    assert not again.is_idle()
    det.observe(again, share(T0 + 10 * 60_000, "ALLOW"))
    assert again.is_idle()


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        DeniedBurstConfig(bucket_ms=7_000)
    with pytest.raises(ConfigError):
        DeniedBurstConfig(min_deny_ratio=2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3000), st.sampled_from(["DENY", "DENY", "ALLOW", "HOLD"])),
        max_size=400,
    )
)
def test_at_most_one_alert_per_episode(seq: list[tuple[int, str]]) -> None:
    config = DeniedBurstConfig(min_denials=10)
    det = DeniedBurstDetector(config)
    state = det.new_state(BurstDimension.REQUESTER, PROBER)
    t = T0
    active = False
    for gap, verdict in seq:
        t += gap
        out = det.observe(state, share(t, verdict))
        if out.alert is not None:
            assert not active  # never twice in one episode
            assert out.denials > 10
        if out.episode_ended:
            assert active and out.denials < 5
        active = state.episode.active
