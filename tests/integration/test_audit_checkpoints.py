"""`consentinel audit verify` on the real broker: signed checkpoints catch a rewritten partition.

Writes a valid decision chain on two partitions of a prefixed `governance.decisions`, signed
checkpoints of both heads to the prefixed `governance.checkpoints`, and checks the command's exit
codes: 0 while intact; 1 once partition 0 is rewritten from its first record with a recomputed
(internally valid) chain; 0 again with `--from-checkpoint` after retention-like deletion of early
records of an intact log.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams import cli, topics
from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.checkpoint import build_checkpoint, generate_key_pair, load_signing_key
from streams.serde.catalog import prefixed_catalog
from streams.serde.registry import RegistrySchemaSource, register_all
from streams.serde.wire import AvroCodec
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration

T = 1_790_000_000_000


@pytest.fixture
def audit_env(
    settings: Settings, admin: AdminClient, unique: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    prefix = f"it-audit-{unique}."
    scoped = load_settings(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        SCHEMA_REGISTRY_URL=settings.schema_registry_url,
        CONSENTINEL_TOPIC_PREFIX=prefix,
    )
    decisions = prefix + topics.TOPIC_DECISIONS
    checkpoints = prefix + topics.TOPIC_CHECKPOINTS
    futures = admin.create_topics(
        [NewTopic(decisions, num_partitions=2), NewTopic(checkpoints, num_partitions=1)]
    )
    for future in futures.values():
        future.result(timeout=30)
    catalog = prefixed_catalog(scoped)
    register_all(scoped.schema_registry_url, catalog, topics=[decisions, checkpoints])
    codec = AvroCodec(RegistrySchemaSource(scoped.schema_registry_url), catalog)
    private, public, _ = generate_key_pair(tmp_path / "keys")
    env = {
        "settings": scoped,
        "decisions": decisions,
        "checkpoints": checkpoints,
        "codec": codec,
        "key": load_signing_key(private),
        "public": public,
        "producer": Producer(scoped.kafka_config()),
    }
    try:
        yield env
    finally:
        for future in admin.delete_topics([decisions, checkpoints]).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def decision_chain(n: int, partition: int, tag: str = "") -> list[dict[str, Any]]:
    out, prev = [], GENESIS_HASH
    for i in range(n):
        record: dict[str, Any] = {
            "decision_id": f"{tag}d{partition}-{i}-{uuid.uuid4().hex[:6]}",
            "decided_at": T + i,
            "subject_event_id": f"e{i}",
            "subject_kind": "SHARE",
            "photo_id": f"p{i}",
            "owner_id": f"user-{partition}",
            "actor": "svc",
            "recipient_org": "acme-vision",
            "purpose": "PARTNER_SHARING",
            "verdict": "DENY",
            "reason": "NO_CONSENT",
            "explanation": "no consent",
            "policy_version": "v1",
            "consent_event_id": None,
            "prev_hash": prev,
            "categories": ["IMAGE"],
            "occurred_at": T + i,
            "partition": partition,
            "model_id": None,
        }
        record["hash"] = chain_hash(record, prev)
        prev = record["hash"]
        out.append(record)
    return out


def produce(
    env: dict[str, Any], topic: str, partition: int, records: list[dict[str, Any]]
) -> list[int]:
    offsets: list[int] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        offsets.append(msg.offset())

    for record in records:
        env["producer"].produce(
            topic,
            key=str(record.get("owner_id", partition)).encode(),
            value=env["codec"].encode(topic, record),
            partition=partition,
            on_delivery=delivered,
        )
        env["producer"].flush(30)  # one at a time: offsets in order
    return offsets


def sign_heads(
    env: dict[str, Any], partition: int, chain: list[dict[str, Any]], offsets: list[int], *at: int
) -> None:
    checkpoints = [
        build_checkpoint(
            env["key"],
            partition=partition,
            offset=offsets[i],
            hash=chain[i]["hash"],
            decisions=i + 1,
            at_ms=T + i,
        )
        for i in at
    ]
    produce(env, env["checkpoints"], 0, checkpoints)


def run_verify(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, *extra: str) -> int:
    scoped: Settings = env["settings"]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", scoped.kafka_bootstrap_servers)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", scoped.schema_registry_url)
    monkeypatch.setenv("CONSENTINEL_TOPIC_PREFIX", scoped.topic_prefix)
    monkeypatch.setenv("CONSENTINEL_VERIFY_KEY", str(env["public"]))
    return cli.main(["audit", "verify", *extra])


def test_rewritten_partition_exits_1(
    audit_env: dict[str, Any],
    admin: AdminClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = audit_env
    chains = {p: decision_chain(5, p) for p in (0, 1)}
    for partition, chain in chains.items():
        offsets = produce(env, env["decisions"], partition, chain)
        sign_heads(env, partition, chain, offsets, 1, 4)

    assert run_verify(env, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "every chain is intact" in out and "signatures verified with key ed25519:" in out

    # Rewrite partition 0 from its first record: delete it all, write a recomputed valid chain.
    done = admin.delete_records([TopicPartition(env["decisions"], 0, 5)])
    for future in done.values():
        future.result(timeout=30)
    forged = decision_chain(5, 0, tag="forged-")
    produce(env, env["decisions"], 0, forged)

    assert run_verify(env, monkeypatch) == 1
    out = capsys.readouterr().out
    assert "TAMPERING OR LOSS DETECTED" in out
    assert "partition 0: TAMPERED" in out and "partition 1: intact" in out
    assert "no longer starts where the checkpoints say" in out


def test_from_checkpoint_verifies_a_log_after_retention(
    audit_env: dict[str, Any],
    admin: AdminClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = audit_env
    chain = decision_chain(6, 0)
    offsets = produce(env, env["decisions"], 0, chain)
    sign_heads(env, 0, chain, offsets, 1, 3, 5)
    for future in admin.delete_records([TopicPartition(env["decisions"], 0, offsets[2])]).values():
        future.result(timeout=30)  # as retention would: the first two decisions are gone

    assert run_verify(env, monkeypatch) == 1
    capsys.readouterr()
    assert run_verify(env, monkeypatch, "--from-checkpoint") == 0
    out = capsys.readouterr().out
    assert "verified from checkpoint" in out and "every chain is intact" in out
