"""``consentinel egress check``: check every approved share against its decision, on the broker.

Run as ``User:egress`` (contract section 6: it reads ``photo.share.approved`` and
``governance.decisions``). It reads the approved shares to their current end, then the decisions
to theirs (the gate writes a share and its decision in one transaction, so every genuine share's
decision is there by then), keeping only the decisions the shares' headers name, read as written so
their hashes can be recomputed. Each approved record, in offset order per partition, then goes
through :func:`streams.core.egress.check_approved` with the ledger file, and one line says what
egress does with it::

    ship photo.share.approved[0]@12: share s-1 of photo p-1 to acme-vision (decision d-...)
    = photo.share.approved[0]@12: already delivered (decision d-...)
    REFUSED photo.share.approved[1]@3: <why>

A record that ships is claimed in the ledger (and, with ``--out``, appended to that file as one
JSON line: what a delivery job sends on). Exit code 0 when nothing was refused, 1 when anything
was (a finding), 3 when Kafka or the registry cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams import topics
from streams.core.egress import (
    DECISION_HASH_HEADER,
    EgressVerdict,
    check_approved,
    header_value,
)
from streams.egress.ledger import SqliteLedger
from streams.errors import ConfigError, ConsentinelError, MissingTopicError, TransientError
from streams.runtime.read_to_end import READER_CONFIG, read_to_end
from streams.serde.factory import codec_from_settings
from streams.serde.wire import AvroCodec
from streams.settings import Settings

EXIT_OK = 0
EXIT_REFUSED = 1


@dataclass
class EgressTally:
    """What one run did."""

    shipped: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    """``(record_at, why)`` of every refused record."""
    already: int = 0

    def summary(self) -> str:
        """Return the run's last line."""
        return (
            f"egress check: {len(self.shipped)} to ship, {len(self.refused)} refused,"
            f" {self.already} already delivered"
        )


def _consumer(settings: Settings) -> Consumer:
    group = f"{settings.topic_prefix}egress-check"  # never commits: the ledger is the memory
    return Consumer({**settings.kafka_config(), **READER_CONFIG, "group.id": group})


def _read_all(settings: Settings, logical: str, timeout_s: float) -> list[Message]:
    name = settings.topic_prefix + logical
    consumer = _consumer(settings)
    out: list[Message] = []
    try:
        meta = consumer.list_topics(name, timeout=min(timeout_s, 30.0)).topics.get(name)
        if meta is not None and meta.error is not None and "AUTHORIZATION" in str(meta.error):
            who = settings.kafka_sasl_username or "anonymous"
            raise ConfigError(
                f"the principal we run as ({who}) may not read {name}",
                hint="egress runs as its deployment's egress principal, which `consentinel acls"
                " apply` lets read the approved shares and the decisions"
                ' (`eval "$(consentinel stack credentials egress)"` locally)',
            )
        if meta is None or meta.error is not None or not meta.partitions:
            raise MissingTopicError(
                f"topic {name} cannot be read: {meta.error if meta else 'missing'}",
                hint="run `consentinel topics apply` (and check CONSENTINEL_TOPIC_PREFIX)",
            )
        starts = [TopicPartition(name, p, OFFSET_BEGINNING) for p in sorted(meta.partitions)]
        read_to_end(consumer, starts, out.extend, timeout_s=timeout_s, what=name)
    finally:
        consumer.close()
    return out


def _decisions_named(
    settings: Settings, codec: AvroCodec, hashes: set[str], timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Return ``{hash: decision}`` for the decisions whose hash is in ``hashes``."""
    name = settings.topic_prefix + topics.TOPIC_DECISIONS
    found: dict[str, dict[str, Any]] = {}
    for message in _read_all(settings, topics.TOPIC_DECISIONS, timeout_s):
        try:
            record = codec.decode_as_written(name, message.value())
        except TransientError:
            raise
        except ConsentinelError:
            continue  # an unreadable decision lets nothing out: its shares find none
        digest = record.get("hash")
        if isinstance(digest, str) and digest in hashes:
            found[digest] = dict(record)
    return found


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def check_approved_shares(
    settings: Settings,
    ledger: SqliteLedger,
    *,
    say: Callable[[str], None] = print,
    out: TextIO | None = None,
    timeout_s: float = 60.0,
) -> EgressTally:
    """Check every record of the deployment's ``photo.share.approved`` (see the module doc)."""
    codec = codec_from_settings(settings)
    approved_topic = settings.topic_prefix + topics.TOPIC_SHARE_APPROVED
    approved = _read_all(settings, topics.TOPIC_SHARE_APPROVED, timeout_s)
    wanted = {header_value(m.headers(), DECISION_HASH_HEADER) for m in approved}
    decisions = _decisions_named(settings, codec, {h for h in wanted if h}, timeout_s)
    tally = EgressTally()
    for message in sorted(approved, key=lambda m: (m.partition() or 0, m.offset() or 0)):
        where = _where(message)
        headers = message.headers()
        digest = header_value(headers, DECISION_HASH_HEADER)
        decision = decisions.get(digest) if digest else None
        share: dict[str, Any] | None = None
        unreadable = ""
        if message.value() is not None:
            try:
                share = dict(codec.decode(approved_topic, message.value()))
            except TransientError:
                raise
            except ConsentinelError as exc:
                unreadable = f" ({exc})"
        verdict = check_approved(headers, decision, share, ledger=ledger, record_at=where)
        if unreadable and verdict.problem and "no share payload" in verdict.problem:
            verdict = EgressVerdict(ship=False, problem=verdict.problem + unreadable)
        decision_id = decision.get("decision_id") if decision else None
        if verdict.ship and share is not None:
            tally.shipped.append(share)
            say(
                f"ship {where}: share {share.get('share_id')} of photo {share.get('photo_id')}"
                f" to {share.get('recipient_org')} (decision {decision_id})"
            )
            if out is not None:
                out.write(json.dumps(share, sort_keys=True, default=str) + "\n")
                out.flush()
        elif verdict.already_delivered:
            tally.already += 1
            say(f"= {where}: already delivered (decision {decision_id})")
        else:
            why = verdict.problem or "refused"
            tally.refused.append((where, why))
            say(f"REFUSED {where}: {why}")
    say(tally.summary())
    return tally


def run_egress_check(
    settings: Settings,
    *,
    ledger_path: Path,
    out_path: Path | None = None,
    timeout_s: float = 60.0,
    say: Callable[[str], None] = print,
) -> int:
    """``consentinel egress check``: return :data:`EXIT_OK`, or :data:`EXIT_REFUSED`."""
    ledger = SqliteLedger(ledger_path)
    try:
        if out_path is None:
            tally = check_approved_shares(settings, ledger, say=say, timeout_s=timeout_s)
        else:
            with out_path.open("a", encoding="utf-8") as out:
                tally = check_approved_shares(
                    settings, ledger, say=say, out=out, timeout_s=timeout_s
                )
    finally:
        ledger.close()
    return EXIT_REFUSED if tally.refused else EXIT_OK
