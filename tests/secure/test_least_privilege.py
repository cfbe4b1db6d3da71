"""Contract section 6 on a real broker: every principal may do what its row says, nothing more.

Each refusal is a clear error within a few seconds (bounded timeouts), never a hang: a produce is
refused in its delivery report (``TOPIC_AUTHORIZATION_FAILED``), a read in the consumer's error, a
foreign transactional id in ``init_transactions``, a topic creation in ``create_topics``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from streams.errors import AuthorizationError
from streams.gate.topology import STREAM_ORDER
from streams.preflight import LOG_APPEND_TIME, check_topic_configs
from streams.runtime.global_table import GlobalTableReader
from streams.runtime.topology import GlobalTable
from streams.stack.secure import bootstrap_servers, can_authenticate, quiet

pytestmark = [pytest.mark.integration, pytest.mark.secure, pytest.mark.timeout(120)]

BOUND_S = 10.0
"""Every refusal must be reported within this many seconds."""

Config = Callable[[str], dict[str, Any]]


def _produce(config: dict[str, Any], topic: str, **extra: Any) -> KafkaError | None:
    """Produce one record; return the delivery report's error (None when delivered)."""
    reports: list[KafkaError | None] = []
    producer = Producer(
        {**quiet(config), "message.timeout.ms": 5000, "enable.idempotence": False, **extra}
    )
    producer.produce(
        topic, key=b"u-1", value=b"probe", on_delivery=lambda err, _msg: reports.append(err)
    )
    started = time.monotonic()
    producer.flush(BOUND_S)
    assert reports, f"no delivery report for {topic} within {BOUND_S}s"
    assert time.monotonic() - started < BOUND_S
    return reports[0]


def _read_one(config: dict[str, Any], topic: str, group: str) -> tuple[bytes | None, Any]:
    """Read one record in consumer group ``group``; return ``(value, None)`` or ``(None, error)``.

    A subscription (not an assignment) is what reports a refused topic as a consumer error.
    """
    consumer = Consumer(
        {
            **quiet(config),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                return None, message.error()
            return message.value(), None
        pytest.fail(f"neither a record nor an error from {topic} within {BOUND_S}s")
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def seeded(as_principal: Config, prefix: str) -> Iterator[None]:
    """One record (written as admin) on partition 0 of the topics the read tests use."""
    for topic in ("photo.share.approved", "governance.decisions"):
        producer = Producer(quiet(as_principal("admin")))
        producer.produce(prefix + topic, key=b"u-1", value=b"seed", partition=0)
        assert producer.flush(BOUND_S) == 0
    yield


def test_an_unauthenticated_client_is_refused(as_principal: Config) -> None:
    started = time.monotonic()
    no_sasl = {"bootstrap.servers": bootstrap_servers(), "socket.connection.setup.timeout.ms": 3000}
    admin = AdminClient(quiet(no_sasl))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    wrong = {**as_principal("egress"), "sasl.password": "not-" + uuid.uuid4().hex}
    assert not can_authenticate(wrong, timeout_s=5)
    assert can_authenticate(as_principal("egress"), timeout_s=5)  # the control: right password
    assert time.monotonic() - started < 3 * BOUND_S


def test_share_requester_writes_requests_only(as_principal: Config, prefix: str) -> None:
    config = as_principal("share-requester")
    assert _produce(config, prefix + "photo.share.requests") is None
    for forbidden in ("governance.controls", "photo.share.approved"):
        error = _produce(config, prefix + forbidden)
        assert error is not None, f"share-requester could write {forbidden}"
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_operator_writes_controls_but_not_decisions(as_principal: Config, prefix: str) -> None:
    config = as_principal("operator")
    assert _produce(config, prefix + "governance.controls") is None
    error = _produce(config, prefix + "governance.decisions")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


class IgnoreAll:
    """A global table handler that keeps nothing."""

    whole = True

    def apply(self, raw: Any) -> bool:
        return False

    def broken(self, raw: Any, error: str) -> None:
        pass


@pytest.mark.parametrize("principal", ["operator", "egress"])
def test_a_refused_read_to_end_fails_at_once_and_names_the_acl(
    as_principal: Config, prefix: str, principal: str
) -> None:
    """A processor whose principal lacks READ (the detector lacked it on the controls) stops at
    its global table's catch-up with the ACL to add, instead of waiting out the timeout.
    ``operator`` writes the controls (so it may describe them and learn their end) but may not
    read them; ``egress`` may not even describe them."""
    topic = prefix + "governance.controls"
    assert _produce(as_principal("operator"), topic) is None  # something to read
    reader = GlobalTableReader(
        quiet(as_principal(principal)),
        GlobalTable("governance.controls", IgnoreAll()),
        physical_topic=topic,
        clock_ms=lambda: 0,
    )
    started = time.monotonic()
    try:
        with pytest.raises(AuthorizationError, match="acls apply") as refused:
            reader.catch_up(timeout_s=120)
    finally:
        reader.close()
    assert topic in str(refused.value)
    assert time.monotonic() - started < 4 * BOUND_S, "waited for the read's timeout"


def test_the_gate_may_check_that_its_inputs_are_log_append_time(
    as_principal: Config, prefix: str
) -> None:
    """Without DescribeConfigs the gate cannot tell the broker's time from a producer's own: it
    then stays not ready (an AuthorizationError), never skips the check."""
    inputs = [prefix + t for t in STREAM_ORDER]
    required = dict(LOG_APPEND_TIME)
    check_topic_configs(AdminClient(quiet(as_principal("consentinel-gate"))), inputs, required)
    with pytest.raises(AuthorizationError, match="DescribeConfigs"):
        check_topic_configs(AdminClient(quiet(as_principal("egress"))), inputs, required)


@pytest.mark.usefixtures("seeded")
def test_egress_reads_approved_shares_and_their_decisions_but_nothing_else(
    as_principal: Config, prefix: str
) -> None:
    config = as_principal("egress")
    group = f"{prefix}egress-test-{uuid.uuid4().hex[:8]}"
    value, error = _read_one(config, prefix + "photo.share.approved", group)
    assert error is None and value is not None
    value, error = _read_one(config, prefix + "governance.decisions", group)  # to check them
    assert error is None and value is not None
    value, error = _read_one(config, prefix + "photo.share.requests", group)
    assert value is None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    for forbidden in ("governance.decisions", "photo.share.approved"):
        error = _produce(config, prefix + forbidden)
        assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


@pytest.mark.usefixtures("seeded")
def test_auditor_reads_decisions_but_cannot_write_them(as_principal: Config, prefix: str) -> None:
    config = as_principal("auditor")
    group = f"{prefix}auditor-{uuid.uuid4().hex[:8]}"
    value, error = _read_one(config, prefix + "governance.decisions", group)
    assert error is None and value is not None
    error = _produce(config, prefix + "governance.decisions")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


def test_gate_runs_transactions_only_under_its_own_ids(as_principal: Config, prefix: str) -> None:
    config = as_principal("consentinel-gate")
    own_id = f"{prefix}consentinel-gate-test-{uuid.uuid4().hex[:8]}"
    own = Producer({**quiet(config), "transactional.id": own_id})
    own.init_transactions(BOUND_S)
    own.begin_transaction()
    own.produce(prefix + "governance.decisions", key=b"u-1", value=b"decided")
    own.commit_transaction(BOUND_S)

    other = Producer({**quiet(config), "transactional.id": f"intruder-{uuid.uuid4().hex[:8]}"})
    started = time.monotonic()
    with pytest.raises(KafkaException) as refused:
        other.init_transactions(BOUND_S)
    assert time.monotonic() - started < BOUND_S
    code = refused.value.args[0].code()
    assert code == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, refused.value


@pytest.mark.parametrize(
    "principal",
    [
        "uploads-app",
        "consent-service",
        "share-requester",
        "training-loader",
        "consentinel-gate",
        "consentinel-detector",
        "operator",
        "egress",
        "recipient-acks",
        "auditor",
    ],
)
def test_nobody_but_admin_creates_topics(as_principal: Config, principal: str, prefix: str) -> None:
    name = f"{prefix}scratch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(quiet(as_principal(principal)))
    future = admin.create_topics([NewTopic(name, 1, 1)], request_timeout=BOUND_S)[name]
    with pytest.raises(KafkaException) as refused:
        future.result(timeout=BOUND_S)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_admin_creates_topics(as_principal: Config, prefix: str) -> None:
    name = f"{prefix}scratch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(quiet(as_principal("admin")))
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=BOUND_S)
    admin.delete_topics([name])[name].result(timeout=BOUND_S)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env_of(
    secure_home: Path, principal: str, prefix: str, password: str | None = None
) -> dict[str, str]:
    from streams.admin.acl_plan import ACLS_FILE, load_acl_plan
    from streams.stack.secure import client_config

    principal = load_acl_plan(ACLS_FILE, prefix=prefix).principal(principal)
    config = client_config(secure_home, principal)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CONSENTINEL_"))}
    env.update(
        {
            "CONSENTINEL_STACK_HOME": str(secure_home),
            "CONSENTINEL_TOPIC_PREFIX": prefix,
            "KAFKA_BOOTSTRAP_SERVERS": config["bootstrap.servers"],
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": principal,
            "KAFKA_SASL_PASSWORD": password or config["sasl.password"],
        }
    )
    return env


def test_acls_apply_removes_undeclared_and_is_idempotent(
    secure_home: Path, as_principal: Config, prefix: str
) -> None:
    stray = AclBinding(
        ResourceType.TOPIC,
        prefix + "governance.decisions",
        ResourcePatternType.LITERAL,
        f"User:{prefix}egress",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    admin = AdminClient(quiet(as_principal("admin")))
    for future in admin.create_acls([stray]).values():
        future.result(timeout=BOUND_S)
    env = _env_of(secure_home, "admin", prefix)

    first = _cli(env, "acls", "apply")
    assert first.returncode == 0, first.stderr
    assert f"- ACL User:{prefix}egress WRITE topic:{prefix}governance.decisions" in first.stdout

    second = _cli(env, "acls", "apply")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "= up to date"


def test_stack_credentials_prints_export_lines(secure_home: Path, prefix: str) -> None:
    env = _env_of(secure_home, "admin", prefix)
    shown = _cli(env, "stack", "credentials", "egress")
    assert shown.returncode == 0, shown.stderr
    names = [line.split("=", 1)[0] for line in shown.stdout.splitlines()]
    assert names == [
        "export KAFKA_BOOTSTRAP_SERVERS",
        "export KAFKA_SECURITY_PROTOCOL",
        "export KAFKA_SASL_MECHANISM",
        "export KAFKA_SASL_USERNAME",
        "export KAFKA_SASL_PASSWORD",
    ]
    assert f"KAFKA_SASL_USERNAME={prefix}egress" in shown.stdout  # the deployment's own user


def test_a_failing_command_never_shows_the_password(secure_home: Path, prefix: str) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    env = {
        **_env_of(secure_home, "egress", prefix, password=wrong),
        "CONSENTINEL_CONNECT_TIMEOUT_S": "5",
    }
    started = time.monotonic()
    result = _cli(env, "-v", "topics", "apply")
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert wrong not in result.stdout and wrong not in result.stderr
    assert "credentials" in result.stderr  # it says what is wrong

    right = _env_of(secure_home, "egress", prefix)
    password = right["KAFKA_SASL_PASSWORD"]
    denied = _cli(right, "-v", "acls", "apply")  # authenticated, but not allowed
    assert denied.returncode != 0
    assert password not in denied.stdout and password not in denied.stderr
