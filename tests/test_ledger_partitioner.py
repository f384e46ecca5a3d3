"""partition_for is Kafka's default partitioner (murmur2), checked against aiokafka's."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from ledger import partition_for
from ledger.partitioner import murmur2


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) & 0xFFFFFFFF == aiokafka_murmur2(data)


@given(st.binary(max_size=64) | st.text(max_size=20), st.integers(1, 1000))
def test_partition_matches_kafka_default_partitioner(key: bytes | str, partitions: int) -> None:
    raw = key.encode() if isinstance(key, str) else key
    assert partition_for(key, partitions) == (aiokafka_murmur2(raw) & 0x7FFFFFFF) % partitions


@pytest.mark.parametrize(
    ("data", "java"),
    [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"", 275646681),
    ],
)
def test_murmur2_matches_the_java_client(data: bytes, java: int) -> None:
    # Values from Kafka's UtilsTest.testMurmur2 (signed Java ints).
    assert murmur2(data) == java
