"""Session fixtures of the least-privilege tests: the secure broker, its topics and its ACLs.

The secure broker (``consentinel stack up --secure``: SASL/SCRAM-SHA-512 on localhost:9094, the
``StandardAuthorizer``, ``allow.everyone.if.no.acl.found=false``) is started here if it is not
running, and stopped at the end only if this session started it (as ``tests/conftest.py`` does with
the plaintext stack). Then, as admin, the contract's topics are created under a topic prefix of
this session's own (``CONSENTINEL_TOPIC_PREFIX``) and ``acls apply`` runs for that prefix; the
topics and that prefix's ACLs are removed at the end, so the broker's real topics stay untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.settings import load_settings


@pytest.fixture(scope="session")
def prefix() -> str:
    """This session's topic prefix (names of topics, groups and transactional ids)."""
    return f"lp-{uuid.uuid4().hex[:8]}."


def _drop(admin: AdminClient, prefix: str) -> None:
    """Delete the topics and ACLs under ``prefix`` (best effort)."""
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(timeout=30)
    every = AclBindingFilter(
        ResourceType.ANY,
        None,  # type: ignore[arg-type]
        ResourcePatternType.ANY,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    ours = [b for b in admin.describe_acls(every).result(timeout=10) if b.name.startswith(prefix)]
    if ours:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in ours
        ]
        for future in admin.delete_acls(filters).values():
            future.result(timeout=10)


@pytest.fixture(scope="session")
def secure_home(prefix: str) -> Iterator[Path]:
    """The stack home whose secure broker is running, with topics and ACLs applied."""
    from streams.admin.acl_plan import ACLS_FILE
    from streams.admin.acls import apply_from_settings
    from streams.admin.topics import TOPICS_FILE, apply_topics, load_topic_specs
    from streams.stack.local import LocalStack
    from streams.stack.secure import SECURE_NAME, client_config, passwords_file, stop_secure

    stack = LocalStack(load_settings().stack_home)
    already = stack.running_pid(SECURE_NAME) is not None
    stack.up(secure=True)
    try:
        admin_config = client_config(stack.home, "admin")
        admin = AdminClient(dict(admin_config))
        apply_topics(admin, load_topic_specs(TOPICS_FILE, partitions=2, prefix=prefix))
        apply_from_settings(
            admin_config,
            acls_path=ACLS_FILE,
            passwords_path=passwords_file(stack.home),
            prefix=prefix,
            say=lambda _line: None,
        )
        yield stack.home
        _drop(admin, prefix)
    finally:
        if not already:
            stop_secure(stack.home)


@pytest.fixture(scope="session")
def as_principal(secure_home: Path) -> Any:
    """``as_principal(name)`` returns librdkafka settings that authenticate as ``name``."""
    from streams.stack.secure import client_config

    def config(name: str) -> dict[str, Any]:
        return client_config(secure_home, name)

    return config
