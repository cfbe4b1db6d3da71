"""Session fixtures of the least-privilege tests: the secure broker, its topics and its ACLs.

The secure broker (``consentinel stack up --secure``: SASL/SCRAM-SHA-512 on localhost:9094, the
``StandardAuthorizer``, ``allow.everyone.if.no.acl.found=false``) is started here if it is not
running, and stopped at the end only if this session started it (as ``tests/conftest.py`` does with
the plaintext stack). Then, as admin, the contract's topics are created under a topic prefix of
this session's own (``CONSENTINEL_TOPIC_PREFIX``) and ``acls apply`` runs for that prefix, so
every principal is this session's own SCRAM user ``<prefix><name>`` (contract section 6,
"Deployments side by side"); the topics, that prefix's ACLs and SCRAM users are removed at the
end, so the broker's real topics and principals stay untouched.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramMechanism,
)

from streams.settings import load_settings


@pytest.fixture(scope="session")
def prefix() -> str:
    """This session's topic prefix (names of topics, groups and transactional ids)."""
    return f"lp-{uuid.uuid4().hex[:8]}."


def drop_deployment(admin: AdminClient, prefix: str, passwords: Path | None = None) -> None:
    """Delete the topics, ACLs and SCRAM users of the deployment with topic ``prefix``."""
    from confluent_kafka.admin import UserScramCredentialDeletion

    from streams.admin.acl_plan import ACLS_FILE, load_acl_plan
    from streams.stack.secure import PasswordStore

    _drop(admin, prefix)
    users = load_acl_plan(ACLS_FILE, prefix=prefix).principals
    deletions: list[Any] = [
        UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512) for user in users
    ]
    for future in admin.alter_user_scram_credentials(deletions).values():
        with contextlib.suppress(KafkaException):  # a user that was never created
            future.result(timeout=10)
    if passwords is not None:
        PasswordStore(passwords).forget(users)


def _drop(admin: AdminClient, prefix: str) -> None:
    """Delete the topics under ``prefix`` and the ACLs on them or of its principals."""
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):  # already being deleted
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
    ours = [
        b
        for b in admin.describe_acls(every).result(timeout=10)
        if b.name.startswith(prefix) or b.principal.startswith(f"User:{prefix}")
    ]
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
        drop_deployment(admin, prefix, passwords_file(stack.home))
    finally:
        if not already:
            stop_secure(stack.home)


@pytest.fixture(scope="session")
def as_principal(secure_home: Path, prefix: str) -> Any:
    """``as_principal(name)``: librdkafka settings that authenticate as this session's ``name``.

    ``name`` is the logical principal of ``deploy/acls.yaml``; the session's deployment has the
    topic prefix, so the SCRAM user is ``<prefix><name>`` (``admin`` stays ``admin``).
    """
    from streams.admin.acl_plan import ACLS_FILE, load_acl_plan
    from streams.stack.secure import client_config

    plan = load_acl_plan(ACLS_FILE, prefix=prefix)

    def config(name: str) -> dict[str, Any]:
        return client_config(secure_home, plan.principal(name))

    return config
