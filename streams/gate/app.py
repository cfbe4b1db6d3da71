"""``consentinel gate``: wires settings, policy, codec and the gate topology onto the runtime."""

from __future__ import annotations

import faulthandler
import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from streams.core.checkpoint import SigningKey, load_signing_key
from streams.core.controls import SuspensionRegistry
from streams.core.policy import load_policy
from streams.errors import ConfigError, SigningKeyError
from streams.gate import metrics
from streams.gate.processor import GateProcessor
from streams.gate.topology import GateTopology
from streams.observability.http import HealthServer
from streams.runtime.runner import RuntimeOptions, StreamRunner
from streams.serde.factory import codec_from_settings
from streams.settings import Settings, runtime_options

log = logging.getLogger(__name__)


def signing_key_or_refuse(settings: Settings, *, unsigned: bool = False) -> SigningKey | None:
    """Return the gate's signing key, or ``None`` when it is told to run ``unsigned``.

    Sets the ``consentinel_gate_unsigned`` gauge (1: no signed checkpoints, 0: signing).

    Raises:
        SigningKeyError: ``CONSENTINEL_SIGNING_KEY`` is not set and ``unsigned`` is false (the
            gate refuses to start: contract section 6), or the key file is unusable.
    """
    if settings.signing_key_path is not None:
        key = load_signing_key(settings.signing_key_path)
        if unsigned:
            log.warning("--unsigned ignored: CONSENTINEL_SIGNING_KEY is set, the gate signs")
        metrics.UNSIGNED.set(0)
        log.info("signing chain heads with key %s", key.key_id)
        return key
    if not unsigned:
        raise SigningKeyError(
            "CONSENTINEL_SIGNING_KEY is not set: the gate refuses to start without a key to sign"
            " its chain heads",
            hint="make a pair with `consentinel audit keygen --out DIR` and set"
            " CONSENTINEL_SIGNING_KEY to its private key, or run `consentinel gate --unsigned`"
            " (then `audit verify` with a key reports every partition)",
        )
    metrics.UNSIGNED.set(1)
    log.warning(
        "running --unsigned: the gate writes no signed chain checkpoints, so a partition"
        " rewritten with a recomputed chain goes unnoticed (consentinel_gate_unsigned = 1)"
    )
    return None


def build_runner(
    settings: Settings,
    policy_path: Path,
    *,
    options: RuntimeOptions | None = None,
    unsigned: bool = False,
) -> StreamRunner[GateTopology]:
    """Return a ready-to-run gate for ``settings`` and the policy file at ``policy_path``.

    Raises:
        SigningKeyError: no ``CONSENTINEL_SIGNING_KEY`` and not ``unsigned``
            (:func:`signing_key_or_refuse`), or an unusable key file.
    """
    signing_key = signing_key_or_refuse(settings, unsigned=unsigned)
    policy = load_policy(policy_path)
    metrics.POLICY_INFO.labels(policy.version).set(1)
    metrics.initialise(policy.recipients)
    codec = codec_from_settings(settings)
    processor = GateProcessor(
        policy,
        SuspensionRegistry(),
        clock_ms=lambda: int(time.time() * 1000),
        stream_clock=settings.decision_clock == "stream",
        unknown_photo_grace_ms=settings.unknown_photo_grace_ms,
    )
    options = runtime_options(settings, options)
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
    # `kill -USR1 <pid>` prints every thread's Python stack to stderr: where a stuck process waits.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    log.info("%s %s starting (store %s)", what, settings.instance_id, settings.state_store)
    try:
        runner.run()
    finally:
        if server is not None:
            server.stop()
    return 0


def run_gate(settings: Settings, *, policy_path: Path | None, unsigned: bool = False) -> int:
    """Run the gate until SIGTERM or SIGINT; return the process exit code.

    Refuses to start without ``CONSENTINEL_SIGNING_KEY`` unless ``unsigned``.
    """
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runner = build_runner(settings, policy_path, unsigned=unsigned)
    return serve(runner, settings, "gate")
