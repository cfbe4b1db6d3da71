"""The command line's delivery ledger: a SQLite file of the decision ids egress delivered under.

``consentinel egress check --ledger FILE`` keeps one row per decision id that let a record out,
with the record it left from (``photo.share.approved[3]@1042``) and when. The file is the
egress's memory across runs and restarts: a record whose decision id is in it from another record
is a replay and is refused (:class:`streams.core.egress.DeliveryLedger`). Claims are single
``INSERT OR IGNORE`` statements on the primary key, committed at once, so two egress processes
sharing the file never both deliver under one decision. Losing the file loses that memory: keep it
with egress's other state (a persistent volume), one file per deployment.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from streams.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    decision_id TEXT PRIMARY KEY,
    record_at TEXT NOT NULL,
    delivered_at_ms INTEGER NOT NULL
)
"""


class SqliteLedger:
    """A :class:`~streams.core.egress.DeliveryLedger` in a SQLite file (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the egress ledger {path}: {exc}",
                hint="give --ledger a writable file (the same one on every run of this deployment)",
            ) from None

    def claim(self, decision_id: str, record_at: str) -> str | None:
        """See :meth:`streams.core.egress.DeliveryLedger.claim`."""
        try:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?)",
                (decision_id, record_at, int(time.time() * 1000)),
            ).rowcount
            if inserted == 1:
                return None
            row = self._db.execute(
                "SELECT record_at FROM delivered WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot write the egress ledger {self.path}: {exc}") from None
        return str(row[0]) if row else "an earlier record"

    def delivered(self) -> int:
        """Return how many decision ids the ledger holds."""
        return int(self._db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()
