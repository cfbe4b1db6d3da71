"""The gate and the detectors on the secure broker, each as its own principal (CONTRACT §6).

Producers write as ``uploads-app``, ``consent-service``, ``share-requester`` and
``training-loader``; the gate runs as ``consentinel-gate`` and the detectors as
``consentinel-detector``, with only the ACLs of ``deploy/acls.yaml``; ``egress`` reads the approved
shares and the ``auditor`` the decisions. A share is decided and leaves; a bulk export is
alerted and the recipient suspended, exactly as on the plaintext broker.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams import topics
from streams.core.checkpoint import generate_key_pair
from streams.core.egress import DECISION_ID_HEADER
from streams.detect.app import build_detector
from streams.egress.check import run_egress_check
from streams.errors import ConsentinelError
from streams.gate.app import build_runner
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from streams.runtime.runner import StreamRunner
from streams.sdk import ConsentinelProducer
from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
from streams.serde.factory import codec_from_settings
from streams.serde.registry import register_all
from streams.settings import Settings, load_settings
from streams.stack.secure import quiet
from tests.integration.harness import replay_policy

pytestmark = [pytest.mark.integration, pytest.mark.secure, pytest.mark.timeout(300)]

LIMIT = 5
REPO = Path(__file__).resolve().parents[2]


def _settings(config: dict[str, Any], prefix: str, **extra: str) -> Settings:
    return load_settings(
        KAFKA_BOOTSTRAP_SERVERS=config["bootstrap.servers"],
        KAFKA_SECURITY_PROTOCOL=config["security.protocol"],
        KAFKA_SASL_MECHANISM=config["sasl.mechanism"],
        KAFKA_SASL_USERNAME=config["sasl.username"],
        KAFKA_SASL_PASSWORD=config["sasl.password"],
        CONSENTINEL_TOPIC_PREFIX=prefix,
        **extra,
    )


@contextmanager
def _running(runner: StreamRunner[Any]) -> Iterator[StreamRunner[Any]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(60)
    assert not errors, f"a processor failed: {errors[0]!r}"


def _read(settings: Settings, logical: str, group: str) -> list[dict[str, Any]]:
    name = settings.topic_prefix + logical
    consumer = Consumer({**settings.kafka_config(), **READER_CONFIG, "group.id": group})
    codec = codec_from_settings(settings)
    out: list[dict[str, Any]] = []
    try:
        meta = consumer.list_topics(name, timeout=10).topics[name]
        parts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]

        def decode(messages: list[Any]) -> None:
            for message in messages:
                with contextlib.suppress(ConsentinelError):  # other tests' raw probes
                    out.append(codec.decode(name, message.value()))

        read_to_end(consumer, parts, decode, timeout_s=20, what=name)
    finally:
        consumer.close()
    return out


def _wait(
    what: str, found: Callable[[], list[Any]], count: int, timeout_s: float = 90
) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = found()
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, f"{what}: {len(records)} of {count} within {timeout_s}s"
        time.sleep(0.5)


def test_the_gate_and_detectors_run_as_their_own_principals(
    as_principal: Callable[[str], dict[str, Any]], prefix: str, tmp_path: Path
) -> None:
    admin = _settings(as_principal("admin"), prefix)
    register_all(
        admin.schema_registry_url,
        prefixed_catalog(admin),
        topics=[prefix + t for t in TOPIC_RECORDS],
    )
    policy = replay_policy().read_text()
    policy = policy.replace("max_photos_per_hour: 5000", f"max_photos_per_hour: {LIMIT}")
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy)
    signing_key, _, _ = generate_key_pair(tmp_path / "keys")  # the gate refuses to run keyless
    state = {"CONSENTINEL_STATE_DIR": str(tmp_path / "state"), "CONSENTINEL_INSTANCE_ID": "sec"}
    state["CONSENTINEL_SIGNING_KEY"] = str(signing_key)
    gate_settings = _settings(as_principal("consentinel-gate"), prefix, **state)
    detector_settings = _settings(as_principal("consentinel-detector"), prefix, **state)
    # the deployment's own principals (contract section 6, "Deployments side by side")
    assert gate_settings.kafka_sasl_username == f"{prefix}consentinel-gate"
    assert detector_settings.kafka_sasl_username == f"{prefix}consentinel-detector"
    gate = build_runner(gate_settings, policy_path)
    detector = build_detector(detector_settings, policy_path)
    producers = {
        name: ConsentinelProducer(_settings(as_principal(name), prefix), source="secure-it")
        for name in ("uploads-app", "consent-service", "share-requester", "training-loader")
    }
    now = int(time.time() * 1000)
    tag = uuid.uuid4().hex[:6]
    users = [f"u-{tag}-{i}" for i in range(LIMIT + 2)]
    with _running(gate), _running(detector):
        for user in users:
            photo = f"p-{user}"
            producers["uploads-app"].photo_uploaded(
                photo_id=photo,
                owner_id=user,
                content_sha256=hashlib.sha256(photo.encode()).hexdigest(),
                media_type="image/jpeg",
                size_bytes=1,
                occurred_at=now - 60_000,
            )
            for purpose in ("ML_TRAINING", "PARTNER_SHARING"):
                producers["consent-service"].consent_changed(
                    user_id=user,
                    purpose=purpose,
                    granted=True,
                    notice_version="n1",
                    categories=["IMAGE"],
                    occurred_at=now - 50_000,
                )
        for producer in producers.values():
            producer.flush()
        share = producers["share-requester"].share_requested(
            photo_id=f"p-{users[0]}",
            owner_id=users[0],
            requester="svc",
            recipient_org="lovebird-partners",
            purpose="PARTNER_SHARING",
            categories=["IMAGE"],
            occurred_at=now - 40_000,
        )
        for i, user in enumerate(users):
            producers["training-loader"].training_read(
                job_id="job-sec",
                model_id="faceprint-sec",
                org="acme-vision",
                photo_id=f"p-{user}",
                owner_id=user,
                categories=["IMAGE"],
                occurred_at=now - 30_000 + i,
            )
        producers["training-loader"].flush()
        producers["share-requester"].flush()

        auditor = _settings(as_principal("auditor"), prefix)
        decisions = _wait(
            "decisions",
            lambda: _read(auditor, topics.TOPIC_DECISIONS, f"auditor-{tag}"),
            len(users) + 1,
        )
        egress = _settings(as_principal("egress"), prefix)
        approved = _wait(
            "approved shares",
            lambda: _read(egress, topics.TOPIC_SHARE_APPROVED, f"egress-{tag}"),
            1,
        )
        alerts = _wait(
            "alerts",
            lambda: [
                a
                for a in _read(admin, topics.TOPIC_ALERTS, f"admin-{tag}")
                if a["kind"] == "BULK_EXPORT"
            ],
            1,
        )
    verdicts = {d["subject_event_id"]: d["verdict"] for d in decisions}
    assert verdicts[share] == "ALLOW"
    assert [a["event_id"] for a in approved] == [share]
    assert len(alerts) == 1 and alerts[0]["subject"] == "acme-vision"
    assert alerts[0]["action"] == "RECIPIENT_SUSPENDED"
    _egress_checks_each_approved_record(as_principal, prefix, admin, egress, tmp_path)


def _raw_messages(settings: Settings, logical: str) -> list[Any]:
    name = settings.topic_prefix + logical
    consumer = Consumer({**settings.kafka_config(), **READER_CONFIG, "group.id": "admin-raw"})
    out: list[Any] = []
    try:
        meta = consumer.list_topics(name, timeout=10).topics[name]
        parts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
        read_to_end(consumer, parts, out.extend, timeout_s=20, what=name)
    finally:
        consumer.close()
    return out


def _egress_checks_each_approved_record(
    as_principal: Callable[[str], dict[str, Any]],
    prefix: str,
    admin: Settings,
    egress: Settings,
    tmp_path: Path,
) -> None:
    """Contract section 6, "Egress check", as User:egress (who may now read the decisions)."""
    name = prefix + topics.TOPIC_SHARE_APPROVED
    raw = _raw_messages(admin, topics.TOPIC_SHARE_APPROVED)
    (genuine,) = [m for m in raw if m.headers()]  # the others: raw probes of other tests
    probes = {f"{name}[{m.partition()}]@{m.offset()}" for m in raw if not m.headers()}
    ledger = tmp_path / "egress-ledger.sqlite"
    lines: list[str] = []
    run_egress_check(egress, ledger_path=ledger, say=lines.append)
    assert [line.split(":")[0] for line in lines if line.startswith("ship")] == [
        f"ship {name}[{genuine.partition()}]@{genuine.offset()}"
    ], lines
    refused = [line.split(": ", 1) for line in lines if line.startswith("REFUSED")]
    assert {where.removeprefix("REFUSED ") for where, _ in refused} == probes
    assert all("not written by the gate" in why for _, why in refused)
    again: list[str] = []
    run_egress_check(egress, ledger_path=ledger, say=again.append)
    assert [line for line in again if line.startswith(("=", "ship"))] == [
        f"= {name}[{genuine.partition()}]@{genuine.offset()}: already delivered"
        f" (decision {dict(genuine.headers())[DECISION_ID_HEADER].decode()})"
    ]  # never twice

    # Whoever gets write access to the approved topic (here: admin) cannot get more out.
    codec = codec_from_settings(admin)
    tampered = {**codec.decode(name, genuine.value()), "requester": "mallory-svc"}
    producer = Producer(quiet(as_principal("admin")))
    for value in (genuine.value(), codec.encode(name, tampered), None):
        producer.produce(
            name, key=genuine.key(), value=value, headers=genuine.headers(),
            partition=genuine.partition(),
        )  # fmt: skip
    assert producer.flush(10) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CONSENTINEL_"))}
    login = as_principal("egress")
    env.update(
        {
            "CONSENTINEL_TOPIC_PREFIX": prefix,
            "KAFKA_BOOTSTRAP_SERVERS": login["bootstrap.servers"],
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": login["sasl.username"],
            "KAFKA_SASL_PASSWORD": login["sasl.password"],
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli", "egress", "check", "--ledger", str(ledger)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    attacks = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("REFUSED") and line.split(": ", 1)[0][len("REFUSED ") :] not in probes
    ]
    assert len(attacks) == 3, result.stdout
    assert "replay" in attacks[0]
    assert "requester" in attacks[1] and "not the request" in attacks[1]
    assert "no share payload" in attacks[2]
    summary = f"egress check: 0 to ship, {3 + len(probes)} refused, 1 already delivered"
    assert summary in result.stdout.splitlines()
