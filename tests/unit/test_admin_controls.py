"""``consentinel recipients suspend|resume``: the Control record and the checks before writing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.admin.controls import (
    RESUME,
    SUSPEND,
    check_recipient,
    control_record,
    default_actor,
    describe_control,
    issue_control,
)
from streams.cli import build_parser, main
from streams.core.policy import load_policy
from streams.errors import ConfigError, InvalidEventError
from streams.serde.catalog import default_catalog
from streams.serde.testing import InMemorySchemaSource
from streams.serde.wire import AvroCodec
from streams.topics import TOPIC_CONTROLS

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"


def test_control_record_fields_and_schema() -> None:
    record = control_record(SUSPEND, "acme-vision", "bulk export", "operator:alice", at_ms=123)
    assert uuid.UUID(record["control_id"])
    assert record == {
        "control_id": record["control_id"],
        "at": 123,
        "kind": "SUSPEND_RECIPIENT",
        "recipient_org": "acme-vision",
        "reason": "bulk export",
        "actor": "operator:alice",
    }
    codec = AvroCodec(InMemorySchemaSource(), default_catalog())
    assert codec.decode(TOPIC_CONTROLS, codec.encode(TOPIC_CONTROLS, record)) == record


def test_control_record_defaults_at_to_now_and_makes_unique_ids() -> None:
    a = control_record(RESUME, "x", "r", "a")
    b = control_record(RESUME, "x", "r", "a")
    assert a["at"] > 1_700_000_000_000
    assert a["control_id"] != b["control_id"]


@pytest.mark.parametrize(
    ("kind", "recipient", "reason", "actor", "match"),
    [
        ("UNKNOWN", "x", "r", "a", "allowed: SUSPEND_RECIPIENT, RESUME_RECIPIENT"),
        ("SUSPEND", "x", "r", "a", "Control.kind"),
        (SUSPEND, "", "r", "a", "recipient_org"),
        (SUSPEND, "x", "  ", "a", "reason"),
        (SUSPEND, "x", "r", "", "actor"),
    ],
)
def test_control_record_refuses_bad_values(
    kind: str, recipient: str, reason: str, actor: str, match: str
) -> None:
    with pytest.raises(InvalidEventError, match=match):
        control_record(kind, recipient, reason, actor)


def test_default_actor_is_operator_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "alice")
    assert default_actor() == "operator:alice"


def test_check_recipient_against_policy() -> None:
    policy = load_policy(POLICY)
    check_recipient("acme-vision", policy)
    with pytest.raises(ConfigError, match="did you mean 'acme-vision'"):
        check_recipient("acme-visoin", policy)


class FakeProducer:
    def __init__(self) -> None:
        self.produced: list[tuple[str, Any, dict[str, Any], int | None]] = []
        self.flushed = 0

    def topic(self, contract_topic: str) -> str:
        return "pfx." + contract_topic

    def produce(
        self, topic: str, key: Any, record: dict[str, Any], *, timestamp_ms: int | None = None
    ) -> None:
        self.produced.append((topic, key, record, timestamp_ms))

    def flush(self, timeout: float = 30.0) -> None:
        self.flushed += 1


def test_issue_control_writes_keyed_by_recipient_to_the_mapped_topic_and_flushes() -> None:
    producer = FakeProducer()
    topic, record = issue_control(
        SUSPEND,
        "acme-vision",
        "why",
        actor="it",
        policy=load_policy(POLICY),
        producer=producer,  # type: ignore[arg-type]
    )
    assert topic == "pfx.governance.controls"
    assert producer.produced == [(topic, "acme-vision", record, record["at"])]
    assert producer.flushed == 1
    assert "SUSPEND_RECIPIENT acme-vision written to pfx.governance.controls" in (
        describe_control(topic, record)
    )


def test_issue_control_refuses_unknown_recipient_before_writing() -> None:
    producer = FakeProducer()
    with pytest.raises(ConfigError, match="not in the policy"):
        issue_control(
            SUSPEND,
            "shady-ai",
            "why",
            policy=load_policy(POLICY),
            producer=producer,  # type: ignore[arg-type]
        )
    assert producer.produced == []


@pytest.mark.integration  # the CLI probes Kafka before it reads the policy: exit 3 without it
def test_cli_refuses_unknown_recipient_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recipients", "suspend", "shady-ai", "--reason", "x", "--policy", str(POLICY)])
    assert code == 2
    assert "'shady-ai' is not in the policy" in capsys.readouterr().err


def test_cli_syntax() -> None:
    parser = build_parser()
    args = parser.parse_args(["recipients", "suspend", "acme-vision", "--reason", "bulk"])
    assert (args.action, args.name, args.reason, args.actor) == (
        "suspend",
        "acme-vision",
        "bulk",
        None,
    )
    args = parser.parse_args(["recipients", "resume", "acme-vision"])
    assert args.reason == "resumed by an operator"
    with pytest.raises(SystemExit):
        parser.parse_args(["recipients", "suspend", "acme-vision"])  # --reason is required
    args = parser.parse_args(["report", "decisions", "--since", "2026-11-01", "--format", "csv"])
    assert (args.kind, args.since, args.until, args.format) == (
        "decisions",
        "2026-11-01",
        None,
        "csv",
    )
    args = parser.parse_args(
        ["report", "user", "u42", "--out", "u42.parquet", "--format", "parquet"]
    )
    assert (args.user_id, args.out, args.format) == ("u42", Path("u42.parquet"), "parquet")
