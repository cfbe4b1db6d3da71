"""Holes of issue #18 where Kafka itself matters, on the real broker (CONTRACT §3).

The gate's defence against backdating compares ``occurred_at`` with the record timestamp as the
broker's append time; that holds only while the input topics are ``LogAppendTime``. A topic
switched to ``CreateTime`` lets each producer stamp its own records, so the gate must refuse
readiness (and not start deciding) until the topic is fixed, saying which topic and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from streams import topics
from tests.integration.harness import GateEnv

pytestmark = pytest.mark.integration


def _set_timestamp_type(admin: AdminClient, topic: str, value: str) -> None:
    entry = ConfigEntry(
        "message.timestamp.type", value, incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    described = ConfigResource(ConfigResource.Type.TOPIC, topic)

    def applied() -> bool:  # the broker applies a topic's config change asynchronously
        configs = admin.describe_configs([described])[described].result()
        return bool(configs["message.timestamp.type"].value == value)

    assert _wait(applied, 60), f"{topic}: message.timestamp.type not {value} within 60 s"


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_the_gate_is_not_ready_while_an_input_topic_is_create_time(
    gate_env: GateEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = gate_env
    topic = env.topic(topics.TOPIC_TRAINING_READS)
    _set_timestamp_type(env.admin, topic, "CreateTime")
    caplog.set_level(logging.ERROR, logger="streams.runtime.health")
    with env.gate_thread() as runner:
        assert _wait(lambda: runner.health.problem is not None, 90), "no readiness problem"
        problem = runner.health.problem or ""
        assert not runner.ready
        assert f"{topic} has message.timestamp.type=CreateTime" in problem
        assert "must be LogAppendTime" in problem
        assert any(
            "not ready" in r.getMessage() and topic in r.getMessage() for r in caplog.records
        ), "a clear log line names the topic"
        assert not runner.health.started, "it does not consume while the topic is wrong"

        _set_timestamp_type(env.admin, topic, "LogAppendTime")
        assert _wait(lambda: runner.ready, 180), "ready once the topic is fixed"
        assert runner.health.problem is None
