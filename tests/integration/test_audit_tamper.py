"""Tampering with a trail the gate itself signed, on the real broker (contract section 6).

A gate runs with an Ed25519 key and decides requests; its signed chain heads appear in
`governance.checkpoints` (at least every 10 s while it decides: asserted to appear, with a
generous timeout). Then `consentinel audit verify` with the public key is run against:

- the untouched trail: exit 0;
- a forged, internally valid chain written from genesis into a partition the gate never wrote:
  no checkpoint covers it, exit 1 (without the key: exit 0, and it says it checked hashes only);
- a partition rewritten from genesis with an altered decision and a recomputed chain: exit 1;
- that rewrite with the checkpoints topic emptied as well: exit 1 (no checkpoint covers it).

And the gate refuses to start without a signing key unless told ``--unsigned``, which it logs
and exports as ``consentinel_gate_unsigned 1``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams import cli, topics
from streams.core.audit import GENESIS_HASH, chain_hash
from streams.core.checkpoint import generate_key_pair
from streams.core.partitioning import partition_for
from tests.integration.harness import POLICY, REPO, GateEnv, content_hash
from tests.support import free_port

pytestmark = pytest.mark.integration

UNTOUCHED = 3
"""The partition no request goes to: the forger's target for an uncovered chain."""


def _owners(env: GateEnv, count: int) -> list[str]:
    """Return ``count`` fresh owner ids, none on partition :data:`UNTOUCHED`."""
    owners: list[str] = []
    while len(owners) < count:
        owner = f"u-{uuid.uuid4().hex[:10]}"
        if partition_for(owner, env.partitions) != UNTOUCHED:
            owners.append(owner)
    return owners


def _decisions(env: GateEnv, count: int) -> dict[int, list[dict[str, Any]]]:
    """Read ``count`` decisions; return them by partition, in offset order."""
    messages = env.read_messages(topics.TOPIC_DECISIONS, count, timeout_s=180)
    by_partition: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for message in messages:
        record = env.codec.decode(env.topic(topics.TOPIC_DECISIONS), message.value())
        by_partition.setdefault(message.partition(), []).append((message.offset(), record))
    return {p: [r for _, r in sorted(rows, key=lambda x: x[0])] for p, rows in by_partition.items()}


def _recomputed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``records`` re-chained from genesis: an internally valid chain."""
    out, prev = [], GENESIS_HASH
    for record in records:
        forged = {k: v for k, v in record.items() if k != "hash"}
        forged["prev_hash"] = prev
        forged["hash"] = prev = chain_hash(forged, prev)
        out.append(forged)
    return out


def _produce(env: GateEnv, partition: int, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to one partition of the decisions topic, in order (a forger's write)."""
    topic = env.topic(topics.TOPIC_DECISIONS)
    producer = Producer({**env.settings.kafka_config(), "enable.idempotence": True})
    for record in records:
        producer.produce(
            topic,
            key=str(record["owner_id"]).encode(),
            value=env.codec.encode(topic, record),
            partition=partition,
        )
    assert producer.flush(30) == 0


def _empty(env: GateEnv, logical: str, partition: int) -> None:
    """Delete every record of one partition (as an administrator could)."""
    topic = env.topic(logical)
    consumer = Consumer({**env.settings.kafka_config(), "group.id": f"{env.prefix}wm"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
    finally:
        consumer.close()
    for future in env.admin.delete_records([TopicPartition(topic, partition, high)]).values():
        future.result(timeout=60)


def _verify(
    env: GateEnv,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    public: Path | None,
) -> tuple[int, str]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", env.settings.kafka_bootstrap_servers)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", env.settings.schema_registry_url)
    monkeypatch.setenv("CONSENTINEL_TOPIC_PREFIX", env.prefix)
    if public is None:
        monkeypatch.delenv("CONSENTINEL_VERIFY_KEY", raising=False)
    else:
        monkeypatch.setenv("CONSENTINEL_VERIFY_KEY", str(public))
    capsys.readouterr()
    code = cli.main(["audit", "verify"])
    return code, capsys.readouterr().out


def _line(out: str, partition: int) -> str:
    return next(x for x in out.splitlines() if x.startswith(f"partition {partition}:"))


def test_tampering_with_a_trail_the_gate_signed_is_found_with_the_key(
    gate_env: GateEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = gate_env
    private, public, key_id = generate_key_pair(tmp_path / "keys")
    monkeypatch.setenv("CONSENTINEL_SIGNING_KEY", str(private))
    now = int(time.time() * 1000)
    owners = _owners(env, 12)
    for i, owner in enumerate(owners):
        photo = f"p-{owner}"
        env.producer.photo_uploaded(
            photo_id=photo,
            owner_id=owner,
            content_sha256=content_hash(photo),
            media_type="image/jpeg",
            size_bytes=1000,
            occurred_at=now - 60_000 + i,
        )
        env.producer.share_requested(
            photo_id=photo,
            owner_id=owner,
            requester="share-svc",
            recipient_org="acme-vision",
            purpose="PARTNER_SHARING",
            categories=["IMAGE"],
            occurred_at=now - 30_000 + i,
        )
    env.producer.flush()

    with env.gate_thread():
        chains = _decisions(env, len(owners))
        counts = {p: len(records) for p, records in chains.items()}

        def signed_to_the_end(checkpoints: list[dict[str, Any]]) -> bool:
            heads = Counter[int]()
            for c in checkpoints:
                heads[c["partition"]] = max(heads[c["partition"]], c["decisions"])
            return all(heads[p] == n for p, n in counts.items())

        # the contract's bound is 10 s while deciding; the wait is generous (a shared machine)
        checkpoints = env.read(topics.TOPIC_CHECKPOINTS, until=signed_to_the_end, timeout_s=120)
    assert signed_to_the_end(checkpoints), f"unsigned heads: {counts} vs {checkpoints}"
    assert {c["key_id"] for c in checkpoints} == {key_id}
    assert UNTOUCHED not in chains and sum(counts.values()) == len(owners)

    code, out = _verify(env, monkeypatch, capsys, public)
    assert code == 0, out
    assert f"checkpoint signatures verified with key {key_id}" in out

    # 1. a forged, internally valid chain in a partition the gate never wrote: nothing signed it
    victim = max(chains, key=lambda p: len(chains[p]))
    forged = [{**r, "partition": UNTOUCHED} for r in chains[victim]]
    _produce(env, UNTOUCHED, _recomputed(forged))
    code, out = _verify(env, monkeypatch, capsys, public)
    assert code == 1, out
    assert "TAMPERED" in _line(out, UNTOUCHED) and "intact" in _line(out, victim)
    assert "no checkpoint signed by the verify key covers" in out
    code, out = _verify(env, monkeypatch, capsys, None)
    assert code == 0 and "verified the hashes only" in out, out  # why auditors need the key
    _empty(env, topics.TOPIC_DECISIONS, UNTOUCHED)
    code, out = _verify(env, monkeypatch, capsys, public)
    assert code == 0, out  # an empty partition no checkpoint covers is no finding

    # 2. the gate's partition rewritten from genesis: one DENY made ALLOW, the chain recomputed
    altered = [dict(r) for r in chains[victim]]
    altered[0].update(verdict="ALLOW", reason="CONSENTED", explanation="consent on file")
    _empty(env, topics.TOPIC_DECISIONS, victim)
    _produce(env, victim, _recomputed(altered))
    code, out = _verify(env, monkeypatch, capsys, public)
    assert code == 1, out
    assert "TAMPERED" in _line(out, victim) and "TAMPERING OR LOSS DETECTED" in out
    assert "no longer starts where the checkpoints say" in out

    # 3. ... and the signed heads removed as well: with the key, still a finding
    checkpoints_topic = env.topic(topics.TOPIC_CHECKPOINTS)
    listed = env.admin.list_topics(checkpoints_topic, timeout=30).topics[checkpoints_topic]
    for partition in listed.partitions:
        _empty(env, topics.TOPIC_CHECKPOINTS, partition)
    code, out = _verify(env, monkeypatch, capsys, public)
    assert code == 1, out
    assert "TAMPERED" in _line(out, victim)
    assert "no checkpoint signed by the verify key covers" in out
    for partition in chains:
        assert "TAMPERED" in _line(out, partition), out  # every non-empty partition is unsigned


def test_the_gate_refuses_to_start_without_a_key_unless_unsigned(gate_env: GateEnv) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": gate_env.settings.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": gate_env.settings.schema_registry_url,
        "CONSENTINEL_TOPIC_PREFIX": gate_env.prefix,
        "CONSENTINEL_INSTANCE_ID": "keyless",
        "CONSENTINEL_STATE_DIR": str(gate_env.work_dir / "state"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("CONSENTINEL_SIGNING_KEY", None)
    argv = [sys.executable, "-m", "streams.cli", "gate", "--policy", str(POLICY)]
    refused = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "CONSENTINEL_SIGNING_KEY is not set" in lines[0], lines
    assert "--unsigned" in lines[0]

    port = free_port()
    log = gate_env.work_dir / "gate-unsigned.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--unsigned"],
            env={**env, "METRICS_PORT": str(port)},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        metrics = ""
        deadline = time.monotonic() + 120
        while "consentinel_gate_unsigned 1.0" not in metrics and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert "consentinel_gate_unsigned 1.0" in metrics, log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert "running --unsigned" in log.read_text()
