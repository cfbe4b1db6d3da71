"""``consentinel detect``: the detectors as a topology on the stream runtime.

The topology (:mod:`streams.detect.topology`) re-keys decisions and training reads by recipient
and by actor through internal repartition topics, and applies them to the pure detectors with
their state in a changelogged store, all exactly once in the runtime's transactions
(:mod:`streams.runtime`). Alerts go to ``governance.alerts`` (key: subject) and
``SUSPEND_RECIPIENT`` controls to ``governance.controls`` (key: recipient).
"""

from __future__ import annotations

import logging
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from streams import topics
from streams.core.policy import load_policy
from streams.detect import metrics
from streams.detect.steps import DetectorSteps
from streams.detect.topology import DetectorTopology
from streams.errors import ConfigError
from streams.gate.app import serve
from streams.runtime.runner import RuntimeOptions, StreamRunner
from streams.serde.factory import codec_from_settings
from streams.settings import Settings, runtime_options

log = logging.getLogger(__name__)

APP_NAME = topics.DETECTOR_APP


def build_detector(
    settings: Settings,
    policy_path: Path,
    *,
    app_name: str = APP_NAME,
    options: RuntimeOptions | None = None,
) -> StreamRunner[DetectorTopology]:
    """Return a ready-to-run detector for ``settings`` and the policy at ``policy_path``.

    ``app_name`` names its consumer group, transactional ids, internal topics and state: a
    detector with another name keeps its own.
    """
    policy = load_policy(policy_path)
    codec = codec_from_settings(settings)
    steps = DetectorSteps(policy, codec, topic_prefix=settings.topic_prefix)
    options = runtime_options(settings, options)
    return StreamRunner(
        settings.kafka_config(),
        codec,
        DetectorTopology(steps, app_name=app_name),
        instance_id=settings.instance_id,
        topic_prefix=settings.topic_prefix,
        options=options,
        metrics_prefix="consentinel_detector",
    )


def start_at_end(settings: Settings, group: str, contract_topics: list[str]) -> bool:
    """Commit ``group``'s offsets at the current end of the topics, if it has none yet.

    So a new detector reads only what is written from now on (the runtime itself would read the
    topics from the beginning). Returns False when the group had committed offsets already.
    """
    consumer = Consumer({**settings.kafka_config(), "group.id": group})
    try:
        parts = []
        for name in (settings.topic_prefix + t for t in contract_topics):
            meta = consumer.list_topics(name, timeout=30).topics[name]
            parts += [TopicPartition(name, p) for p in meta.partitions]
        if any(tp.offset >= 0 for tp in consumer.committed(parts, timeout=30)):
            return False
        ends = [
            TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, 30)[1])
            for tp in parts
        ]
        consumer.commit(offsets=ends, asynchronous=False)
        return True
    finally:
        consumer.close()


def run_detector(
    settings: Settings,
    *,
    policy_path: Path | None,
    app_name: str = APP_NAME,
    from_now: bool = False,
) -> int:
    """Run the detector until SIGTERM or SIGINT; return the process exit code.

    With ``from_now``, a detector whose group has no committed offsets starts at the end of its
    input topics (it judges only what is decided, and which recall orders are issued and
    acknowledged, from now on: older orders are not raised as overdue again).
    """
    if policy_path is None:
        raise ConfigError("no policy given", hint="pass --policy FILE or set CONSENTINEL_POLICY")
    runner = build_detector(settings, policy_path, app_name=app_name)
    if from_now and start_at_end(
        settings,
        settings.topic_prefix + app_name,
        [
            topics.TOPIC_DECISIONS,
            topics.TOPIC_TRAINING_READS,
            topics.TOPIC_RECALLS,
            topics.TOPIC_RECALL_ACKS,
        ],
    ):
        log.info("new detector %s: starts at the end of its input topics", app_name)
    metrics.READY.set(0)
    return serve(runner, settings, "detector")


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m streams.detect.app ARGS``: the same as ``consentinel detect ARGS``."""
    import sys

    from streams.cli import main as cli_main

    return cli_main(["detect", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
