"""A changelog restore reads what the previous owner's last transaction wrote (issue #20).

When a partition moves (a rebalance), its previous owner commits its open transaction and its
new owner restores the state from the changelog and resumes from the committed offsets. A
commit returns before the transaction markers are on the changelog partition; until they are,
its last stable offset is still the transaction's first record. A restore that stopped there
(librdkafka's watermark query honours ``read_committed`` and answers the last stable offset)
left out the whole last transaction while the offsets it committed were used: every consent and
upload in it was lost, which is how two gates decided otherwise than one.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streams.runtime import changelog
from streams.settings import Settings

pytestmark = pytest.mark.integration


class Recorded:
    """A partition state that keeps what the restore handed it."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def restore_many(self, records: list[tuple[bytes, bytes | None]]) -> None:
        self.records += records

    def take_changes(self) -> list[tuple[bytes, bytes | None]]:
        return []

    def close(self) -> None:
        pass


def test_restore_waits_for_a_transaction_still_open_at_its_start(
    settings: Settings, admin: AdminClient, unique: str
) -> None:
    topic = f"it{unique}.restore-changelog"
    for future in admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30).values():
        future.result()
    config = settings.kafka_config()
    producer = Producer({**config, "transactional.id": f"it{unique}-{uuid.uuid4().hex[:6]}"})
    try:
        producer.init_transactions(30)
        producer.begin_transaction()
        for i in range(3):
            producer.produce(topic, key=b"before-%d" % i, value=b"v", partition=0)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, key=b"open-%d" % i, value=b"v", partition=0)
        producer.flush(30)  # written, not committed: the last stable offset stays at 3

        state = Recorded()
        result: list[int | BaseException] = []

        def restore() -> None:
            try:
                result.append(
                    changelog.restore_partition(
                        config, f"it{unique}-restore", topic, 0, state, timeout_s=60
                    )
                )
            except BaseException as exc:
                result.append(exc)

        reader = threading.Thread(target=restore, daemon=True)
        reader.start()
        reader.join(3.0)  # the restore must still be waiting for the open transaction
        producer.commit_transaction(30)
        reader.join(60)
        assert not reader.is_alive(), "the restore did not finish after the commit"
    finally:
        for future in admin.delete_topics([topic], operation_timeout=30).values():
            future.exception()
    assert result == [8], result
    assert [key for key, _ in state.records] == [b"before-0", b"before-1", b"before-2"] + [
        b"open-%d" % i for i in range(5)
    ]
