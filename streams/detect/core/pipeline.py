"""All detectors over one stream of decisions, with in-memory state: the pure reference runner.

:class:`DetectorSet` routes each :class:`~streams.detect.core.records.DecisionEvent` to the
bulk-export state of its recipient, the denial-burst states of its requester and recipient, the
unconsented-training state of its job, and the lineage index, exactly as the streaming app does
with its tables. It is what unit tests, the detection-quality benchmark and replays run in-process;
its states serialize like the app's, so both produce the same alerts for the same decisions in
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.policy import Policy
from streams.detect.core.bulk_export import (
    BulkExportConfig,
    BulkExportDetector,
    BulkExportOutcome,
    BulkExportState,
)
from streams.detect.core.denied_burst import (
    BurstDimension,
    DeniedBurstConfig,
    DeniedBurstDetector,
    DeniedBurstState,
)
from streams.detect.core.lineage import LineageIndex
from streams.detect.core.records import Alert, Control, DecisionEvent
from streams.detect.core.unconsented_training import (
    TrainingJobState,
    UnconsentedTrainingConfig,
    UnconsentedTrainingDetector,
)


@dataclass(frozen=True, slots=True)
class Findings:
    """What one decision produced: alerts (and alert updates), controls, bulk figures."""

    alerts: tuple[Alert, ...] = ()
    controls: tuple[Control, ...] = ()
    bulk: BulkExportOutcome | None = None


@dataclass
class DetectorSet:
    """The three detectors and the lineage index, with per-subject states in dicts."""

    bulk: BulkExportDetector
    bursts: DeniedBurstDetector = field(default_factory=DeniedBurstDetector)
    training: UnconsentedTrainingDetector = field(default_factory=UnconsentedTrainingDetector)
    lineage: LineageIndex = field(default_factory=LineageIndex)
    bulk_states: dict[str, BulkExportState] = field(default_factory=dict)
    burst_states: dict[tuple[BurstDimension, str], DeniedBurstState] = field(default_factory=dict)
    job_states: dict[str, TrainingJobState] = field(default_factory=dict)

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        *,
        bulk: BulkExportConfig | None = None,
        bursts: DeniedBurstConfig | None = None,
        training: UnconsentedTrainingConfig | None = None,
    ) -> DetectorSet:
        """Return detectors configured for ``policy``'s recipients."""
        return cls(
            BulkExportDetector.from_policy(policy, bulk),
            DeniedBurstDetector(bursts),
            UnconsentedTrainingDetector(training),
        )

    def note_job_model(self, job_id: str, model_id: str, org: str | None = None) -> None:
        """Learn which model a job trains (e.g. from a ``TrainingRead``)."""
        self.lineage.note_job_model(job_id, model_id, org)

    def observe(self, event: DecisionEvent) -> Findings:
        """Apply one decision to every detector; return what it raised."""
        alerts: list[Alert] = []
        controls: list[Control] = []
        org = event.recipient_org
        state = self.bulk_states.get(org)
        if state is None:
            state = self.bulk_states[org] = self.bulk.new_state(org)
        outcome = self.bulk.observe(state, event)
        if outcome.alert is not None:
            alerts.append(outcome.alert)
        if outcome.control is not None:
            controls.append(outcome.control)
        for key in self.bursts.subjects(event):
            burst = self.burst_states.get(key)
            if burst is None:
                burst = self.burst_states[key] = self.bursts.new_state(*key)
            found = self.bursts.observe(burst, event).alert
            if found is not None:
                alerts.append(found)
            if burst.is_idle():
                del self.burst_states[key]
        if self.training.watches(event):
            job = self.job_states.get(event.actor)
            if job is None:
                job = self.job_states[event.actor] = self.training.new_state(event.actor)
            found = self.training.observe(job, event, model_id=self.lineage.model_of(event.actor))
            if found is not None:
                alerts.append(found)
        self.lineage.record(event)
        return Findings(tuple(alerts), tuple(controls), outcome)

    def to_dict(self) -> dict[str, Any]:
        """Return every state as one JSON-able dict (for snapshots and tests)."""
        return {
            "bulk": {org: s.to_dict() for org, s in sorted(self.bulk_states.items())},
            "bursts": {s.key: s.to_dict() for s in self.burst_states.values()},
            "jobs": {job: s.to_dict() for job, s in sorted(self.job_states.items())},
            "lineage": self.lineage.to_dict(),
        }

    def load(self, data: dict[str, Any]) -> None:
        """Replace every state with those of :meth:`to_dict` output."""
        self.bulk_states = {org: self.bulk.load(s) for org, s in data.get("bulk", {}).items()}
        bursts = [self.bursts.load(s) for s in data.get("bursts", {}).values()]
        self.burst_states = {(s.dimension, s.subject): s for s in bursts}
        self.job_states = {
            job: TrainingJobState.from_dict(s) for job, s in data.get("jobs", {}).items()
        }
        self.lineage = LineageIndex.from_dict(data.get("lineage", {}))
