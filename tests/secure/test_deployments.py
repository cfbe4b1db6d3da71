"""Two deployments side by side on the secure broker (contract section 6; issue #18 item 9).

``prod`` and ``prod2.`` here are this test's own prefixes, ``<tag>`` and ``<tag>2.`` (the first
is a string prefix of the second, as ``prod`` is of ``prod2.``). Each gets its topics and its
``acls apply``; then staging's (``<tag>2.``) gate credentials must not write prod's decisions, and
re-applying one deployment (which removes its own stray ACL) must leave the other's ACLs as they
were. The unprefixed deployment is not applied here: the broker is shared with other sessions, and
the plan-level tests (tests/unit/test_acls.py) cover it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.admin.acl_plan import ACLS_FILE, load_acl_plan
from streams.admin.acls import apply_from_settings
from streams.admin.topics import TOPICS_FILE, apply_topics, load_topic_specs
from streams.stack.secure import PasswordStore, bootstrap_servers, client_config, quiet
from tests.secure.conftest import drop_deployment

pytestmark = [pytest.mark.integration, pytest.mark.secure, pytest.mark.timeout(240)]

BOUND_S = 10.0
_ANY: Any = None


def _acls_of(admin: AdminClient, prefix: str) -> set[tuple[Any, ...]]:
    """Every ACL whose principal belongs to the deployment with topic ``prefix``."""
    every = AclBindingFilter(
        ResourceType.ANY,
        _ANY,
        ResourcePatternType.ANY,
        _ANY,
        _ANY,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    principals = {f"User:{p}" for p in load_acl_plan(ACLS_FILE, prefix=prefix).principals}
    return {
        (b.principal, b.restype, b.name, b.resource_pattern_type, b.operation, b.permission_type)
        for b in admin.describe_acls(every).result(timeout=BOUND_S)
        if b.principal in principals
    }


def _login(passwords: Path, prefix: str, name: str) -> dict[str, Any]:
    principal = load_acl_plan(ACLS_FILE, prefix=prefix).principal(name)
    password = PasswordStore(passwords).get(principal)
    assert password is not None, principal
    return {
        "bootstrap.servers": bootstrap_servers(),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": principal,
        "sasl.password": password,
    }


def _produce(config: dict[str, Any], topic: str) -> KafkaError | None:
    reports: list[KafkaError | None] = []
    producer = Producer({**quiet(config), "message.timeout.ms": 5000, "enable.idempotence": False})
    producer.produce(
        topic, key=b"u-1", value=b"forged", on_delivery=lambda e, _m: reports.append(e)
    )
    producer.flush(BOUND_S)
    assert reports, f"no delivery report for {topic} within {BOUND_S}s"
    return reports[0]


@pytest.fixture(scope="module")
def two_deployments(secure_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``(admin_config, passwords_file, prod, staging)`` with both deployments applied."""
    tag = f"dp{uuid.uuid4().hex[:6]}"
    prod, staging = tag, f"{tag}2."
    passwords = tmp_path_factory.mktemp("deployments") / "passwords.json"
    admin_config = client_config(secure_home, "admin")
    admin = AdminClient(quiet(dict(admin_config)))
    try:
        for prefix in (prod, staging):
            apply_topics(admin, load_topic_specs(TOPICS_FILE, partitions=1, prefix=prefix))
            apply_from_settings(
                admin_config,
                acls_path=ACLS_FILE,
                passwords_path=passwords,
                prefix=prefix,
                say=lambda _line: None,
            )
        yield admin_config, passwords, prod, staging
    finally:
        for prefix in (staging, prod):  # prod's names are a string prefix of staging's
            drop_deployment(admin, prefix)


def test_staging_credentials_cannot_write_prod_decisions(two_deployments: Any) -> None:
    _, passwords, prod, staging = two_deployments
    staging_gate = _login(passwords, staging, "consentinel-gate")
    prod_gate = _login(passwords, prod, "consentinel-gate")
    assert staging_gate["sasl.username"] == f"{staging}consentinel-gate"
    assert _produce(staging_gate, f"{staging}governance.decisions") is None  # its own: allowed
    assert _produce(prod_gate, f"{prod}governance.decisions") is None
    for topic in ("governance.decisions", "photo.share.approved"):
        error = _produce(staging_gate, prod + topic)
        assert error is not None, f"staging's gate wrote {prod + topic}"
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    error = _produce(prod_gate, f"{staging}governance.decisions")
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error


@pytest.mark.parametrize("which", ["prod", "staging"])
def test_applying_one_deployment_leaves_the_other_intact(two_deployments: Any, which: str) -> None:
    admin_config, passwords, prod, staging = two_deployments
    ours, theirs = (prod, staging) if which == "prod" else (staging, prod)
    admin = AdminClient(quiet(dict(admin_config)))
    stray = AclBinding(
        ResourceType.TOPIC,
        f"{ours}governance.decisions",
        ResourcePatternType.LITERAL,
        f"User:{ours}egress",
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([stray]).values():
        future.result(timeout=BOUND_S)
    before = _acls_of(admin, theirs)
    assert len(before) == len(load_acl_plan(ACLS_FILE, prefix=theirs).acls)

    lines: list[str] = []
    apply_from_settings(
        admin_config, acls_path=ACLS_FILE, passwords_path=passwords, prefix=ours, say=lines.append
    )
    assert f"- ACL User:{ours}egress WRITE topic:{ours}governance.decisions" in lines
    their_users = [f"User:{p} " for p in load_acl_plan(ACLS_FILE, prefix=theirs).principals]
    assert not any(user in line for line in lines for user in their_users), lines
    assert _acls_of(admin, theirs) == before
    theirs_gate = _login(passwords, theirs, "consentinel-gate")
    assert _produce(theirs_gate, f"{theirs}governance.decisions") is None  # still works
