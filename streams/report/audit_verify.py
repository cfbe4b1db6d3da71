"""``consentinel audit verify``: check every partition's decision chain and its signed heads.

Reads each partition of ``governance.decisions`` from its first offset to its current end, and
every ``ChainCheckpoint`` of ``governance.checkpoints``, with ``read_committed`` consumers outside
any group; then audits each partition with :func:`streams.core.anchored.audit_partition`: every
hash link, and the log against the checkpoints (signatures verified with ``CONSENTINEL_VERIFY_KEY``
when set; otherwise it says it verified the hashes only). Decisions are hashed as written: decoded
with their own writer schema, so fields added to the schema later do not alter old records.

Outcomes (the command's exit codes): :data:`EXIT_INTACT` 0, :data:`EXIT_TAMPERED` 1 (a finding),
:data:`EXIT_UNREADABLE` 3 (Kafka or the registry could not be read: unreachable, missing topic,
timeout); usage and configuration errors (a bad key file) stay 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streams.core.anchored import PartitionAudit, audit_partition
from streams.core.checkpoint import VerifyKey, load_verify_key
from streams.errors import MissingTopicError
from streams.report.source import partition_count, scan_decisions, scan_topic
from streams.settings import Settings
from streams.topics import TOPIC_CHECKPOINTS

EXIT_INTACT = 0
EXIT_TAMPERED = 1
EXIT_UNREADABLE = 3

PartitionReport = PartitionAudit
"""One partition's outcome (kept under its former name for callers of ``verify_partitions``)."""

_Records = list[tuple[int, dict[str, Any] | None]]


def read_checkpoints(settings: Settings) -> dict[int, list[dict[str, Any]]] | None:
    """Return the decodable checkpoints by the partition they name; ``None`` if no topic.

    An undecodable checkpoint is skipped (it cannot be relied on; the chain still is checked).
    """
    by_partition: dict[int, list[dict[str, Any]]] = {}
    try:
        for _, _, record in scan_topic(settings, TOPIC_CHECKPOINTS, as_written=True):
            if record is not None and isinstance(record.get("partition"), int):
                by_partition.setdefault(record["partition"], []).append(record)
    except MissingTopicError:
        return None
    return by_partition


def verify_partitions(
    settings: Settings,
    *,
    key: VerifyKey | None = None,
    from_checkpoint: bool | str = False,
    checkpoints: dict[int, list[dict[str, Any]]] | None = None,
) -> list[PartitionAudit]:
    """Audit every partition of the decisions topic; return one report per partition.

    ``checkpoints`` defaults to those read from ``governance.checkpoints``; when that topic does
    not exist, none are used (and, with a ``key``, every partition gets a finding).

    Raises:
        StackError: the decisions topic does not exist, or reading fails or stalls.
        RegistryError: the registry cannot be read.
    """
    records: dict[int, _Records] = {p: [] for p in range(partition_count(settings))}
    for partition, offset, record in scan_decisions(settings, as_written=True):
        records.setdefault(partition, []).append((offset, record))
    missing_topic = False
    if checkpoints is None:
        read = read_checkpoints(settings)
        missing_topic = read is None
        checkpoints = read or {}
    reports = []
    for partition in sorted(set(records) | set(checkpoints)):
        report = audit_partition(
            partition,
            records.get(partition, []),
            checkpoints.get(partition, []),
            key,
            from_checkpoint=from_checkpoint,
        )
        if missing_topic and key is not None:
            finding = f"topic {settings.topic_prefix}{TOPIC_CHECKPOINTS} does not exist"
            report = _with_finding(report, finding + ": the signed heads cannot be checked")
        reports.append(report)
    return reports


def _with_finding(report: PartitionAudit, finding: str) -> PartitionAudit:
    """Return ``report`` with one more finding."""
    return replace(report, findings=(*report.findings, finding))


def verify_decisions(
    settings: Settings,
    *,
    say: Callable[[str], None] = print,
    key: VerifyKey | None = None,
    from_checkpoint: bool | str = False,
) -> int:
    """Verify, print a line per partition and per finding; return the exit code (0 or 1).

    ``key`` defaults to ``CONSENTINEL_VERIFY_KEY`` when that is set. Read failures raise (the
    caller maps them to :data:`EXIT_UNREADABLE`).
    """
    if key is None and settings.verify_key_path is not None:
        key = load_verify_key(settings.verify_key_path)
    reports = verify_partitions(settings, key=key, from_checkpoint=from_checkpoint)
    for report in reports:
        status = "intact" if report.intact else "TAMPERED OR INCOMPLETE"
        say(
            f"partition {report.partition}: {status} ({report.decisions} decisions,"
            f" {report.checkpoints_checked} checkpoint(s) checked)"
        )
        for finding in report.findings:
            say(f"  finding: {finding}")
        for note in report.notes:
            say(f"  note: {note}")
    intact = all(r.intact for r in reports)
    total = sum(r.decisions for r in reports)
    if key is None:
        say(
            "no CONSENTINEL_VERIFY_KEY: verified the hashes only; checkpoint signatures were NOT"
            " checked, so a partition rewritten with a recomputed chain may go unnoticed"
        )
    else:
        say(f"checkpoint signatures verified with key {key.key_id}")
    say(
        f"{'every chain is intact' if intact else 'TAMPERING OR LOSS DETECTED'}: "
        f"{total} decisions on {len(reports)} partitions"
    )
    return EXIT_INTACT if intact else EXIT_TAMPERED
