"""The service's real topologies on the in-process driver (:mod:`streams.runtime.testing`).

:func:`gate_driver` and :func:`detector_driver` build the gate and the detector exactly as
:func:`streams.gate.app.build_runner` and :func:`streams.detect.app.build_detector` do, with an
in-memory schema registry instead of the settings' one and the driver's clock as the gate's
wall clock (so ``decided_at`` is reproducible), and run them on a
:class:`~streams.runtime.testing.TopologyDriver`. Pass ``restore_from=`` an earlier driver to
start a new process on its broker: it restores every partition from the changelog and resumes
from the committed offsets.
"""

from __future__ import annotations

from pathlib import Path

from streams import topics
from streams.core.checkpoint import SigningKey
from streams.core.controls import SuspensionRegistry
from streams.core.policy import Policy, load_policy
from streams.detect.steps import DetectorSteps
from streams.detect.topology import DetectorTopology
from streams.gate import metrics as gate_metrics
from streams.gate.processor import GateProcessor
from streams.gate.topology import GateTopology
from streams.runtime.memory_log import InMemoryBroker
from streams.runtime.runner import RuntimeOptions
from streams.runtime.testing import ManualClock, TopologyDriver
from streams.serde.testing import InMemorySchemaSource
from streams.serde.wire import AvroCodec

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"
"""The example policy of the repository (recipients, agreements, limits used by the tests)."""

TOPIC_PARTITIONS = {topics.TOPIC_CONTROLS: 1}
"""Partition counts that differ from the sources' (``deploy/topics.yaml``)."""


def memory_codec() -> AvroCodec:
    """Return a codec over a fresh in-memory schema registry (ids assigned on first use)."""
    return AvroCodec(InMemorySchemaSource())


def _policy(policy: Policy | Path | None) -> Policy:
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy or EXAMPLE_POLICY)


def gate_driver(
    policy: Policy | Path | None = None,
    *,
    partitions: int = 4,
    codec: AvroCodec | None = None,
    clock: ManualClock | None = None,
    broker: InMemoryBroker | None = None,
    options: RuntimeOptions | None = None,
    signing_key: SigningKey | None = None,
    restore_from: TopologyDriver[GateTopology] | None = None,
) -> TopologyDriver[GateTopology]:
    """Return the gate (``build_runner``'s topology) on a driver; policy default: the example.

    With ``signing_key`` it punctuates signed chain checkpoints (on the driver's clock).
    ``restore_from`` takes the earlier driver's broker, codec, clock and options.
    """
    if restore_from is not None:
        broker, codec = restore_from.broker, restore_from.codec
        clock, options = restore_from.clock, restore_from.options
    resolved = _policy(policy)
    gate_metrics.POLICY_INFO.labels(resolved.version).set(1)
    gate_metrics.initialise(resolved.recipients)
    codec = codec or memory_codec()
    clock = clock or ManualClock()
    processor = GateProcessor(resolved, SuspensionRegistry(), clock_ms=clock)
    return TopologyDriver(
        GateTopology(processor, codec, topic_prefix="", signing_key=signing_key),
        codec,
        partitions=partitions,
        broker=broker,
        clock=clock,
        options=options,
        topic_partitions=TOPIC_PARTITIONS,
    )


def detector_driver(
    policy: Policy | Path | None = None,
    *,
    partitions: int = 4,
    codec: AvroCodec | None = None,
    clock: ManualClock | None = None,
    broker: InMemoryBroker | None = None,
    options: RuntimeOptions | None = None,
    app_name: str = topics.DETECTOR_APP,
    restore_from: TopologyDriver[DetectorTopology] | None = None,
) -> TopologyDriver[DetectorTopology]:
    """Return the detector (``build_detector``'s topology) on a driver.

    Feed it ``governance.decisions`` (e.g. a gate driver's committed records, verbatim) and
    ``training.reads``; it writes ``governance.alerts`` and ``governance.controls``.
    """
    if restore_from is not None:
        broker, codec = restore_from.broker, restore_from.codec
        clock, options = restore_from.clock, restore_from.options
    codec = codec or memory_codec()
    steps = DetectorSteps(_policy(policy), codec, topic_prefix="")
    return TopologyDriver(
        DetectorTopology(steps, app_name=app_name),
        codec,
        partitions=partitions,
        broker=broker,
        clock=clock,
        options=options,
        topic_partitions=TOPIC_PARTITIONS,
    )
