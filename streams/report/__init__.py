"""Reports over ``governance.decisions``: totals for operators, one user's decisions for a DSAR.

:mod:`streams.report.source` reads the topic, :mod:`streams.report.frame` aggregates with polars
(pure, unit-tested with plain dicts), :mod:`streams.report.render` prints or writes the tables, and
:mod:`streams.report.run` ties them together for the command line.
"""

from streams.report.frame import (
    DecisionsReport,
    decisions_frame,
    parse_instant,
    summarize,
    user_decisions,
    within,
)

__all__ = [
    "DecisionsReport",
    "decisions_frame",
    "parse_instant",
    "summarize",
    "user_decisions",
    "within",
]
