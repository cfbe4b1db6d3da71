"""``consentinel audit verify``: check every partition's hash chain in ``governance.decisions``.

Reads each partition from its first offset to its current end with a ``read_committed`` consumer
(outside any group), and checks every decision's ``hash`` and ``prev_hash`` link with
:func:`streams.core.audit.verify_chain`. Records are hashed as written: decoded with their own
writer schema, so fields added to the schema later do not alter old records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.core.audit import ChainBreak, verify_chain
from streams.report.source import partition_count, scan_decisions
from streams.settings import Settings


@dataclass(frozen=True)
class PartitionReport:
    """The outcome of verifying one partition's chain."""

    partition: int
    decisions: int
    first_break: ChainBreak | None
    unreadable_offset: int | None = None

    @property
    def intact(self) -> bool:
        """Whether every link of this partition holds."""
        return self.first_break is None and self.unreadable_offset is None


def verify_partitions(settings: Settings) -> list[PartitionReport]:
    """Verify every partition of the decisions topic; return one report per partition."""
    records: dict[int, list[dict[str, Any]]] = {p: [] for p in range(partition_count(settings))}
    unreadable: dict[int, int] = {}
    for partition, offset, record in scan_decisions(settings, as_written=True):
        if partition in unreadable:
            continue  # the chain cannot be followed past an unreadable link
        if record is None:
            unreadable[partition] = offset
        else:
            records[partition].append(record)
    return [
        PartitionReport(
            partition,
            len(chain),
            None if partition in unreadable else verify_chain(chain),
            unreadable.get(partition),
        )
        for partition, chain in sorted(records.items())
    ]


def verify_decisions(settings: Settings, *, say: Callable[[str], None] = print) -> bool:
    """Verify and print a line per partition; return whether every chain is intact."""
    reports = verify_partitions(settings)
    for report in reports:
        if report.unreadable_offset is not None:
            say(
                f"partition {report.partition}: record at offset {report.unreadable_offset} "
                "cannot be decoded: the chain cannot be checked past it"
            )
        elif report.first_break is not None:
            say(
                f"partition {report.partition}: BROKEN after {report.decisions} decisions: "
                f"{report.first_break}"
            )
        else:
            say(f"partition {report.partition}: intact ({report.decisions} decisions)")
    intact = all(r.intact for r in reports)
    total = sum(r.decisions for r in reports)
    say(
        f"{'every chain is intact' if intact else 'TAMPERING OR LOSS DETECTED'}: "
        f"{total} decisions on {len(reports)} partitions"
    )
    return intact
