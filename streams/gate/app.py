"""``consentinel gate``: wires settings, policy, codec, processor and runner, then runs."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

from streams.core.controls import SuspensionRegistry
from streams.core.policy import load_policy
from streams.errors import ConfigError
from streams.gate import metrics
from streams.gate.processor import GateProcessor
from streams.gate.runner import GateRunner, RunnerOptions
from streams.observability.http import HealthServer
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource
from streams.serde.wire import AvroCodec
from streams.settings import Settings

log = logging.getLogger(__name__)


def build_runner(
    settings: Settings, policy_path: Path, *, options: RunnerOptions | None = None
) -> GateRunner:
    """Return a ready-to-run gate for ``settings`` and the policy file at ``policy_path``."""
    policy = load_policy(policy_path)
    metrics.POLICY_INFO.labels(policy.version).set(1)
    metrics.initialise(policy.recipients)
    codec = AvroCodec(
        RegistrySchemaSource(settings.schema_registry_url), prefixed_catalog(settings)
    )
    processor = GateProcessor(
        policy, SuspensionRegistry(), clock_ms=lambda: int(time.time() * 1000)
    )
    options = options or RunnerOptions()
    options.state_store = settings.state_store
    options.state_dir = settings.state_dir / settings.instance_id
    return GateRunner(
        settings.kafka_config(),
        codec,
        processor,
        instance_id=settings.instance_id,
        topic_prefix=settings.topic_prefix,
        options=options,
    )


def run_gate(settings: Settings, *, policy_path: Path | None) -> int:
    """Run the gate until SIGTERM or SIGINT; return the process exit code."""
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runner = build_runner(settings, policy_path)
    server = None
    if settings.metrics_port is not None:
        server = HealthServer(settings.metrics_port, lambda: runner.ready).start()
        log.info("metrics on :%d/metrics, readiness on /ready", server.port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch and stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "gate %s starting (policy %s, store %s)",
        settings.instance_id,
        runner.processor.policy.version,
        settings.state_store,
    )
    try:
        runner.run()
    finally:
        if server is not None:
            server.stop()
    return 0
