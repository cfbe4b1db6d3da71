"""``consentinel gate``: wires settings, policy, codec and the gate topology onto the runtime."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from streams.core.checkpoint import load_signing_key
from streams.core.controls import SuspensionRegistry
from streams.core.policy import load_policy
from streams.errors import ConfigError
from streams.gate import metrics
from streams.gate.processor import GateProcessor
from streams.gate.topology import GateTopology
from streams.observability.http import HealthServer
from streams.runtime.runner import RuntimeOptions, StreamRunner
from streams.serde.factory import codec_from_settings
from streams.settings import Settings

log = logging.getLogger(__name__)


def build_runner(
    settings: Settings, policy_path: Path, *, options: RuntimeOptions | None = None
) -> StreamRunner[GateTopology]:
    """Return a ready-to-run gate for ``settings`` and the policy file at ``policy_path``."""
    policy = load_policy(policy_path)
    metrics.POLICY_INFO.labels(policy.version).set(1)
    metrics.initialise(policy.recipients)
    codec = codec_from_settings(settings)
    processor = GateProcessor(
        policy,
        SuspensionRegistry(),
        clock_ms=lambda: int(time.time() * 1000),
        stream_clock=settings.decision_clock == "stream",
    )
    options = options or RuntimeOptions()
    options.state_store = settings.state_store
    options.commit_interval_ms = settings.commit_interval_ms
    options.state_dir = settings.state_dir / settings.instance_id
    signing_key = None
    if settings.signing_key_path is not None:
        signing_key = load_signing_key(settings.signing_key_path)
    else:
        log.warning(
            "CONSENTINEL_SIGNING_KEY is not set: the gate writes no signed chain checkpoints,"
            " so `audit verify` can check the decisions' hashes only"
        )
    return StreamRunner(
        settings.kafka_config(),
        codec,
        GateTopology(processor, codec, topic_prefix=settings.topic_prefix, signing_key=signing_key),
        instance_id=settings.instance_id,
        topic_prefix=settings.topic_prefix,
        options=options,
        metrics_prefix="consentinel_gate",
    )


def serve(runner: StreamRunner[Any], settings: Settings, what: str) -> int:
    """Run ``runner`` until SIGTERM or SIGINT, with health and metrics; return the exit code."""
    server = None
    if settings.metrics_port is not None:
        server = HealthServer(
            settings.metrics_port, lambda: runner.ready, is_live=lambda: runner.live
        ).start()
        log.info("metrics on :%d/metrics, readiness on /ready, liveness on /live", server.port)

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch and stopping", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("%s %s starting (store %s)", what, settings.instance_id, settings.state_store)
    try:
        runner.run()
    finally:
        if server is not None:
            server.stop()
    return 0


def run_gate(settings: Settings, *, policy_path: Path | None) -> int:
    """Run the gate until SIGTERM or SIGINT; return the process exit code."""
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runner = build_runner(settings, policy_path)
    return serve(runner, settings, "gate")
