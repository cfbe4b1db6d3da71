"""The regulator reports' logic on in-memory records: transfers, recall states, the user report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from streams.core.ack_signing import sign_ack
from streams.report import regulator, run
from streams.report.html import STATE_COLOURS, bars_svg, nice_ceiling, page, stacked_bars_svg
from streams.report.recalls import STATES, recall_states
from streams.report.source import DecisionLog
from streams.report.spool import Progress, ReadPlan, ReadStats, RowSpool, Spool
from streams.report.transfers import (
    TRANSFER_SCHEMA,
    bucket_size,
    policy_versions,
    transfer_rows,
    transfers_frame,
    transfers_over_time,
    transfers_summary,
)
from streams.settings import load_settings
from tests.ack_support import ACK_KEY, OTHER_KEY, ack_keys_of

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR


def decision(n: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "decision_id": f"d{n}",
        "decided_at": T0 + n * HOUR,
        "subject_kind": "SHARE",
        "photo_id": f"p{n}",
        "owner_id": "u1",
        "recipient_org": "acme-vision",
        "purpose": "ML_TRAINING",
        "verdict": "ALLOW",
        "reason": "CONSENTED",
        "policy_version": "v1",
        "consent_event_id": "c1",
        "model_id": None,
    }
    record.update(fields)
    return record


DECISIONS = [
    decision(1),
    decision(2, verdict="DENY", reason="NO_CONSENT", consent_event_id=None),  # never left
    decision(3, verdict="HOLD", reason="RECIPIENT_SUSPENDED"),  # never left
    decision(4, subject_kind="TRAINING_READ", verdict="DENY", model_id="m1", consent_event_id="c2"),
    decision(5, recipient_org="lovebird", consent_event_id="c3", policy_version="v2"),
    decision(6, notice_version="notice-own", consent_event_id="c1"),  # carries its own
    decision(7, consent_event_id="c-unknown"),
    decision(30, policy_version="v2"),  # outside a window ending at hour 24
]
CONSENTS = [
    {"event_id": "c1", "notice_version": "2026-01"},
    {"event_id": "c2", "notice_version": "2025-07"},
    {"event_id": "c3", "notice_version": "2026-02"},
]


def at(hours: float) -> datetime:
    return datetime.fromtimestamp((T0 + hours * HOUR) / 1000, tz=UTC)


def test_transfers_are_allowed_shares_and_every_training_read_to_the_recipient() -> None:
    frame = transfers_frame(DECISIONS, CONSENTS, recipients=["acme-vision"], until=at(24))
    assert frame.schema == TRANSFER_SCHEMA
    assert frame["decision_id"].to_list() == ["d1", "d4", "d6", "d7"]
    by_id = {r["decision_id"]: r for r in frame.to_dicts()}
    assert by_id["d1"]["notice_version"] == "2026-01"  # from consent.changes
    assert by_id["d4"]["notice_version"] == "2025-07"
    assert by_id["d4"]["verdict"] == "DENY"  # a denied read still reached the recipient
    assert by_id["d6"]["notice_version"] == "notice-own"  # the decision's own wins
    assert by_id["d7"]["notice_version"] is None  # consent not found: blank, not guessed
    assert by_id["d1"]["decided_at"] == at(1)


def test_transfers_window_and_all_recipients() -> None:
    frame = transfers_frame(DECISIONS, CONSENTS, since=at(4), until=at(31))
    assert frame["decision_id"].to_list() == ["d4", "d5", "d6", "d7", "d30"]
    assert transfers_frame(DECISIONS, since=at(5), until=at(6))["decision_id"].to_list() == ["d5"]
    assert transfers_frame(DECISIONS, recipients=["nobody"]).is_empty()


def test_transfer_aggregates_for_the_page() -> None:
    lazy = transfers_frame(DECISIONS, CONSENTS).lazy()
    summary = {r["recipient_org"]: r for r in transfers_summary(lazy).to_dicts()}
    assert summary["acme-vision"]["transfers"] == 5
    assert summary["acme-vision"]["not_allowed"] == 1
    assert summary["lovebird"]["photos"] == 1
    assert policy_versions(lazy) == ["v1", "v2"]
    hourly = transfers_over_time(lazy, "1h")
    assert hourly["photos"].sum() == 6
    daily = transfers_over_time(lazy, "1d")
    assert daily.filter(pl.col("recipient_org") == "acme-vision")["photos"].to_list() == [4, 1]
    assert bucket_size(at(0), at(30)) == "1h"
    assert bucket_size(at(0), at(24 * 10)) == "1d"
    assert bucket_size(at(0), at(24 * 200)) == "1w"
    assert transfer_rows([]).schema == TRANSFER_SCHEMA


def order(
    n: int, *, recipient: str = "acme-vision", user: str = "u1", **fields: Any
) -> dict[str, Any]:
    record = {
        "order_id": f"o{n}",
        "issued_at": T0,
        "recipient_org": recipient,
        "user_id": user,
        "photo_ids": [f"p{n}a", f"p{n}b"],
        "model_ids": [f"m{n}"],
        "cause": "ERASURE_REQUESTED",
        "decision_ids": [f"d{n}"],
        "due_at": T0 + 30 * DAY,
    }
    record.update(fields)
    return record


def ack(
    n: int, *, recipient: str = "acme-vision", at_ms: int = T0 + DAY, **fields: Any
) -> dict[str, Any]:
    record = {
        "order_id": f"o{n}",
        "recipient_org": recipient,
        "acknowledged_at": at_ms,
        "deleted_photo_ids": [],
        "purged_model_ids": [],
        "evidence": f"ticket-{n}",
    }
    record.update(fields)
    return record


SIGNERS = {"acme-vision": ACK_KEY, "lovebird": OTHER_KEY}
KEYS = ack_keys_of(SIGNERS)
"""The ack keys the policy lists: acme-vision's and lovebird's."""


def signed(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` signed by the key of the recipient it names (as the SDK signs)."""
    return sign_ack(record, SIGNERS[record["recipient_org"]])


ORDERS = [
    order(1),  # nothing acknowledged, not due: OPEN
    order(2),  # one photo acknowledged: PARTIAL, missing p2b and m2
    order(3),  # acknowledged over two acks: ACKNOWLEDGED
    order(4, due_at=T0 + 2 * DAY),  # partly acknowledged, past due: OVERDUE
    order(5, recipient="lovebird", user="u2", due_at=T0 + DAY),  # nothing, past due: OVERDUE
]
ACKS = [
    signed(a)
    for a in (
        ack(2, deleted_photo_ids=["p2a"]),
        ack(3, deleted_photo_ids=["p3a", "p3b"]),
        ack(3, purged_model_ids=["m3"], at_ms=T0 + 2 * DAY),
        ack(4, deleted_photo_ids=["p4a", "p4b"]),
        ack(9, deleted_photo_ids=["x"]),  # no such order
        ack(1, recipient="lovebird", deleted_photo_ids=["p1a"]),  # not its order: rejected
        ack(1, deleted_photo_ids=["p1a", "p1b"], purged_model_ids=["m1"], at_ms=T0 + 10 * DAY),
    )
]


def test_recall_states_open_partial_overdue_acknowledged() -> None:
    report = recall_states(
        ORDERS, ACKS, T0 + 5 * DAY, ack_keys=KEYS
    )  # the o1 ack at day 10 is later
    states = {r["order_id"]: r for r in report.orders.to_dicts()}
    assert {k: v["state"] for k, v in states.items()} == {
        "o1": "OPEN",
        "o2": "PARTIAL",
        "o3": "ACKNOWLEDGED",
        "o4": "OVERDUE",
        "o5": "OVERDUE",
    }
    assert states["o2"]["missing_photos"] == ["p2b"]
    assert states["o2"]["missing_models"] == ["m2"]
    assert states["o4"]["partly_acknowledged"] is True
    assert states["o5"]["partly_acknowledged"] is False
    assert states["o3"]["evidence"] == ["ticket-3"]
    assert states["o3"]["last_ack_at"] == datetime.fromtimestamp((T0 + 2 * DAY) / 1000, UTC)
    assert report.orphan_acks == [("o9", "acme-vision")]
    assert len(report.rejected_acks) == 1
    assert "lovebird" in report.rejected_acks[0]
    assert report.state_counts() == {"OPEN": 1, "PARTIAL": 1, "OVERDUE": 2, "ACKNOWLEDGED": 1}
    per = {r["recipient_org"]: r for r in report.by_recipient.to_dicts()}
    assert per["acme-vision"] == {
        "recipient_org": "acme-vision",
        "open": 1,
        "partial": 1,
        "overdue": 1,
        "acknowledged": 1,
        "total": 4,
        "photos_missing": 3,  # o1: 2, o2: 1, o4: 0
        "models_missing": 3,  # o1, o2, o4
    }
    assert report.by_recipient["recipient_org"].to_list()[0] == "acme-vision"


def test_recall_states_later_and_filtered() -> None:
    later = recall_states(ORDERS, ACKS, T0 + 40 * DAY, ack_keys=KEYS)
    states = dict(zip(later.orders["order_id"], later.orders["state"], strict=True))
    assert states["o1"] == "ACKNOWLEDGED"  # its ack of day 10 now counts
    assert states["o2"] == "OVERDUE"
    lovebird = recall_states(ORDERS, ACKS, T0 + 5 * DAY, ack_keys=KEYS, recipients=["lovebird"])
    assert lovebird.orders["order_id"].to_list() == ["o5"]
    assert lovebird.orphan_acks == []  # acks of other recipients' orders are out of scope
    before = recall_states(ORDERS, ACKS, T0 - 1, ack_keys=KEYS)
    assert before.orders.is_empty()  # nothing issued yet
    assert set(before.state_counts()) == set(STATES)


def test_an_ack_counts_only_when_its_recipient_signed_it() -> None:
    """Contract section 5: the report closes an order only as the detectors would; a forged,
    unsigned or re-signed ack is listed as rejected and leaves the order as it was."""
    genuine = ack(3, deleted_photo_ids=["p3a", "p3b"], purged_model_ids=["m3"])
    forged = [
        genuine,  # unsigned
        sign_ack(genuine, OTHER_KEY),  # lovebird's key on acme-vision's ack
        {**signed(genuine), "deleted_photo_ids": ["p3a", "p3b", "extra"]},  # altered after signing
    ]
    for attempt in forged:
        report = recall_states([order(3)], [attempt], T0 + 5 * DAY, ack_keys=KEYS)
        assert report.orders["state"].to_list() == ["OPEN"], attempt
        assert len(report.rejected_acks) == 1 and "does not count" in report.rejected_acks[0]
    report = recall_states([order(3)], [signed(genuine)], T0 + 5 * DAY, ack_keys=KEYS)
    assert report.orders["state"].to_list() == ["ACKNOWLEDGED"]  # the control


def test_without_the_policy_keys_no_ack_counts_and_the_report_says_so() -> None:
    report = recall_states(ORDERS, ACKS, T0 + 5 * DAY, ack_keys=None)
    assert report.state_counts()["ACKNOWLEDGED"] == 0
    assert report.state_counts()["PARTIAL"] == 0
    assert report.unverified_acks == 6  # every ack made by day 5
    assert any("NOT counted" in line for line in regulator.problems(report))


def test_recall_unknown_cause_is_listed_not_dropped_silently() -> None:
    report = recall_states([order(1, cause="UNKNOWN")], [], T0, ack_keys=KEYS)
    assert report.orders.is_empty()
    assert "o1" in report.unusable_orders[0]
    assert any("unusable" in line for line in regulator.problems(report))


@pytest.fixture
def patched_sources(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The user report's sources, from the records above instead of Kafka."""

    def read_decisions(_settings: Any, *, keep: Any = None, codec: Any = None) -> DecisionLog:
        records = [d for d in DECISIONS if keep is None or keep(d)]
        return DecisionLog("governance.decisions", 1, records, len(DECISIONS))

    def read_recalls(_settings: Any, as_of_ms: int, **filters: Any) -> Any:
        return recall_states(ORDERS, ACKS, T0 + 5 * DAY, ack_keys=KEYS, **filters)

    monkeypatch.setattr(run, "read_decisions", read_decisions)
    monkeypatch.setattr(regulator, "read_recalls", read_recalls)
    yield


@pytest.mark.usefixtures("patched_sources")
def test_user_report_lists_the_recall_orders_naming_the_user(tmp_path: Path) -> None:
    settings = load_settings()
    text = run.user_report(settings, "u2")
    assert "recall orders naming user u2: 1" in text
    assert "o5" in text and "OVERDUE" in text
    assert "o1" not in text.split("recall orders naming")[1]  # u1's orders are not u2's
    text = run.user_report(settings, "u1", fmt="csv")
    assert "\n# recall_orders\norder_id,recipient_org,user_id,state," in text
    lines = text.split("# recall_orders\n")[1].splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["o4", "o1", "o2", "o3"]  # by due_at
    out = tmp_path / "u1.csv"
    printed = run.user_report(settings, "u1", fmt="csv", out=out)
    recalls = pl.read_csv(tmp_path / "u1.recalls.csv")
    assert recalls["order_id"].to_list() == ["o4", "o1", "o2", "o3"]  # by due_at
    assert recalls["missing_photos"].to_list()[2] == "p2b"
    assert str(tmp_path / "u1.recalls.csv") in printed
    out = tmp_path / "u1.txt"
    assert run.user_report(settings, "u1", out=out) == f"wrote {out}"
    assert "recall orders naming user u1: 4" in out.read_text()


def test_html_page_is_offline_with_the_chart_colours() -> None:
    series = transfers_over_time(transfers_frame(DECISIONS, CONSENTS).lazy(), "1h")
    svg = stacked_bars_svg(series, "1h")
    assert svg.startswith("<svg") and "#2563eb" in svg and "#ea580c" in svg
    assert "lovebird" in svg
    bars = bars_svg([(s, i + 1, STATE_COLOURS[s]) for i, s in enumerate(STATES)])
    assert all(colour in bars for colour in STATE_COLOURS.values())
    document = page("T <&>", ["m"], [], [svg, bars])
    assert "<title>T &lt;&amp;&gt;</title>" in document
    assert "<script" not in document and "https://" not in document
    assert "No transfers" in stacked_bars_svg(series.clear(), "1h")
    assert [nice_ceiling(v) for v in (0, 3, 7, 11, 240)] == [1.0, 5.0, 10.0, 20.0, 250.0]


def test_row_spool_writes_batches_and_scans_lazily(tmp_path: Path) -> None:
    rows = RowSpool(tmp_path / "s", "decisions", transfer_rows, batch_rows=3)
    for record in DECISIONS:
        rows.add(record)
    rows.flush()
    assert len(rows.files) == 3  # 3 + 3 + 2
    spool = Spool(ReadStats("t", 1, 8), tmp_path / "s", TRANSFER_SCHEMA, rows.kept, rows.files)
    assert spool.scan().select(pl.len()).collect().item() == 8
    empty = Spool(ReadStats("t", 1), tmp_path / "e", TRANSFER_SCHEMA)
    assert empty.scan().collect().schema == TRANSFER_SCHEMA


def test_progress_prints_every_n_records_or_seconds_with_a_percentage() -> None:
    lines: list[str] = []
    now = [0.0]
    plan = ReadPlan("governance.decisions", {0: 0, 1: 100}, {0: 1000, 1: 1100})
    progress = Progress(
        plan, say=lines.append, every_records=500, every_s=5.0, clock=lambda: now[0]
    )
    for offset in range(499):
        progress.advance(0, offset)
    assert lines == []
    progress.advance(0, 499)
    assert lines == ["governance.decisions: reading, 500 records (25.0% of 2000 offsets, 0.0s)"]
    now[0] = 6.0
    for offset in range(100, 600):  # the clock line comes at a multiple of 1000 records
        progress.advance(1, offset)
    assert len(lines) == 2 and "1000 records (50.0%" in lines[1]
    progress.finish()
    assert lines[-1].startswith("governance.decisions: done, 1000 records (100.0%")
    quiet: list[str] = []
    short = Progress(plan, say=quiet.append)
    short.advance(0, 0)
    short.finish()
    assert quiet == []  # a short read prints nothing
