"""Reports over ``governance.decisions``: totals for operators, one user's decisions for a DSAR.

:mod:`streams.report.source` reads the topic, :mod:`streams.report.frame` aggregates with polars
(pure, unit-tested with plain dicts), :mod:`streams.report.render` prints or writes the tables, and
:mod:`streams.report.run` ties them together for the command line.

Import the submodules themselves: this package imports nothing, so that the modules without
polars (``audit_verify``, ``lineage``, ``source``) work in an install without the ``reports``
extra, such as the service image.
"""
