"""The plain values that flow through a topology: a consumed record in, records to write out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RawInput:
    """One consumed record: where it came from and its bytes, exactly as the broker gave them.

    ``topic`` is the logical (contract or internal) name, without the deployment's prefix;
    ``timestamp_ms`` is the broker's record timestamp (``LogAppendTime`` on input topics).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    decoded: Any = None
    """The value as the topology decoded it once (e.g. to read its event time), or None."""


@dataclass(slots=True)
class Output:
    """One record to write in the current transaction.

    ``value`` is a record dict that the runtime encodes with ``topic``'s Avro schema, or ``bytes``
    written verbatim (a forwarded original, or an internal topic's own encoding). ``partition``
    None lets the producer's partitioner choose from the key.
    """

    topic: str
    partition: int | None
    key: bytes | None
    value: dict[str, Any] | bytes
    headers: list[tuple[str, bytes]] | None = None
    track: bool = False
    """Report the offset this record gets once committed (see ``Topology.delivered``)."""


@dataclass(slots=True)
class Processed:
    """What processing one input produced, plus facts the topology reports after the commit.

    ``facts`` is opaque to the runtime: it hands them back to
    :meth:`~streams.runtime.topology.Topology.committed` once the transaction holding
    ``outputs`` is committed, so that metrics count only what readers can see.
    """

    outputs: list[Output] = field(default_factory=list)
    facts: Any = None
    dead_letter_kind: str | None = None
