"""A new KRaft cluster id is one `kafka-storage format -t` accepts: never a leading '-'."""

import uuid

from streams.stack.kraft import new_cluster_id


def test_an_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    # 0xF8 as the first byte encodes to '-' first in URL-safe base64.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x01" * 15), uuid.UUID(bytes=b"\x10" * 16)])

    cluster_id = new_cluster_id(lambda: next(draws))

    assert cluster_id == new_cluster_id(lambda: uuid.UUID(bytes=b"\x10" * 16))
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22


def test_many_random_ids_never_start_with_a_dash() -> None:
    ids = {new_cluster_id() for _ in range(5_000)}

    assert len(ids) == 5_000
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
