"""The ``decision_id`` of a request: one per input record, the same after any restart.

CONTRACT §2: ``decision_id`` is unique per input record and stable across restarts. It is derived
from where the record sits -- its logical topic (the contract's name, without a deployment's
prefix), partition and offset -- and its ``event_id``. Under exactly-once processing a record is
decided again only after an aborted transaction, at the same offset, so it gets the same id; two
records never share an id, even when a producer reuses an ``event_id`` once the gate's duplicate
memory has forgotten it (each is then a new input with its own decision, recall ledger entry and
allowed-access entry). The ``event_id`` in the name keeps ids apart should a topic ever be
recreated and its offsets reused.

The gate and the benchmark's peers (``bench/``) derive ids with this one function.
"""

from __future__ import annotations

from streams.runtime.dead_letters import derived_id


def decision_id(topic: str, partition: int, offset: int, event_id: str) -> str:
    """Return the decision id of the input at ``topic``/``partition``/``offset`` (a UUIDv5)."""
    return derived_id(f"decision:{topic}/{partition}/{offset}:{event_id}")
