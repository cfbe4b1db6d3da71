"""``report transfers``, ``report recalls`` and ``report user`` against prefixed topics.

Decisions, consents, recall orders and acks are written directly (no gate): the reports only
read, and writing the records lets the test place decisions in time (the decisions topic keeps
the producer's timestamps) to check the seek by ``--since`` and the stop at ``--until``.
"""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pytest
from confluent_kafka import Consumer

from streams import topics
from streams.cli import main
from streams.report.spool import plan_read
from tests.ack_support import ACK_KEY, EXAMPLE_POLICY, OTHER_KEY, with_ack_keys
from tests.integration.harness import GateEnv

pytestmark = pytest.mark.integration

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decision(
    env: GateEnv, decision_id: str, decided_at: int, owner: str, **fields: Any
) -> dict[str, Any]:
    """Write one ``Decision`` (an allowed share to acme-vision unless ``fields`` say otherwise)."""
    record: dict[str, Any] = {
        "decision_id": decision_id,
        "decided_at": decided_at,
        "subject_event_id": f"e-{decision_id}",
        "subject_kind": "SHARE",
        "photo_id": f"p-{decision_id}",
        "owner_id": owner,
        "actor": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        "explanation": "The owner consented.",
        "policy_version": "2026-11-26.1",
        "consent_event_id": None,
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
        "categories": ["IMAGE"],
        "occurred_at": decided_at - 100,
        "partition": -1,
        "model_id": None,
    }
    record.update(fields)
    topic = env.topic(topics.TOPIC_DECISIONS)
    env.producer.produce(topic, owner, record, timestamp_ms=decided_at)
    return record


def recall_order(
    env: GateEnv, order_id: str, recipient: str, user: str, issued_at: int, due_at: int
) -> None:
    record = {
        "order_id": order_id,
        "issued_at": issued_at,
        "recipient_org": recipient,
        "user_id": user,
        "photo_ids": [f"{order_id}-p1", f"{order_id}-p2"],
        "model_ids": [f"{order_id}-m"],
        "cause": "ERASURE_REQUESTED",
        "decision_ids": [f"{order_id}-d"],
        "due_at": due_at,
    }
    env.producer.produce(env.topic(topics.TOPIC_RECALLS), recipient, record, timestamp_ms=issued_at)


def test_transfers_recalls_and_user_reports_from_the_command_line(
    gate_env: GateEnv,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    tag = uuid.uuid4().hex[:6]
    u1, u2 = f"u1-{tag}", f"u2-{tag}"
    p = gate_env.producer
    consent = p.consent_changed(
        user_id=u1, purpose="ML_TRAINING", granted=True, notice_version="notice-2026-03",
        categories=["IMAGE"],
    )  # fmt: skip
    p.flush()
    now = int(time.time() * 1000)
    decision(gate_env, "d-old", now - 3 * DAY, u1, consent_event_id=consent)  # before --since
    decision(gate_env, "d1", now + 1000, u1, consent_event_id=consent)
    decision(gate_env, "d2", now + 2000, u1, verdict="DENY", reason="NO_CONSENT")  # never left
    decision(
        gate_env, "d3", now + 3000, u2, subject_kind="TRAINING_READ", actor="job-1",
        model_id="model-1", verdict="DENY", reason="NO_CONSENT",
    )  # fmt: skip
    decision(gate_env, "d4", now + 4000, u2, recipient_org="lovebird-partners")
    decision(gate_env, "d5", now + 50 * MINUTE, u1, policy_version="2026-12-01.1")  # after --until
    recall_order(gate_env, "o1", "acme-vision", u1, now - DAY, now + 29 * DAY)
    recall_order(gate_env, "o2", "acme-vision", u2, now - 40 * DAY, now - 10 * DAY)
    recall_order(gate_env, "o3", "lovebird-partners", u2, now - DAY, now + 29 * DAY)
    p.flush()
    p.acknowledge_recall(
        order_id="o1", recipient_org="acme-vision", evidence="ticket-1",
        deleted_photo_ids=["o1-p1"], signing_key=ACK_KEY,
    )  # fmt: skip
    p.acknowledge_recall(
        order_id="o3", recipient_org="lovebird-partners", evidence="cert-3",
        deleted_photo_ids=["o3-p1", "o3-p2"], purged_model_ids=["o3-m"],
        signing_key=OTHER_KEY,
    )  # fmt: skip
    p.acknowledge_recall(
        order_id="o2", recipient_org="acme-vision", evidence="forged",
        deleted_photo_ids=["o2-p1", "o2-p2"], purged_model_ids=["o2-m"], signing_key=OTHER_KEY,
    )  # fmt: skip  # lovebird's key on acme-vision's ack: closes nothing
    p.flush()
    policy = tmp_path / "policy.yaml"
    policy.write_text(with_ack_keys(EXAMPLE_POLICY.read_text()))

    since, until = iso(now - HOUR), iso(now + 30 * MINUTE)
    # The broker refuses timestamps over an hour ahead (Kafka 4: message.timestamp.after.max.ms),
    # so "later" is within the hour here: --until is 30 minutes ahead, d5 50 minutes.
    reader = Consumer({**gate_env.settings.kafka_config(), "group.id": "plan"})
    try:
        plan = plan_read(
            reader, gate_env.topic(topics.TOPIC_DECISIONS), since_ms=now - HOUR,
            until_ms=now + 30 * MINUTE,
        )  # fmt: skip
    finally:
        reader.close()
    assert plan.total == 4  # d1..d4: the old decision and d5 are never fetched

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", gate_env.settings.kafka_bootstrap_servers)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", gate_env.settings.schema_registry_url)
    monkeypatch.setenv("CONSENTINEL_TOPIC_PREFIX", gate_env.prefix)
    monkeypatch.setenv("CONSENTINEL_POLICY", str(policy))  # the ack keys acks are verified with
    capsys.readouterr()
    args = ["report", "transfers", "--recipient", "acme-vision", "--since", since, "--until", until]
    assert main([*args, "--format", "csv"]) == 0
    frame = pl.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame["decision_id"].to_list() == ["d1", "d3"]
    d1, d3 = frame.to_dicts()
    assert (d1["owner_id"], d1["photo_id"], d1["purpose"]) == (u1, "p-d1", "ML_TRAINING")
    assert (d1["consent_event_id"], d1["notice_version"]) == (consent, "notice-2026-03")
    assert d1["policy_version"] == "2026-11-26.1"
    assert (d3["verdict"], d3["model_id"], d3["notice_version"]) == ("DENY", "model-1", None)

    assert main([*args]) == 0
    table = capsys.readouterr().out
    assert "transfers to acme-vision" in table and ": 2 (first" in table
    assert "policy versions seen: 2026-11-26.1" in table

    page = tmp_path / "transfers.html"
    assert (
        main(["report", "transfers", "--since", since, "--format", "html", "--out", str(page)]) == 0
    )
    text = page.read_text()
    assert "<svg" in text and "lovebird-partners" in text and "2026-12-01.1" in text
    assert "Recall orders by state" in text
    parquet = tmp_path / "transfers.parquet"
    assert main([*args, "--format", "parquet", "--out", str(parquet)]) == 0
    assert pl.read_parquet(parquet)["decision_id"].to_list() == ["d1", "d3"]

    capsys.readouterr()
    assert main(["report", "recalls", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    orders = pl.read_csv(io.StringIO(out.split("# orders\n")[1]))
    states = dict(zip(orders["order_id"], orders["state"], strict=True))
    assert states == {"o1": "PARTIAL", "o2": "OVERDUE", "o3": "ACKNOWLEDGED"}
    o1 = orders.filter(pl.col("order_id") == "o1").to_dicts()[0]
    assert (o1["missing_photos"], o1["missing_models"]) == ("o1-p2", "o1-m")
    by_recipient = pl.read_csv(io.StringIO(out.split("# orders\n")[0].split("# by_recipient\n")[1]))
    acme = by_recipient.filter(pl.col("recipient_org") == "acme-vision").to_dicts()[0]
    assert (acme["partial"], acme["overdue"], acme["total"]) == (1, 1, 2)
    assert main(["report", "recalls", "--recipient", "lovebird-partners"]) == 0
    assert "ACKNOWLEDGED 1" in capsys.readouterr().out
    assert main(["report", "recalls", "--recipient", "acme-vision"]) == 0
    table = capsys.readouterr().out
    assert "OVERDUE 1" in table  # o2, whatever the forged ack claims
    assert "ack rejected: ack of order o2 from 'acme-vision' does not count" in table
    monkeypatch.delenv("CONSENTINEL_POLICY")
    assert main(["report", "recalls"]) == 0
    table = capsys.readouterr().out
    assert "ACKNOWLEDGED 0" in table and "3 recall ack(s) NOT counted" in table
    monkeypatch.setenv("CONSENTINEL_POLICY", str(policy))

    assert main(["report", "user", u2]) == 0
    text = capsys.readouterr().out
    assert f"recall orders naming user {u2}: 2" in text
    assert "o2" in text and "OVERDUE" in text and "o3" in text
    assert main(["report", "recalls", "--format", "html"]) == 2  # html needs --out
    assert "--format html needs --out FILE" in capsys.readouterr().err
