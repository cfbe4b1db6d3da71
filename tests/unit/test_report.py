"""The polars aggregation of ``consentinel report``, fed plain decoded decision dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from streams.errors import ConfigError
from streams.report.frame import (
    USER_COLUMNS,
    decisions_frame,
    parse_instant,
    summarize,
    user_decisions,
    within,
)
from streams.report.render import check_output, render_decisions, render_user

DAY1 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
DAY2 = DAY1 + 86_400_000  # 2025-11-25T16:00:00Z


def decision(n: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "decision_id": f"d{n}",
        "decided_at": DAY1 + n,
        "subject_event_id": f"e{n}",
        "subject_kind": "SHARE",
        "photo_id": f"p{n}",
        "owner_id": "u1",
        "actor": "share-svc",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        "explanation": f"explanation {n}.",
        "policy_version": "v1",
        "consent_event_id": "c1",
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
        "categories": ["IMAGE"],
        "occurred_at": DAY1 + n - 10,
        "partition": 0,
        "model_id": None,
    }
    record.update(fields)
    return record


RECORDS = [
    decision(1),
    decision(2, photo_id="p1"),  # same photo again: two decisions, one distinct photo out
    decision(3, verdict="DENY", reason="NO_CONSENT", owner_id="u2", consent_event_id=None),
    decision(4, verdict="HOLD", reason="RECIPIENT_SUSPENDED", decided_at=DAY2),
    decision(
        5,
        subject_kind="TRAINING_READ",
        actor="job-1",
        model_id="m-1",
        recipient_org="lovebird-partners",
        verdict="DENY",
        reason="PURPOSE_NOT_PERMITTED",
        decided_at=DAY2 + 5,
    ),
    decision(6, recipient_org="photo-cdn", reason="NOT_CONSENT_BASED", owner_id="u2"),
]


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts()


def test_frame_has_the_fixed_schema_and_utc_times() -> None:
    frame = decisions_frame(RECORDS)
    assert frame.height == 6
    assert frame.schema["decided_at"] == pl.Datetime("ms", "UTC")
    assert frame["decided_at"][0] == datetime(2025, 11, 24, 16, 0, 0, 1000, tzinfo=UTC)
    assert "hash" not in frame.columns


def test_missing_fields_and_zero_occurred_at_become_null() -> None:
    old = {k: v for k, v in decision(1).items() if k not in ("model_id", "categories")}
    frame = decisions_frame([{**old, "occurred_at": 0}])
    assert frame["occurred_at"][0] is None
    assert frame["model_id"][0] is None
    assert frame["categories"][0] is None


def test_totals_by_verdict_and_reason() -> None:
    report = summarize(decisions_frame(RECORDS))
    assert report.decisions == 6
    assert rows(report.by_verdict.drop("share")) == [
        {"verdict": "ALLOW", "reason": "CONSENTED", "decisions": 2},
        {"verdict": "ALLOW", "reason": "NOT_CONSENT_BASED", "decisions": 1},
        {"verdict": "DENY", "reason": "NO_CONSENT", "decisions": 1},
        {"verdict": "DENY", "reason": "PURPOSE_NOT_PERMITTED", "decisions": 1},
        {"verdict": "HOLD", "reason": "RECIPIENT_SUSPENDED", "decisions": 1},
    ]
    assert report.by_verdict["share"].sum() == pytest.approx(1.0)
    assert report.first == datetime(2025, 11, 24, 16, 0, 0, 1000, tzinfo=UTC)
    assert report.last == datetime(2025, 11, 25, 16, 0, 0, 5000, tzinfo=UTC)


def test_by_recipient_counts_verdicts_and_distinct_photos_out() -> None:
    by = {r["recipient_org"]: r for r in rows(summarize(decisions_frame(RECORDS)).by_recipient)}
    assert by["acme-vision"] == {
        "recipient_org": "acme-vision",
        "allowed": 2,
        "denied": 1,
        "held": 1,
        "total": 4,
        "photos_out": 1,
    }
    assert by["lovebird-partners"]["denied"] == 1
    assert by["lovebird-partners"]["photos_out"] == 0
    assert by["photo-cdn"]["allowed"] == 1
    assert list(by) == ["acme-vision", "photo-cdn", "lovebird-partners"]  # most allowed first


def test_by_subject_kind_and_by_day() -> None:
    report = summarize(decisions_frame(RECORDS))
    assert rows(report.by_subject_kind) == [
        {"subject_kind": "SHARE", "allowed": 3, "denied": 1, "held": 1, "total": 5},
        {"subject_kind": "TRAINING_READ", "allowed": 0, "denied": 1, "held": 0, "total": 1},
    ]
    assert [(r["day"].isoformat(), r["total"], r["held"]) for r in rows(report.by_day)] == [
        ("2025-11-24", 4, 0),
        ("2025-11-25", 2, 1),
    ]


def test_unknown_verdict_counts_only_in_total() -> None:
    report = summarize(decisions_frame([decision(1, verdict="UNKNOWN", reason="UNKNOWN")]))
    (row,) = rows(report.by_recipient)
    assert (row["allowed"], row["denied"], row["held"], row["total"]) == (0, 0, 0, 1)


def test_empty_log_gives_empty_typed_tables() -> None:
    report = summarize(decisions_frame([]))
    assert report.decisions == 0 and report.first is None and report.last is None
    for frame in report.tables().values():
        assert frame.height == 0
    assert report.by_day.schema["day"] == pl.Date
    assert "by day (UTC" in render_decisions(report, "header", "table", None)


def test_window_is_since_inclusive_until_exclusive() -> None:
    frame = decisions_frame(RECORDS)
    since = datetime(2025, 11, 25, tzinfo=UTC)
    assert within(frame, since=since).height == 2
    assert within(frame, until=since).height == 4
    assert (
        within(frame, since=since, until=parse_instant("2025-11-25", end_of_day=True)).height == 2
    )
    with pytest.raises(ConfigError, match="not before"):
        within(frame, since=since, until=since)


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2025-11-24", False, datetime(2025, 11, 24, tzinfo=UTC)),
        ("2025-11-24", True, datetime(2025, 11, 25, tzinfo=UTC)),
        ("2025-11-24T10:30", False, datetime(2025, 11, 24, 10, 30, tzinfo=UTC)),
        ("2025-11-24T10:30:00Z", True, datetime(2025, 11, 24, 10, 30, tzinfo=UTC)),
        ("2025-11-24T12:30:00+02:00", False, datetime(2025, 11, 24, 10, 30, tzinfo=UTC)),
    ],
)
def test_parse_instant(text: str, end_of_day: bool, expected: datetime) -> None:
    assert parse_instant(text, end_of_day=end_of_day) == expected


def test_parse_instant_refuses_garbage() -> None:
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_instant("last tuesday")


def test_user_decisions_lists_everything_about_one_user_in_time_order() -> None:
    records = [*RECORDS, decision(7, occurred_at=DAY1 - 1000, decided_at=DAY2 + 9)]
    listing = user_decisions(decisions_frame(records), "u1")
    assert listing.columns == list(USER_COLUMNS)
    assert listing["decision_id"].to_list() == ["d7", "d1", "d2", "d4", "d5"]
    assert listing.filter(pl.col("decision_id") == "d5")["model_id"].item() == "m-1"
    assert user_decisions(decisions_frame(records), "nobody").height == 0


def test_user_table_names_verdict_reason_recipient_and_explanation() -> None:
    listing = user_decisions(decisions_frame(RECORDS), "u1")
    text = render_user(listing, "user u1", "table", None)
    assert "HOLD RECIPIENT_SUSPENDED" in text
    assert "to acme-vision for ML_TRAINING" in text
    assert "    explanation 4." in text
    assert "job job-1, model m-1" in text


def test_csv_and_parquet_outputs(tmp_path: Path) -> None:
    report = summarize(decisions_frame(RECORDS))
    printed = render_decisions(report, "h", "csv", None)
    assert printed.startswith("# by_verdict\nverdict,reason,decisions,share\n")
    assert "# by_day\nday,allowed,denied,held,total\n2025-11-24,3,1,0,4" in printed

    render_decisions(report, "h", "parquet", tmp_path / "out")
    back = pl.read_parquet(tmp_path / "out" / "by_recipient.parquet")
    assert back.equals(report.by_recipient)
    with pytest.raises(ConfigError, match="needs --out"):
        render_decisions(report, "h", "parquet", None)

    listing = user_decisions(decisions_frame(RECORDS), "u1")
    render_user(listing, "h", "csv", tmp_path / "u1.csv")
    csv = pl.read_csv(tmp_path / "u1.csv")
    assert csv.height == 4
    assert csv["decided_at"][0] == "2025-11-24T16:00:00.001Z"
    assert csv["categories"][0] == "IMAGE"


def test_output_is_checked_before_reading(tmp_path: Path) -> None:
    check_output("table", None, directory=True)
    check_output("csv", tmp_path, directory=True)
    check_output("parquet", tmp_path / "new.parquet", directory=False)
    with pytest.raises(ConfigError, match="needs --out DIR"):
        check_output("parquet", None, directory=True)
    with pytest.raises(ConfigError, match="must be a file"):
        check_output("csv", tmp_path, directory=False)
    with pytest.raises(ConfigError, match="unknown format"):
        check_output("xlsx", None, directory=False)
