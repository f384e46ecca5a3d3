"""Smoke tests of the real Apache Kafka broker (scripts/kafka.sh) with aiokafka and faust.

They pin down what the rest of the project relies on: explicit topic creation with partitions,
idempotent producing, consumer-group commits, transactions with read_committed, no topic
auto-creation, and a faust worker (agent + table) running in-process against this broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

pytestmark = pytest.mark.kafka


async def _consume(bootstrap: str, topic: str, want: int, *, timeout: float = 20.0, **kwargs):
    """Read until `want` records arrived or `timeout` passed; return the records."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **kwargs
    )
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


async def test_topic_idempotent_produce_group_commit(kafka_bootstrap, kafka_topics):
    (topic,) = await kafka_topics("events", partitions=3)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # a topic just created may not have its leaders yet on a busy machine: ask again
        deadline = time.monotonic() + 15
        while True:
            (described,) = await admin.describe_topics([topic])
            if described["error_code"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert described["error_code"] == 0
        assert sorted(p["partition"] for p in described["partitions"]) == [0, 1, 2]

        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        sent = {}
        try:
            for i in range(30):
                key = f"task-{i % 6}".encode()
                meta = await producer.send_and_wait(topic, f"v{i}".encode(), key=key)
                # same key -> same partition (murmur2, like the Java client)
                assert sent.setdefault(key, meta.partition) == meta.partition
        finally:
            await producer.stop()
        assert len(set(sent.values())) > 1, "6 keys over 3 partitions all landed in one"

        group = f"test-group-{uuid.uuid4().hex[:8]}"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        records = []
        try:
            deadline = time.monotonic() + 20
            while len(records) < 30 and time.monotonic() < deadline:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(messages)
            await consumer.commit()
        finally:
            await consumer.stop()
        assert len(records) == 30
        # per-partition order is the send order
        for p in range(3):
            values = [int(r.value[1:]) for r in records if r.partition == p]
            assert values == sorted(values)

        committed = await admin.list_consumer_group_offsets(group)
        per_partition = {p: sum(1 for r in records if r.partition == p) for p in range(3)}
        assert {tp.partition: om.offset for tp, om in committed.items() if om.offset > 0} == {
            p: n for p, n in per_partition.items() if n
        }
    finally:
        await admin.close()


async def test_transaction_round_trip(kafka_bootstrap, kafka_topics):
    src, out = await kafka_topics("tx-in", "tx-out", partitions=1)
    group = f"test-tx-{uuid.uuid4().hex[:8]}"

    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(src, f"in{i}".encode(), key=b"k")
    finally:
        await plain.stop()

    # consume-transform-produce: outputs and input offsets commit atomically
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}"
    )
    await consumer.start()
    await producer.start()
    try:
        records = []
        deadline = time.monotonic() + 20
        while len(records) < 3 and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(messages)
        assert [r.value for r in records] == [b"in0", b"in1", b"in2"]

        async with producer.transaction():
            for r in records[:2]:
                await producer.send(out, b"out-" + r.value, key=r.key)
            await producer.send_offsets_to_transaction(
                {TopicPartition(src, 0): records[1].offset + 1}, group
            )

        await producer.begin_transaction()
        await producer.send(out, b"aborted", key=b"k")
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(out, b"out-" + records[2].value, key=b"k")
            await producer.send_offsets_to_transaction(
                {TopicPartition(src, 0): records[2].offset + 1}, group
            )
    finally:
        await producer.stop()
        await consumer.stop()

    committed = await _consume(kafka_bootstrap, out, 3, isolation_level="read_committed")
    assert [r.value for r in committed] == [b"out-in0", b"out-in1", b"out-in2"]
    # read_uncommitted also sees the aborted record: the isolation level is what hides it
    uncommitted = await _consume(
        kafka_bootstrap, out, 4, timeout=10, isolation_level="read_uncommitted"
    )
    assert b"aborted" in [r.value for r in uncommitted]

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert offsets[TopicPartition(src, 0)].offset == 3


async def test_topics_are_not_auto_created(kafka_bootstrap):
    missing = f"test-missing-{uuid.uuid4().hex[:8]}"
    # aiokafka 0.14 keeps refreshing metadata for request_timeout_ms, then raises this
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=1500)
    await producer.start()
    try:
        with pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_and_wait(missing, b"x")
    finally:
        await producer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()


async def test_faust_agent_round_trip(kafka_bootstrap, kafka_topics):
    import faust

    src, out = await kafka_topics("faust-in", "faust-out", partitions=1)
    app_id = f"test-faust-{uuid.uuid4().hex[:8]}"
    app = faust.App(
        app_id,
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        web_tables_enabled=False,
    )
    source = app.topic(src, key_type=bytes, value_type=bytes, value_serializer="raw",
                       key_serializer="raw")
    sink = app.topic(out, key_type=bytes, value_type=bytes, value_serializer="raw",
                     key_serializer="raw")
    seen = app.Table("seen", default=int, partitions=1)

    @app.agent(source, concurrency=1)
    async def echo(stream):
        async for event in stream.events():
            seen[event.key] += 1
            await sink.send(key=event.key, value=b"seen-%d:" % seen[event.key] + event.value)

    await app.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(src, b"hello", key=b"task-1")
            await producer.send_and_wait(src, b"again", key=b"task-1")
        finally:
            await producer.stop()
        records = await _consume(kafka_bootstrap, out, 2, timeout=30)
        assert [(r.key, r.value) for r in records] == [
            (b"task-1", b"seen-1:hello"),
            (b"task-1", b"seen-2:again"),
        ]
    finally:
        await asyncio.wait_for(app.stop(), timeout=30)

    # faust created its internal topics itself (auto-creation is off) with one partition
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
        changelog = f"{app_id}-seen-changelog"
        assert changelog in topics
        (described,) = await admin.describe_topics([changelog])
        assert len(described["partitions"]) == 1
        await admin.delete_topics([t for t in topics if t.startswith(app_id)])
    finally:
        await admin.close()
