"""Pure polars aggregation of decoded ``Decision`` records (no Kafka here).

:func:`decisions_frame` turns decoded records (plain dicts, timestamps as epoch milliseconds) into a
DataFrame with a fixed schema (:data:`DECISION_SCHEMA`, so an empty log still yields typed,
empty tables); :func:`summarize` computes the tables of ``consentinel report decisions``;
:func:`user_decisions` lists every decision about one user (``consentinel report user``), what a
data-subject access request needs. Times are ``Datetime("ms", "UTC")``; days are UTC days of
``decided_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import polars as pl

from streams.errors import ConfigError

TIME: Final[pl.DataType] = pl.Datetime("ms", "UTC")

DECISION_SCHEMA: Final = pl.Schema(
    {
        "decision_id": pl.String(),
        "decided_at": TIME,
        "occurred_at": TIME,
        "subject_event_id": pl.String(),
        "subject_kind": pl.String(),
        "photo_id": pl.String(),
        "owner_id": pl.String(),
        "actor": pl.String(),
        "recipient_org": pl.String(),
        "model_id": pl.String(),
        "purpose": pl.String(),
        "categories": pl.List(pl.String()),
        "verdict": pl.String(),
        "reason": pl.String(),
        "explanation": pl.String(),
        "policy_version": pl.String(),
        "consent_event_id": pl.String(),
        "partition": pl.Int32(),
    }
)
"""The columns of a decisions frame; ``occurred_at`` is null where a decision lacks it."""

_MILLIS_COLUMNS: Final = ("decided_at", "occurred_at")

USER_COLUMNS: Final = (
    "decided_at",
    "occurred_at",
    "subject_kind",
    "recipient_org",
    "purpose",
    "categories",
    "verdict",
    "reason",
    "explanation",
    "photo_id",
    "actor",
    "model_id",
    "consent_event_id",
    "policy_version",
    "decision_id",
)
"""The columns of :func:`user_decisions`, in order."""


def decisions_frame(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Return a frame of decoded ``Decision`` records (missing fields become null).

    ``decided_at`` and ``occurred_at`` are epoch milliseconds in the records; an ``occurred_at``
    of 0 (not recorded, the schema's default) becomes null.
    """
    columns: dict[str, list[Any]] = {name: [] for name in DECISION_SCHEMA}
    for record in records:
        for name, values in columns.items():
            value = record.get(name)
            if name in _MILLIS_COLUMNS and not value:
                value = None
            values.append(value)
    raw_schema = {
        name: pl.Int64 if name in _MILLIS_COLUMNS else dtype
        for name, dtype in DECISION_SCHEMA.items()
    }
    frame = pl.DataFrame(columns, schema=raw_schema)
    return frame.with_columns(pl.col(*_MILLIS_COLUMNS).cast(TIME))


def parse_instant(text: str, *, end_of_day: bool = False) -> datetime:
    """Parse an ISO 8601 date or date-time as an aware UTC datetime (naive means UTC).

    A bare date is its first instant, or with ``end_of_day`` the first instant of the next day
    (so that ``--until 2026-11-30`` includes all of that day).

    Raises:
        ConfigError: ``text`` is not ISO 8601.
    """
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"{text!r} is not an ISO 8601 date or time",
            hint="write e.g. 2026-11-26 or 2026-11-26T14:30:00Z",
        ) from exc
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def within(
    frame: pl.DataFrame, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Return the decisions decided at or after ``since`` and before ``until``."""
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    if since is not None:
        frame = frame.filter(pl.col("decided_at") >= since)
    if until is not None:
        frame = frame.filter(pl.col("decided_at") < until)
    return frame


def _verdict_counts() -> list[pl.Expr]:
    """Per-group counts of each verdict and in total (``UNKNOWN`` counts only in ``total``)."""
    verdict = pl.col("verdict")
    return [
        (verdict == "ALLOW").sum().cast(pl.Int64).alias("allowed"),
        (verdict == "DENY").sum().cast(pl.Int64).alias("denied"),
        (verdict == "HOLD").sum().cast(pl.Int64).alias("held"),
        pl.len().cast(pl.Int64).alias("total"),
    ]


@dataclass(frozen=True)
class DecisionsReport:
    """The tables of ``consentinel report decisions``.

    Attributes:
        decisions: How many decisions the tables cover.
        first: The earliest ``decided_at`` among them (None if there are none).
        last: The latest ``decided_at`` among them.
        by_verdict: ``verdict, reason, decisions, share`` (share of all decisions, 0..1).
        by_recipient: ``recipient_org, allowed, denied, held, total, photos_out`` where
            ``photos_out`` is the number of distinct photos allowed to leave to it.
        by_subject_kind: ``subject_kind, allowed, denied, held, total``.
        by_day: ``day`` (UTC date of ``decided_at``), ``allowed, denied, held, total``.
    """

    decisions: int
    first: datetime | None
    last: datetime | None
    by_verdict: pl.DataFrame
    by_recipient: pl.DataFrame
    by_subject_kind: pl.DataFrame
    by_day: pl.DataFrame

    def tables(self) -> dict[str, pl.DataFrame]:
        """Return the tables by name, in the order they are printed."""
        return {
            "by_verdict": self.by_verdict,
            "by_recipient": self.by_recipient,
            "by_subject_kind": self.by_subject_kind,
            "by_day": self.by_day,
        }


def summarize(frame: pl.DataFrame) -> DecisionsReport:
    """Aggregate a decisions frame into the tables of :class:`DecisionsReport`."""
    total = frame.height
    by_verdict = (
        frame.group_by("verdict", "reason")
        .agg(pl.len().cast(pl.Int64).alias("decisions"))
        .with_columns(
            (pl.col("decisions") / total if total else pl.lit(0.0)).cast(pl.Float64).alias("share")
        )
        .sort(["verdict", "decisions", "reason"], descending=[False, True, False])
    )
    allowed_photos = pl.col("photo_id").filter(pl.col("verdict") == "ALLOW").n_unique()
    by_recipient = (
        frame.group_by("recipient_org")
        .agg(*_verdict_counts(), allowed_photos.cast(pl.Int64).alias("photos_out"))
        .sort(["allowed", "total", "recipient_org"], descending=[True, True, False])
    )
    by_subject_kind = frame.group_by("subject_kind").agg(*_verdict_counts()).sort("subject_kind")
    by_day = (
        frame.group_by(pl.col("decided_at").dt.date().alias("day"))
        .agg(*_verdict_counts())
        .sort("day")
    )
    first = frame["decided_at"].min() if total else None
    last = frame["decided_at"].max() if total else None
    return DecisionsReport(
        decisions=total,
        first=first if isinstance(first, datetime) else None,
        last=last if isinstance(last, datetime) else None,
        by_verdict=by_verdict,
        by_recipient=by_recipient,
        by_subject_kind=by_subject_kind,
        by_day=by_day,
    )


def user_decisions(frame: pl.DataFrame, user_id: str) -> pl.DataFrame:
    """Return every decision about ``user_id`` (the photo's owner), oldest first.

    Columns: :data:`USER_COLUMNS`. Ordered by when the request happened (``occurred_at``, else
    ``decided_at``), then by ``decided_at``.
    """
    return (
        frame.filter(pl.col("owner_id") == user_id)
        .sort(
            [pl.coalesce("occurred_at", "decided_at"), pl.col("decided_at"), pl.col("decision_id")]
        )
        .select(USER_COLUMNS)
    )
