"""``consentinel report transfers``: every photo that left to a recipient, with its legal basis.

Pure polars (no Kafka): :func:`transfer_filter` says which decoded ``Decision`` records are
transfers to the recipients asked for within the window, :func:`transfer_rows` turns them into a
frame of :data:`TRANSFER_SCHEMA`, and :func:`with_notice_versions` fills ``notice_version`` from
the consent records (``consent.changes``) the decisions relied on, joined lazily by
``consent_event_id``, where the decision does not carry it.

A *transfer* is what :class:`streams.core.recall_model.Transfer` calls one: an allowed share (only
``ALLOW`` leaves through ``photo.share.approved``), or a training read whatever its verdict (a
``TrainingRead`` reports a read that happened, so a denied one is a photo that reached the
recipient without a basis, and must show).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import polars as pl

from streams.detect.core.records import ALLOW, TRAINING_READ
from streams.report.frame import TIME

TRANSFER_SCHEMA: Final = pl.Schema(
    {
        "decision_id": pl.String(),
        "decided_at": TIME,
        "recipient_org": pl.String(),
        "subject_kind": pl.String(),
        "verdict": pl.String(),
        "photo_id": pl.String(),
        "owner_id": pl.String(),
        "purpose": pl.String(),
        "consent_event_id": pl.String(),
        "notice_version": pl.String(),
        "policy_version": pl.String(),
        "model_id": pl.String(),
    }
)
"""The columns of the transfers report, in order (``notice_version`` null if unknown)."""

CONSENT_SCHEMA: Final = pl.Schema({"event_id": pl.String(), "consent_notice_version": pl.String()})
"""The two columns kept of each consent record: enough to name the notice a transfer relied on."""


def is_transfer(record: Mapping[str, Any]) -> bool:
    """Whether a decision let a photo reach its recipient (see the module docs)."""
    return record.get("subject_kind") == TRAINING_READ or record.get("verdict") == ALLOW


def transfer_filter(
    recipients: Collection[str] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Callable[[Mapping[str, Any]], bool]:
    """Return a predicate: a transfer to one of ``recipients`` (all if None) in the window.

    The window is on ``decided_at`` (epoch ms): at or after ``since_ms``, before ``until_ms``.
    """
    wanted = frozenset(recipients) if recipients else None

    def keep(record: Mapping[str, Any]) -> bool:
        if not is_transfer(record):
            return False
        if wanted is not None and record.get("recipient_org") not in wanted:
            return False
        decided = record.get("decided_at")
        if not isinstance(decided, int):
            return False
        if since_ms is not None and decided < since_ms:
            return False
        return until_ms is None or decided < until_ms

    return keep


def transfer_rows(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Return a :data:`TRANSFER_SCHEMA` frame of decoded decisions (missing fields null)."""
    columns: dict[str, list[Any]] = {name: [] for name in TRANSFER_SCHEMA}
    for record in records:
        for name, values in columns.items():
            values.append(record.get(name) or None)
    raw = {name: pl.Int64 if dtype == TIME else dtype for name, dtype in TRANSFER_SCHEMA.items()}
    return pl.DataFrame(columns, schema=raw).with_columns(pl.col("decided_at").cast(TIME))


def consent_rows(records: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Return a :data:`CONSENT_SCHEMA` frame of decoded ``ConsentChanged`` records."""
    ids, notices = [], []
    for record in records:
        ids.append(record.get("event_id"))
        notices.append(record.get("notice_version") or None)
    return pl.DataFrame({"event_id": ids, "consent_notice_version": notices}, schema=CONSENT_SCHEMA)


def needs_consents(transfers: pl.LazyFrame) -> set[str]:
    """Return the consent ids whose notice version the transfers lack (to read them)."""
    missing = (
        transfers.filter(
            pl.col("notice_version").is_null() & pl.col("consent_event_id").is_not_null()
        )
        .select(pl.col("consent_event_id").unique())
        .collect()
    )
    return set(missing["consent_event_id"].to_list())


def with_notice_versions(transfers: pl.LazyFrame, consents: pl.LazyFrame) -> pl.LazyFrame:
    """Fill ``notice_version`` from the consent each transfer relied on, where it lacks one.

    The decision's own ``notice_version`` wins; a consent id not found stays null. Ordered by
    ``decided_at`` then ``decision_id``.
    """
    notices = consents.unique(subset="event_id", keep="first")
    return (
        transfers.join(notices, left_on="consent_event_id", right_on="event_id", how="left")
        .with_columns(
            pl.coalesce("notice_version", "consent_notice_version").alias("notice_version")
        )
        .select(TRANSFER_SCHEMA.names())
        .sort("decided_at", "decision_id")
    )


def transfers_frame(
    decisions: Iterable[Mapping[str, Any]],
    consents: Iterable[Mapping[str, Any]] = (),
    *,
    recipients: Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """Return the whole report from records in memory (the command streams them instead)."""
    keep = transfer_filter(
        recipients,
        None if since is None else int(since.timestamp() * 1000),
        None if until is None else int(until.timestamp() * 1000),
    )
    rows = transfer_rows(d for d in decisions if keep(d)).lazy()
    return with_notice_versions(rows, consent_rows(consents).lazy()).collect()


def bucket_size(first: datetime | None, last: datetime | None) -> str:
    """Return the chart's time bucket: ``1h`` up to three days, ``1d`` up to 120, else ``1w``."""
    if first is None or last is None:
        return "1d"
    span = (last - first).total_seconds()
    return "1h" if span <= 3 * 86_400 else "1d" if span <= 120 * 86_400 else "1w"


def transfers_over_time(transfers: pl.LazyFrame, every: str) -> pl.DataFrame:
    """Return ``bucket, recipient_org, photos`` (transfers per bucket of ``decided_at``)."""
    return (
        transfers.group_by(pl.col("decided_at").dt.truncate(every).alias("bucket"), "recipient_org")
        .agg(pl.len().cast(pl.Int64).alias("photos"))
        .sort("bucket", "recipient_org")
        .collect()
    )


def transfers_summary(transfers: pl.LazyFrame) -> pl.DataFrame:
    """Return one row per recipient: transfers, distinct photos and owners, first, last."""
    return (
        transfers.group_by("recipient_org")
        .agg(
            pl.len().cast(pl.Int64).alias("transfers"),
            pl.col("photo_id").n_unique().cast(pl.Int64).alias("photos"),
            pl.col("owner_id").n_unique().cast(pl.Int64).alias("owners"),
            (pl.col("verdict") != ALLOW).sum().cast(pl.Int64).alias("not_allowed"),
            pl.col("decided_at").min().alias("first"),
            pl.col("decided_at").max().alias("last"),
        )
        .sort("transfers", "recipient_org", descending=[True, False])
        .collect()
    )


def policy_versions(transfers: pl.LazyFrame) -> list[str]:
    """Return the policy versions the transfers were decided under, sorted."""
    seen = transfers.select(pl.col("policy_version").drop_nulls().unique()).collect()
    return sorted(seen["policy_version"].to_list())
