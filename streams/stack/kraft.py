"""What formatting a KRaft node's storage needs from us: a cluster id the storage tool accepts."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable


def new_cluster_id(random_uuid: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """Draw a random cluster id in Kafka's form (22 URL-safe base64 characters), never '-' first.

    `kafka-storage format -t <id>` parses an id that starts with '-' as an option and fails
    ("argument --cluster-id/-t: expected one argument"): one random id in 64 does. Kafka's own
    `Uuid.randomUuid()` draws again in that case, and so does this.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_uuid().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
