"""``consentinel report transfers`` and ``consentinel report recalls``: read, compute, render.

Transfers are streamed (:mod:`streams.report.spool`) into Parquet batches in a temporary
directory and computed lazily, so the decision trail is never held in memory; recall orders and
acks go through :class:`~streams.report.recalls.RecallBook`. Outputs: a terminal table (default),
or ``--format csv|parquet|html --out FILE`` (CSV may also go to stdout). The temporary directory
is removed when the report is written.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from streams.core.policy import load_policy
from streams.errors import ConfigError, MissingTopicError
from streams.report.frame import parse_instant
from streams.report.pages import moment, recalls_page, transfers_page, transfers_view
from streams.report.recalls import STATES, RecallBook, RecallsReport, policy_ack_keys
from streams.report.render import _csv, _table
from streams.report.spool import Say, Spool, _stderr, spool_topic, stream_topic
from streams.report.transfers import (
    consent_rows,
    needs_consents,
    transfer_filter,
    transfer_rows,
    with_notice_versions,
)
from streams.settings import Settings
from streams.topics import TOPIC_CONSENT_CHANGES, TOPIC_DECISIONS, TOPIC_RECALL_ACKS, TOPIC_RECALLS

FORMATS: Final = ("table", "csv", "parquet", "html")
TOP_ROWS: Final = 50
"""Rows of the detail table shown in a terminal or an HTML page (files get all of them)."""
_DATETIME: Final = "%Y-%m-%dT%H:%M:%S%.3fZ"


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def check_file_output(fmt: str, out: Path | None) -> None:
    """Refuse, before reading, an output a single-file report cannot produce."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt in ("parquet", "html") and out is None:
        raise ConfigError(f"--format {fmt} needs --out FILE", hint=f"e.g. --out report.{fmt}")
    if out is not None and out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a FILE path")


def _sibling(out: Path, name: str) -> Path:
    return out.with_name(f"{out.stem}.{name}{out.suffix}")


def read_recalls(
    settings: Settings,
    as_of_ms: int,
    *,
    recipients: Sequence[str] | None = None,
    user_id: str | None = None,
    say: Say = _stderr,
) -> RecallsReport | None:
    """Read every order, then every ack, into a report; ``None`` if the recalls topic is missing.

    A missing acks topic reads as no acks. Acks are verified with the ``ack_keys`` of the policy
    ``CONSENTINEL_POLICY`` names; without it none counts (the report says so).
    """
    keys = (
        None if settings.policy_path is None else policy_ack_keys(load_policy(settings.policy_path))
    )
    book = RecallBook(as_of_ms, ack_keys=keys, recipients=recipients, user_id=user_id)

    def order(_partition: int, _offset: int, record: dict[str, Any] | None) -> None:
        if record is not None:
            book.add_order(record)

    def ack(_partition: int, _offset: int, record: dict[str, Any] | None) -> None:
        if record is not None:
            book.add_ack(record)

    try:
        stream_topic(settings, TOPIC_RECALLS, order, say=say)
    except MissingTopicError:
        return None
    with contextlib.suppress(MissingTopicError):
        stream_topic(settings, TOPIC_RECALL_ACKS, ack, say=say)
    return book.report()


def _scope(spool: Spool, what: str) -> str:
    stats = spool.stats
    text = f"{stats.topic}: {stats.read} records read on {stats.partitions} partitions"
    text += f", {spool.kept} {what} kept"
    if stats.unreadable:
        where = ", ".join(f"{p}@{o}" for p, o in stats.unreadable[:5])
        text += f"; {len(stats.unreadable)} UNREADABLE record(s) left out ({where})"
    return text


def transfers_report(
    settings: Settings,
    *,
    recipients: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    fmt: str = "table",
    out: Path | None = None,
    top: int = TOP_ROWS,
    say: Say = _stderr,
) -> str:
    """Stream the transfers to ``recipients`` (all if none) in the window; render; return text."""
    start = parse_instant(since) if since else None
    end = parse_instant(until, end_of_day=True) if until else None
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--since {start.isoformat()} is not before --until {end.isoformat()}")
    check_file_output(fmt, out)
    with tempfile.TemporaryDirectory(prefix="consentinel-report-") as tmp:
        keep = transfer_filter(recipients, _ms(start), _ms(end))
        spool = spool_topic(
            settings, TOPIC_DECISIONS, Path(tmp) / "decisions", to_frame=transfer_rows,
            keep=keep, since_ms=_ms(start), until_ms=_ms(end), say=say,
        )  # fmt: skip
        lines = [_scope(spool, "transfers")]
        consents = consent_rows([]).lazy()
        wanted = needs_consents(spool.scan())
        if wanted:
            try:
                read = spool_topic(
                    settings, TOPIC_CONSENT_CHANGES, Path(tmp) / "consents", to_frame=consent_rows,
                    keep=lambda r: r.get("event_id") in wanted, until_ms=_ms(end), say=say,
                )  # fmt: skip
                consents = read.scan()
                lines.append(f"notice versions: {read.kept} of {len(wanted)} consent records found")
            except MissingTopicError:
                lines.append("notice versions: consent.changes does not exist; left blank")
        frame = with_notice_versions(spool.scan(), consents)
        if fmt in ("csv", "parquet") and out is not None:
            if fmt == "csv":
                frame.sink_csv(out, datetime_format=_DATETIME)
            else:
                frame.sink_parquet(out)
            view = transfers_view(frame, recipients=recipients, start=start, end=end, top=0)
            return "\n".join([*lines, view.headline(), f"wrote {out}"])
        if fmt == "csv":
            return frame.collect().write_csv(datetime_format=_DATETIME).rstrip("\n")
        view = transfers_view(frame, recipients=recipients, start=start, end=end, top=top)
    header = "\n".join([*lines, view.headline()])
    if fmt == "table":
        text = f"{header}\n\nper recipient\n{_table(view.summary)}\n\n"
        text += f"transfers (first {view.rows.height} of {view.total})\n{_table(view.rows)}"
        return _write(text, out)
    recalls = read_recalls(settings, int(time.time() * 1000), recipients=recipients, say=say)
    assert out is not None
    out.write_text(transfers_page(view, recalls, lines[0]), encoding="utf-8")
    return f"{header}\nwrote {out}"


def recalls_report(
    settings: Settings,
    *,
    recipients: Sequence[str] | None = None,
    as_of: str | None = None,
    fmt: str = "table",
    out: Path | None = None,
    top: int = TOP_ROWS,
    say: Say = _stderr,
) -> str:
    """Read every recall order and ack; render their states at ``as_of`` (default now)."""
    at = parse_instant(as_of) if as_of else datetime.now(UTC)
    check_file_output(fmt, out)
    report = read_recalls(settings, int(at.timestamp() * 1000), recipients=recipients, say=say)
    if report is None:
        raise MissingTopicError(
            f"topic {settings.topic_prefix}{TOPIC_RECALLS} does not exist",
            hint="run `consentinel topics apply`",
        )
    counts = report.state_counts()
    header = "\n".join(
        [
            f"recall orders as of {moment(at)}: {report.orders.height} ("
            + ", ".join(f"{s} {counts[s]}" for s in STATES)
            + ")",
            *problems(report),
        ]
    )
    if fmt == "table":
        return _write(f"{header}\n\n{recall_tables(report)}", out)
    if fmt == "csv" and out is None:
        text = f"# by_recipient\n{_csv(report.by_recipient)}# orders\n{_csv(report.orders)}"
        return text.rstrip("\n")
    assert out is not None
    if fmt in ("csv", "parquet"):
        by_recipient = _sibling(out, "by_recipient")
        if fmt == "csv":
            out.write_text(_csv(report.orders), encoding="utf-8")
            by_recipient.write_text(_csv(report.by_recipient), encoding="utf-8")
        else:
            report.orders.write_parquet(out)
            report.by_recipient.write_parquet(by_recipient)
        return f"{header}\nwrote {out} and {by_recipient}"
    page = recalls_page(report, as_of=at, recipients=recipients, problems=problems(report), top=top)
    out.write_text(page, encoding="utf-8")
    return f"{header}\nwrote {out}"


def problems(report: RecallsReport) -> list[str]:
    """Lines about acks and orders the report could not use (empty when there are none)."""
    lines = []
    if report.orphan_acks:
        ids = ", ".join(f"{o} ({r})" for o, r in report.orphan_acks[:5])
        lines.append(f"{len(report.orphan_acks)} ack(s) name an order not found: {ids}")
    if report.unverified_acks:
        lines.append(
            f"{report.unverified_acks} recall ack(s) NOT counted: no policy to verify their"
            " signatures (set CONSENTINEL_POLICY to the detectors' policy file)"
        )
    lines += [f"ack rejected: {line}" for line in report.rejected_acks[:10]]
    lines += [f"order unusable: {line}" for line in report.unusable_orders[:10]]
    return lines


def recall_tables(report: RecallsReport, *, per_recipient: bool = True) -> str:
    """Return the terminal tables: per recipient, then one line per order with what is missing."""
    parts = [f"per recipient\n{_table(report.by_recipient)}"] if per_recipient else []
    columns = ["order_id", "recipient_org", "user_id", "state", "cause", "due_at"]
    columns += ["missing_photos", "missing_models", "last_ack_at"]
    parts.append(f"orders\n{_table(report.orders.select(columns))}")
    return "\n\n".join(parts)


def _write(text: str, out: Path | None) -> str:
    if out is None:
        return text
    out.write_text(text + "\n", encoding="utf-8")
    return f"wrote {out}"


def user_recall_section(settings: Settings, user_id: str, fmt: str, out: Path | None) -> str:
    """Return the recall orders naming ``user_id`` as text to append to ``report user``."""
    report = read_recalls(settings, int(time.time() * 1000), user_id=user_id)
    if report is None:
        return "\nrecall orders: governance.recalls does not exist"
    title = f"recall orders naming user {user_id}: {report.orders.height}"
    if fmt == "table":
        if report.orders.is_empty():
            return f"\n{title}"
        return f"\n{title}\n{recall_tables(report, per_recipient=False)}"
    if fmt == "csv" and out is None:
        return f"\n# recall_orders\n{_csv(report.orders)}".rstrip("\n")
    assert out is not None
    path = _sibling(out, "recalls")
    if fmt == "csv":
        path.write_text(_csv(report.orders), encoding="utf-8")
    else:
        report.orders.write_parquet(path)
    return f"\n{title}; wrote {path}"
