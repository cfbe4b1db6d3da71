"""The simulator's generator: determinism, realism, scenario injection and ground truth."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams.core.policy import Policy, load_policy, parse_policy
from streams.errors import ConfigError
from streams.settings import load_settings
from streams.simulate.engine import SimEvent
from streams.simulate.run import ProgressBar, run_simulation
from streams.simulate.scenarios import ScenarioSpec, parse_offset, parse_scenarios
from streams.simulate.workload import RHYTHM_PEAK, Workload, WorkloadConfig, rhythm

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "deploy" / "policy.example.yaml")
DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
START = 1_795_000_000_000 // DAY * DAY
PARTNER = "lovebird-partners"


def run(
    *,
    policy: Policy = POLICY,
    scenarios: list[ScenarioSpec] | None = None,
    **config: Any,
) -> tuple[Workload, list[SimEvent]]:
    settings = {"rate": 2.0, "duration_s": 3600.0, "users": 300, "seed": 1, **config}
    workload = Workload(policy, WorkloadConfig(**settings), scenarios or [])
    return workload, list(workload.events())


def test_same_seed_same_events_other_seed_other_events() -> None:
    specs = [ScenarioSpec("probe", 10 * MINUTE), ScenarioSpec("revoke-after-training", 20 * MINUTE)]
    _, a = run(scenarios=specs)
    _, b = run(scenarios=specs)
    _, c = run(scenarios=specs, seed=2)
    assert [e.fields for e in a] == [e.fields for e in b]
    assert [e.fields for e in a] != [e.fields for e in c]


def test_events_are_ordered_and_consistent() -> None:
    _, events = run(duration_s=2 * 3600.0)
    photos: dict[str, str] = {}
    ids = set()
    last = 0
    for event in events:
        assert event.emit_at >= last
        last = event.emit_at
        assert event.occurred_at == event.emit_at
        ids.add(event.fields["event_id"])
        if event.kind == "upload":
            photos[event.fields["photo_id"]] = event.fields["owner_id"]
        elif event.kind in ("share", "training_read"):
            # every request names a photo uploaded earlier, by its owner
            assert photos[event.fields["photo_id"]] == event.fields["owner_id"]
            assert event.verdict in ("ALLOW", "DENY")
    assert len(ids) == len(events)
    assert events[0].emit_at == START - HOUR  # the bootstrap comes first
    assert max(e.emit_at for e in events) < START + 2 * HOUR


@pytest.fixture(scope="module")
def one_day() -> tuple[Workload, list[SimEvent]]:
    return run(duration_s=86400.0, rate=1.0)


def test_the_daily_rhythm(one_day: tuple[Workload, list[SimEvent]]) -> None:
    mean = sum(rhythm(m / 60) for m in range(24 * 60)) / (24 * 60)
    assert mean == pytest.approx(1.0)
    assert max(range(24), key=rhythm) == 21
    assert 2.0 < RHYTHM_PEAK < 2.5
    _, events = one_day
    by_hour = Counter((e.emit_at % DAY) // HOUR for e in events if e.emit_at >= START)
    assert by_hour[21] > 4 * by_hour[4]
    assert by_hour[13] > by_hour[4]


def test_the_mix_of_consents_and_requests() -> None:
    workload, events = run(duration_s=4 * 3600.0, users=2000)
    users = workload.engine.users
    granted = Counter(
        purpose for u in users for purpose in {p for (p, _), g in u.consents.items() if g.granted}
    )
    assert 0.28 < granted["ML_TRAINING"] / len(users) < 0.42
    assert 0.33 < granted["PARTNER_SHARING"] / len(users) < 0.47
    face = sum(
        1
        for u in users
        if any("FACE_BIOMETRIC" in g.categories for (p, _), g in u.consents.items())
    )
    assert 0.04 < face / len(users) < 0.14
    kinds = Counter(e.kind for e in events)
    withdrawals = sum(1 for e in events if e.kind == "consent" and not e.fields["granted"])
    expiring = sum(1 for e in events if e.kind == "consent" and e.fields["expires_at"])
    assert withdrawals > 0 and expiring > 0
    recipients = Counter(
        (e.fields.get("recipient_org"), e.verdict) for e in events if e.kind == "share"
    )
    assert recipients[("photo-cdn", "ALLOW")] > recipients[("insights-team", "ALLOW")] > 0
    assert (
        recipients[("lovebird-partners", "ALLOW")] > 5 * recipients[("lovebird-partners", "DENY")]
    )
    assert kinds["share"] > kinds["upload"] > 0


def test_nightly_training_reads_only_allowed_photos(
    one_day: tuple[Workload, list[SimEvent]],
) -> None:
    workload, events = one_day
    reads = [e for e in events if e.kind == "training_read"]
    assert reads and all(e.verdict == "ALLOW" for e in reads)
    hours = Counter((e.emit_at % DAY) // HOUR for e in reads)
    assert set(hours) <= {1, 2, 3, 4, 5}
    assert {e.fields["model_id"] for e in reads} == {"scene-v3", "face-embed-v1"}
    assert all(
        "FACE_BIOMETRIC" in e.fields["categories"] for e in reads if "face" in e.fields["model_id"]
    )
    assert workload.unclaimed_crossings() == []  # a day of normal traffic crosses nothing


def test_partner_volume_is_capped_below_the_limit_at_high_rates() -> None:
    workload, events = run(duration_s=600.0, rate=200.0, start_ms=START + 20 * HOUR)
    partner = [e for e in events if e.kind == "share" and e.fields["recipient_org"] == PARTNER]
    per_hour = len(partner) * 6
    assert 0 < per_hour < 0.5 * 2000
    assert workload.unclaimed_crossings() == []


SMALL_LIMIT = parse_policy(
    (REPO / "deploy" / "policy.example.yaml")
    .read_text()
    .replace("max_photos_per_hour: 5000", "max_photos_per_hour: 100")
)


def test_bulk_2014_injection_and_ground_truth() -> None:
    workload, events = run(policy=SMALL_LIMIT, scenarios=[ScenarioSpec("bulk-2014", 10 * MINUTE)])
    injected = [e for e in events if e.scenario == "bulk-2014"]
    assert len(injected) == sum(
        1 for e in events if e.kind == "upload" and e.emit_at < START + 10 * MINUTE
    )
    assert {e.fields["org"] for e in injected} == {"acme-vision"}
    assert len({e.fields["owner_id"] for e in injected}) > 250  # many users
    denied = [e for e in injected if e.verdict != "ALLOW"]
    assert len(denied) > len(injected) / 2  # most without consent
    truth = {g.expected_alert: g for g in workload.ground_truth}
    assert set(truth) == {"UNCONSENTED_TRAINING", "BULK_EXPORT"}
    unconsented = truth["UNCONSENTED_TRAINING"]
    assert unconsented.subject == injected[0].fields["job_id"]
    assert unconsented.crossing_ms == denied[0].occurred_at
    bulk = truth["BULK_EXPORT"]
    assert bulk.subject == "acme-vision"
    allowed = [e.occurred_at for e in injected if e.verdict == "ALLOW"]
    assert bulk.crossing_ms == allowed[100]  # the 101st allowed read in the hour crosses 100
    assert bulk.start_ms == START + 10 * MINUTE <= bulk.end_ms <= START + 40 * MINUTE
    json.dumps([g.to_json() for g in workload.ground_truth])
    assert workload.unclaimed_crossings() == []


def test_probe_injection() -> None:
    workload, events = run(scenarios=[ScenarioSpec("probe", 5 * MINUTE, {"minutes": 2})])
    injected = [e for e in events if e.scenario == "probe"]
    requesters = {e.fields["requester"] for e in injected}
    assert len(requesters) == 1
    denials = [e for e in injected if e.verdict == "DENY"]
    assert len(denials) > 100
    [requester_truth, *_] = workload.ground_truth
    assert requester_truth.subject == requesters.pop()
    assert requester_truth.crossing_ms == denials[50].occurred_at  # the 51st denial in a minute
    assert START + 5 * MINUTE <= requester_truth.start_ms < requester_truth.crossing_ms


def test_slow_drip_injection() -> None:
    spec = ScenarioSpec("slow-drip", 0, {"per_hour": 600, "hours": 1})
    workload, events = run(scenarios=[spec], duration_s=2 * 3600.0)
    injected = [e for e in events if e.scenario == "slow-drip"]
    assert 450 < len(injected) < 750
    assert all(e.verdict == "ALLOW" and e.fields["org"] == "acme-vision" for e in injected)
    [truth] = workload.ground_truth
    assert truth.expected_alert == "BULK_EXPORT" and truth.crossing_ms is None
    assert truth.details["limit"] == 5000


def test_revoke_after_training_injection() -> None:
    workload, events = run(scenarios=[ScenarioSpec("revoke-after-training", 15 * MINUTE)])
    injected = [e for e in events if e.scenario == "revoke-after-training"]
    *reads, withdrawal = injected
    assert reads and all(r.kind == "training_read" and r.verdict == "ALLOW" for r in reads)
    assert withdrawal.kind == "consent" and withdrawal.fields["granted"] is False
    assert withdrawal.barrier
    assert withdrawal.occurred_at < reads[0].occurred_at  # backdated before the reads
    assert withdrawal.emit_at > reads[-1].emit_at  # but produced after them
    [truth] = workload.ground_truth
    assert truth.expected_alert == "RETROACTIVE_VIOLATION"
    assert truth.details["user_id"] == withdrawal.fields["user_id"]
    assert truth.details["decisions"] == [r.fields["event_id"] for r in reads]
    assert truth.crossing_ms == withdrawal.emit_at


def test_a_scenario_cut_short_by_the_end_still_writes_ground_truth() -> None:
    workload, _ = run(scenarios=[ScenarioSpec("bulk-2014", 50 * MINUTE)])
    truth = workload.ground_truth
    assert len(truth) == 2 and all(g.end_ms < START + HOUR for g in truth)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("90s", 90_000), ("30m", 1_800_000), ("4d10h", 4 * DAY + 10 * HOUR), ("12", 12_000)],
)
def test_parse_offset(text: str, ms: int) -> None:
    assert parse_offset(text) == ms


def test_parse_scenarios() -> None:
    specs = parse_scenarios(["probe", "bulk-2014@2h", "slow-drip"], 4 * HOUR)
    assert [(s.name, s.offset_ms) for s in specs] == [
        ("probe", HOUR),
        ("bulk-2014", 2 * HOUR),
        ("slow-drip", 3 * HOUR),
    ]
    with pytest.raises(ConfigError):
        parse_scenarios(["nope"], HOUR)
    with pytest.raises(ConfigError):
        parse_offset("3x")


def test_progress_bar_without_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar(0, 1000, out)
    for t in range(0, 1001, 50):
        bar.update(t, t)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("simulate: 0%") and lines[-1].startswith("simulate: 100%")
    assert len(lines) == 11


class FakeProducer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.flushes = 0

    def photo_uploaded(self, **fields: Any) -> str:
        self.calls.append(("upload", fields))
        return str(fields["event_id"])

    def consent_changed(self, **fields: Any) -> str:
        self.calls.append(("consent", fields))
        return str(fields["event_id"])

    def share_requested(self, **fields: Any) -> str:
        self.calls.append(("share", fields))
        return str(fields["event_id"])

    def training_read(self, **fields: Any) -> str:
        self.calls.append(("training_read", fields))
        return str(fields["event_id"])

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1


def test_run_simulation_produces_through_the_sdk_and_writes_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streams.simulate.run.BARRIER_SECONDS", 0.0)
    producer = FakeProducer()
    truth_path = tmp_path / "truth.jsonl"
    report = run_simulation(
        load_settings(),
        rate=2.0,
        duration_s=1800.0,
        scenarios=["probe@5m", "revoke-after-training@10m"],
        seed=4,
        ground_truth_path=truth_path,
        speedup=None,
        policy_path=REPO / "deploy" / "policy.example.yaml",
        users=200,
        start_ms=START,
        progress=False,
        producer=producer,  # type: ignore[arg-type]
    )
    _, expected = run(
        rate=2.0,
        duration_s=1800.0,
        users=200,
        seed=4,
        scenarios=parse_scenarios(["probe@5m", "revoke-after-training@10m"], 1_800_000),
    )
    assert [(k, f) for k, f in producer.calls] == [(e.kind, e.fields) for e in expected]
    assert producer.flushes >= 2  # the barrier, and the end
    lines = [json.loads(line) for line in truth_path.read_text().splitlines()]
    assert [line["scenario"] for line in lines] == [g.scenario for g in report.ground_truth]
    assert {line["scenario"] for line in lines} == {"probe", "revoke-after-training"}
    assert sum(report.events.values()) == len(expected)
    assert report.injected["probe"] > 0
    assert report.lines()[0].startswith("simulated ")


def test_run_simulation_needs_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTINEL_POLICY", raising=False)
    with pytest.raises(ConfigError):
        run_simulation(
            load_settings(),
            rate=1,
            duration_s=1,
            scenarios=[],
            seed=0,
            ground_truth_path=None,
            speedup=None,
            producer=FakeProducer(),  # type: ignore[arg-type]
        )
