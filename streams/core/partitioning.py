"""Kafka's default key partitioning (murmur2), as the Java client and ``murmur2_random`` compute it.

Producers of every language must agree on it so that a user's events share one partition number in
every input topic; this pure version lets tools and tests predict where a key lands.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF
_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}
"""Unpackers of n little-endian 32-bit words, by n."""


def murmur2(data: bytes) -> int:
    """Return Kafka's 32-bit murmur2 hash of ``data`` (as a signed int, like Java's)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    whole = words << 2
    if words:
        unpack = _WORDS.get(words)
        if unpack is None:
            unpack = _WORDS[words] = struct.Struct(f"<{words}I").unpack_from
        for k in unpack(data):  # little-endian 32-bit words, as Kafka reads them
            k = (k * _M) & _MASK
            k ^= k >> 24
            h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


_POSITIVE_HASHES: dict[bytes, int] = {}
_CACHE_LIMIT = 200_000
"""Keys whose hash is remembered (the gate hashes every input's key, mostly of known users)."""


def partition_for(key: bytes | str, partitions: int) -> int:
    """Return the partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    raw = key.encode() if isinstance(key, str) else key
    positive = _POSITIVE_HASHES.get(raw)
    if positive is None:
        if len(_POSITIVE_HASHES) >= _CACHE_LIMIT:
            _POSITIVE_HASHES.clear()
        positive = _POSITIVE_HASHES[raw] = murmur2(raw) & 0x7FFFFFFF
    return positive % partitions
