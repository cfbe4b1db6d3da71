"""Egress, the only way out: ``consentinel egress check`` and its delivery ledger.

Each approved share is checked against its decision (:mod:`streams.core.egress`) by
:mod:`streams.egress.check`, and what left is remembered in :mod:`streams.egress.ledger`.
"""
