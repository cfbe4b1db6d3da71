"""``deploy/acls.yaml`` expanded into ACLs, the secure stack's password file, secrets kept out of
output. No broker needed (the live checks are in ``tests/secure``)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from streams.admin.acl_plan import ACLS_FILE, Acl, load_acl_plan
from streams.errors import ConfigError
from streams.runtime.global_table import reader_group
from streams.settings import load_settings
from streams.stack.secure import (
    PasswordStore,
    credentials_lines,
    passwords_file,
    scram_bootstrap_argument,
    scrub,
)
from streams.testing.topologies import detector_driver, gate_driver

SECTION_6 = {
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
}
LIT, PRE = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED


def _grants(plan_acls: frozenset[Acl], principal: str) -> set[tuple[str, str, str, str]]:
    return {
        (a.operation.name, a.resource_type.name, a.name, a.pattern.name)
        for a in plan_acls
        if a.principal == f"User:{principal}"
    }


def test_every_principal_of_the_contract_is_declared_and_admin_is_the_only_super_user() -> None:
    plan = load_acl_plan(ACLS_FILE)
    assert set(plan.principals) == SECTION_6
    assert plan.super_users == ("admin",)


def test_writers_write_their_topics_only() -> None:
    plan = load_acl_plan(ACLS_FILE)
    topics = {
        p: {a.name for a in plan.acls if a.principal == f"User:{p}" and a.operation.name == "WRITE"}
        for p in SECTION_6
    }
    assert topics["uploads-app"] == {"photo.uploads", "privacy.erasure.requests"}
    assert topics["share-requester"] == {"photo.share.requests"}
    assert topics["operator"] == {"governance.controls"}
    assert topics["egress"] == set() and topics["auditor"] == set()
    writers_of_decisions = {p for p, names in topics.items() if "governance.decisions" in names}
    assert writers_of_decisions == {"consentinel-gate"}
    assert {p for p, n in topics.items() if "photo.share.approved" in n} == {"consentinel-gate"}


def test_the_gate_gets_its_groups_transactional_ids_and_internal_topics() -> None:
    grants = _grants(load_acl_plan(ACLS_FILE).acls, "consentinel-gate")
    assert ("READ", "GROUP", "consentinel-gate", "LITERAL") in grants
    assert ("READ", "GROUP", "consentinel-gate-restore", "LITERAL") in grants
    assert ("READ", "GROUP", "governance.controls-global-reader", "LITERAL") in grants
    assert ("WRITE", "TRANSACTIONAL_ID", "consentinel-gate-", "PREFIXED") in grants
    assert ("CREATE", "TOPIC", "consentinel.gate.state-changelog", "LITERAL") in grants
    assert ("CREATE", "TOPIC", "consentinel-gate.", "PREFIXED") in grants
    assert ("IDEMPOTENT_WRITE", "BROKER", "kafka-cluster", "LITERAL") in grants
    assert not any(
        op == "CREATE" and pattern == "PREFIXED" and name == "" for op, _, name, pattern in grants
    )


def test_the_topic_prefix_goes_in_front_of_every_name_but_the_fixed_ones() -> None:
    plan = load_acl_plan(ACLS_FILE, prefix="t1.")
    for acl in plan.acls:
        if acl.resource_type == ResourceType.BROKER:
            assert acl.name == "kafka-cluster"
        elif acl.name == "consentinel-decisions-reader":
            assert acl.name in plan.unprefixed_names
        else:
            assert acl.name.startswith("t1."), acl
    gate = _grants(plan.acls, "t1.consentinel-gate")
    assert ("WRITE", "TRANSACTIONAL_ID", "t1.consentinel-gate-", "PREFIXED") in gate
    assert ("READ", "GROUP", "t1.governance.controls-global-reader", "LITERAL") in gate
    stray = Acl(
        "User:t2.egress", AclOperation.READ, ResourceType.TOPIC, "t2.governance.decisions", LIT
    )
    assert not plan.manages(stray)  # another deployment's ACL is left alone
    assert not plan.manages(stray._replace(principal="User:egress"))  # the unprefixed one's too
    assert plan.manages(stray._replace(principal="User:t1.egress"))
    assert not plan.manages(stray._replace(principal="User:someone-else", name="t1.x"))


def test_an_unknown_key_is_refused_with_the_file_and_principal(tmp_path: Path) -> None:
    bad = tmp_path / "acls.yaml"
    bad.write_text("principals:\n  egress:\n    reads: [photo.share.approved]\n")
    with pytest.raises(ConfigError, match=r"principal egress: unknown key\(s\) reads"):
        load_acl_plan(bad)


def test_passwords_are_generated_once_into_a_0600_file(tmp_path: Path) -> None:
    store = PasswordStore(passwords_file(tmp_path))
    first = store.ensure(["egress", "auditor"])
    assert store.ensure(["egress"])["egress"] == first["egress"]
    assert stat.S_IMODE(passwords_file(tmp_path).stat().st_mode) == 0o600
    assert len(first["egress"]) >= 24 and first["egress"] != first["auditor"]


def test_a_password_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = PasswordStore(passwords_file(tmp_path))
    store.ensure(["egress"])
    os.chmod(store.path, 0o644)
    with pytest.raises(ConfigError, match="readable by others") as refused:
        store.get("egress")
    assert "chmod 600" in str(refused.value)


def test_credentials_are_export_lines_of_the_contract_settings(tmp_path: Path) -> None:
    lines = credentials_lines(tmp_path, "User:egress", SECTION_6)
    password = PasswordStore(passwords_file(tmp_path)).get("egress")
    assert password is not None
    assert lines == [
        "export KAFKA_BOOTSTRAP_SERVERS=localhost:9094",
        "export KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        "export KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
        "export KAFKA_SASL_USERNAME=egress",
        f"export KAFKA_SASL_PASSWORD={password}",
    ]
    with pytest.raises(ConfigError, match="unknown principal"):
        credentials_lines(tmp_path, "mallory", SECTION_6)
    with pytest.raises(ConfigError, match="stack up --secure"):
        credentials_lines(tmp_path, "admin", SECTION_6)  # admin's is made only by `stack up`


def test_the_bootstrap_credential_is_pre_salted() -> None:
    argument = scram_bootstrap_argument("admin", "s3cret-value")
    assert argument.startswith("SCRAM-SHA-512=[name=admin,iterations=8192,salt=")
    assert "s3cret-value" not in argument and ",password=" not in argument


def test_scrub_hides_every_secret() -> None:
    assert scrub("user a password hunter2 again hunter2", ["hunter2", ""]) == (
        "user a password *** again ***"
    )


def test_tls_settings_map_to_librdkafka_and_the_key_password_stays_secret() -> None:
    settings = load_settings(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SSL_CA_LOCATION="/etc/ca.pem",
        KAFKA_SSL_CERTIFICATE_LOCATION="/etc/client.pem",
        KAFKA_SSL_KEY_LOCATION="/etc/client.key",
        KAFKA_SSL_KEY_PASSWORD="key-pass-123",
    )
    config = settings.kafka_config()
    assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert config["ssl.certificate.location"] == "/etc/client.pem"
    assert config["ssl.key.location"] == "/etc/client.key"
    assert config["ssl.key.password"] == "key-pass-123"
    assert "key-pass-123" not in repr(settings) and "key-pass-123" not in str(settings)
    assert "key-pass-123" in settings.secret_values()


def test_a_failing_command_does_not_print_the_passwords(tmp_path: Path) -> None:
    secret = "pw-" + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SCHEMA_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens there
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "egress",
            "KAFKA_SASL_PASSWORD": secret,
            "KAFKA_SSL_KEY_PASSWORD": secret + "-key",
            "SCHEMA_REGISTRY_URL": "http://127.0.0.1:1/apis/ccompat/v7",
            "SCHEMA_REGISTRY_USERNAME": "reader",
            "SCHEMA_REGISTRY_PASSWORD": secret + "-registry",
            "CONSENTINEL_CONNECT_TIMEOUT_S": "2",
            "CONSENTINEL_STACK_HOME": str(tmp_path),
        }
    )
    for args in (["-v", "topics", "apply"], ["-v", "acls", "apply"], ["-v", "audit", "verify"]):
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0, args
        assert secret not in result.stdout + result.stderr, args
        assert "cannot reach" in result.stderr, (args, result.stderr)


# -- deployments side by side (contract section 6; issue #18 item 9) -------------------------


def test_with_a_prefix_every_principal_is_the_prefixed_name() -> None:
    plan = load_acl_plan(ACLS_FILE, prefix="staging.")
    assert set(plan.principals) == {f"staging.{p}" for p in SECTION_6}
    assert {a.principal for a in plan.acls} == {f"User:staging.{p}" for p in SECTION_6}
    assert plan.super_users == ("admin",)  # the broker's, never a deployment's
    assert plan.principal("consentinel-gate") == "staging.consentinel-gate"
    assert plan.principal("User:egress") == "staging.egress"
    assert plan.principal("staging.egress") == "staging.egress"
    assert plan.principal("admin") == "admin"
    with pytest.raises(ConfigError, match="unknown principal 'mallory'"):
        plan.principal("mallory")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("", "staging."), ("staging.", ""), ("prod", "prod2."), ("prod2.", "prod"), ("a.", "b.")],
)
def test_applying_one_deployment_never_touches_another(ours: str, theirs: str) -> None:
    plan = load_acl_plan(ACLS_FILE, prefix=ours)
    other = load_acl_plan(ACLS_FILE, prefix=theirs)
    assert not set(plan.principals) & set(other.principals)  # no shared SCRAM user
    assert not any(plan.manages(acl) for acl in other.acls)
    own_stray = Acl(
        f"User:{ours}egress", AclOperation.WRITE, ResourceType.TOPIC, "governance.decisions", LIT
    )
    missing, extra = plan.changes(other.acls | plan.acls | {own_stray})
    assert missing == [] and extra == [own_stray]  # its own stray goes, theirs all stay
    missing, extra = plan.changes(other.acls)
    assert extra == [] and set(missing) == plan.acls


def test_staging_credentials_hold_no_right_on_prod_topics() -> None:
    staging = load_acl_plan(ACLS_FILE, prefix="staging.")
    prod = load_acl_plan(ACLS_FILE, prefix="prod.")
    staging_gate = {a for a in staging.acls if a.principal == "User:staging.consentinel-gate"}
    assert staging_gate
    for acl in staging_gate:
        if acl.resource_type != ResourceType.BROKER:
            assert acl.name.startswith("staging."), acl.describe()
    assert not any(a.principal == "User:staging.consentinel-gate" for a in prod.acls)


def test_egress_may_read_the_decisions_it_checks_and_write_nothing() -> None:
    grants = _grants(load_acl_plan(ACLS_FILE).acls, "egress")
    reads = {name for op, kind, name, _ in grants if op == "READ" and kind == "TOPIC"}
    assert reads == {"photo.share.approved", "governance.recalls", "governance.decisions"}
    assert not any(op in ("WRITE", "CREATE", "IDEMPOTENT_WRITE") for op, *_ in grants)


def test_credentials_with_a_prefix_are_the_prefixed_principals(tmp_path: Path) -> None:
    known = load_acl_plan(ACLS_FILE, prefix="staging.").principals
    for asked in ("egress", "User:egress", "staging.egress"):
        lines = credentials_lines(tmp_path, asked, known, prefix="staging.")
        assert "export KAFKA_SASL_USERNAME=staging.egress" in lines
    password = PasswordStore(passwords_file(tmp_path)).get("staging.egress")
    assert password is not None and f"export KAFKA_SASL_PASSWORD={password}" in lines
    assert PasswordStore(passwords_file(tmp_path)).get("egress") is None
    with pytest.raises(ConfigError, match="unknown principal"):
        credentials_lines(tmp_path, "prod.egress", known, prefix="staging.")


def test_the_credentials_command_follows_the_topic_prefix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CONSENTINEL_"))}
    env.update({"CONSENTINEL_STACK_HOME": str(tmp_path), "CONSENTINEL_TOPIC_PREFIX": "staging."})
    shown = subprocess.run(
        [sys.executable, "-m", "streams.cli", "stack", "credentials", "consentinel-gate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "export KAFKA_SASL_USERNAME=staging.consentinel-gate" in shown.stdout.splitlines()


def test_forgetting_a_password_keeps_the_others(tmp_path: Path) -> None:
    store = PasswordStore(passwords_file(tmp_path))
    kept = store.ensure(["a.egress", "b.egress"])["b.egress"]
    store.forget(["a.egress", "never-there"])
    assert store.get("a.egress") is None and store.get("b.egress") == kept
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def _granted(grants: set[tuple[str, str, str, str]], op: str, kind: str, name: str) -> bool:
    return any(
        g_op == op
        and g_kind == kind
        and (g_name == name if pattern == "LITERAL" else name.startswith(g_name))
        for g_op, g_kind, g_name, pattern in grants
    )


@pytest.mark.parametrize("build", [gate_driver, detector_driver], ids=["gate", "detector"])
def test_each_processor_may_do_everything_its_topology_declares(build: Any) -> None:
    """The ACLs follow the topologies: a source, global table, output or group the runtime uses
    and ``acls.yaml`` forgets would stall that processor on a secure cluster (the detector's
    controls reader did: TOPIC_AUTHORIZATION_FAILED until its catch-up timed out)."""
    spec = build().topology.spec
    grants = _grants(load_acl_plan(ACLS_FILE).acls, spec.name)
    assert grants, f"no principal {spec.name} in acls.yaml"
    tables = tuple(table.topic for table in spec.global_tables)
    wanted = [
        *(("READ", "TOPIC", t) for t in (*spec.sources, *tables, spec.changelog)),
        *(("WRITE", "TOPIC", t) for t in (*spec.outputs, spec.changelog)),
        *(("CREATE", "TOPIC", t) for t in (*spec.internal, spec.changelog)),
        *(
            ("DESCRIBE_CONFIGS", "TOPIC", t)
            for t in spec.sources
            if spec.source_configs and t not in spec.internal
        ),
        ("READ", "GROUP", spec.name),
        ("READ", "GROUP", spec.name + "-restore"),
        *(("READ", "GROUP", reader_group(t)) for t in tables),
    ]
    missing = [w for w in wanted if not _granted(grants, *w)]
    assert not missing, f"{spec.name} lacks {missing}"
