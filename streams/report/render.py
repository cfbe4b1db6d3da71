"""Output of the reports: text tables, CSV or Parquet (pure apart from writing the files asked for).

``consentinel report decisions`` has several tables: as ``table`` they print one after another;
as ``csv`` they print one after another each under a ``# <name>`` line, or with ``--out DIR`` go
to ``DIR/<name>.csv``; as ``parquet`` they go to ``DIR/<name>.parquet`` (``--out`` required).
``consentinel report user`` has one table: ``--out`` is then a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import polars as pl

from streams.errors import ConfigError
from streams.report.frame import DecisionsReport

Format = Literal["table", "csv", "parquet"]
FORMATS: Final = ("table", "csv", "parquet")

_DATETIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.3fZ"
_TABLE_CONFIG: Final = {
    "tbl_rows": -1,
    "tbl_cols": -1,
    "tbl_hide_dataframe_shape": True,
    "tbl_hide_column_data_types": True,
    "tbl_width_chars": 160,
    "fmt_str_lengths": 80,
    "float_precision": 3,
}
_TITLES: Final = {
    "by_verdict": "decisions by verdict and reason (share of all decisions)",
    "by_recipient": "by recipient (photos_out = distinct photos allowed to it)",
    "by_subject_kind": "by subject kind",
    "by_day": "by day (UTC, of decided_at)",
}


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Make a frame CSV-friendly: lists become comma-separated strings."""
    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    return frame.with_columns(pl.col(name).list.join(",") for name in lists) if lists else frame


def _csv(frame: pl.DataFrame) -> str:
    return _flat(frame).write_csv(datetime_format=_DATETIME_FORMAT, float_precision=4)


def _table(frame: pl.DataFrame) -> str:
    with pl.Config(**_TABLE_CONFIG):  # type: ignore[arg-type]
        return str(frame)


def _directory(out: Path | None, fmt: str) -> Path:
    if out is None:
        raise ConfigError(f"--format {fmt} needs --out DIR", hint="e.g. --out reports/2026-11")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; {fmt} output is one file per table in a DIR")
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_output(fmt: str, out: Path | None, *, directory: bool) -> None:
    """Refuse, before any reading, an output the chosen format cannot produce."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        kind = "DIR" if directory else "FILE"
        raise ConfigError(
            f"--format parquet needs --out {kind}", hint="Parquet is not for a terminal"
        )
    if out is not None and out.is_dir() != (directory and fmt != "table") and out.exists():
        want = "a directory" if directory and fmt != "table" else "a file"
        raise ConfigError(f"--out {out} must be {want} for --format {fmt}")


def render_decisions(report: DecisionsReport, header: str, fmt: str, out: Path | None) -> str:
    """Render or write the decisions report; return what to print."""
    tables = report.tables()
    if fmt == "table":
        text = "\n\n".join(
            [header, *(f"{_TITLES[name]}\n{_table(frame)}" for name, frame in tables.items())]
        )
        return _write_text(text, out)
    if fmt == "csv" and out is None:
        return "\n".join(f"# {name}\n{_csv(frame)}" for name, frame in tables.items())
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    directory = _directory(out, fmt)
    written = []
    for name, frame in tables.items():
        path = directory / f"{name}.{fmt}"
        if fmt == "csv":
            path.write_text(_csv(frame), encoding="utf-8")
        else:
            frame.write_parquet(path)
        written.append(str(path))
    return f"{header}\nwrote {', '.join(written)}"


def render_user(frame: pl.DataFrame, header: str, fmt: str, out: Path | None) -> str:
    """Render or write one user's decisions (:func:`~streams.report.frame.user_decisions`)."""
    if fmt == "table":
        return _write_text("\n".join([header, *_user_lines(frame)]), out)
    if fmt == "csv":
        if out is None:
            return _csv(frame)
        out.write_text(_csv(frame), encoding="utf-8")
    elif fmt == "parquet":
        if out is None:
            raise ConfigError("--format parquet needs --out FILE", hint="e.g. --out user.parquet")
        frame.write_parquet(out)
    else:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return f"{header}\nwrote {out}"


def _user_lines(frame: pl.DataFrame) -> list[str]:
    """One block per decision: when, what, to whom, the verdict, and the explanation."""
    lines = []
    for row in frame.iter_rows(named=True):
        when = row["occurred_at"] or row["decided_at"]
        categories = ", ".join(row["categories"] or []) or "none named"
        source = f"job {row['actor']}" if row["subject_kind"] == "TRAINING_READ" else row["actor"]
        model = f", model {row['model_id']}" if row["model_id"] else ""
        consent = row["consent_event_id"] or "none"
        lines += [
            "",
            f"{when:%Y-%m-%d %H:%M:%S}Z  {row['verdict']} {row['reason']}  "
            f"{row['subject_kind']} of photo {row['photo_id']} to {row['recipient_org']} "
            f"for {row['purpose']}",
            f"    {row['explanation']}",
            f"    asked by {source}{model}; categories {categories}; consent record {consent}; "
            f"policy {row['policy_version']}; decided {row['decided_at']:%Y-%m-%d %H:%M:%S}Z; "
            f"decision {row['decision_id']}",
        ]
    return lines


def _write_text(text: str, out: Path | None) -> str:
    if out is None:
        return text
    out.write_text(text + "\n", encoding="utf-8")
    return f"wrote {out}"
