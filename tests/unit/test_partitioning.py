import pytest

from streams.core.partitioning import murmur2, partition_for

# Vectors from Apache Kafka's UtilsTest.testMurmur2.
KAFKA_VECTORS = [
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
]


@pytest.mark.parametrize(("text", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected


def test_partition_is_positive_and_in_range() -> None:
    for i in range(500):
        assert 0 <= partition_for(f"user-{i}", 8) < 8
