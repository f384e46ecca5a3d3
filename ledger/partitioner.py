"""Kafka's default partitioner, in pure Python: toPositive(murmur2(key)) % partitions.

Same numbers as org.apache.kafka.common.utils.Utils.murmur2 (seed 0x9747b28c), so an event
keyed by K lands in the same ledger partition as in the same-numbered Kafka partition.
"""

from __future__ import annotations

from ledger.errors import LedgerError

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` as a signed 32-bit int (what Java returns)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    end = length & ~3
    for i in range(0, end, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes | str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` (str is UTF-8 encoded)."""
    if partitions < 1:
        raise LedgerError(f"partitions must be >= 1, got {partitions}", code="ledger.bad_argument")
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return (murmur2(data) & 0x7FFFFFFF) % partitions
