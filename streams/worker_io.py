"""What agents send, and the producer that sends it in record batches.

Faust's `topic.send` costs ~250 µs of CPU per message on these machines (a future, sensors and
a loop turn each); appending to aiokafka record batches costs a few µs. Agents therefore hand
their outgoing messages to `Publisher.publish`, once per batch they took, and it returns when
Kafka has acknowledged every one (acks=all): only then is the batch acked to Faust.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from pydantic_core import PydanticSerializationError
from pydantic_core import to_json as _to_json

from events import Envelope
from streams.topics import MAX_MESSAGE_BYTES, TopicNames

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_record(record: dict[str, Any]) -> bytes:
    """A recorded event's JSON for Kafka and the projector: compact UTF-8, by pydantic-core's
    encoder (~3x faster than json's; equal once parsed, floats may be spelled otherwise, e.g.
    1e-7 for 1e-07). Anything it cannot encode goes through json."""
    try:
        return _to_json(record)
    except (PydanticSerializationError, ValueError):
        return dumps(record).encode()


class Outgoing(NamedTuple):
    """One message to send: topic by short name, explicit partition (= partition_for(key))."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int
    headers: tuple[tuple[str, bytes], ...] = ()


def encode_event(event: Envelope) -> bytes:
    return dumps(event.to_record()).encode()


def header(headers: Any, name: str) -> str | None:
    """One header's value as text, whether headers come as a list of pairs or a mapping."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == name and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


class Publisher:
    """An idempotent aiokafka producer (acks=all), started on first use inside the loop."""

    def __init__(self, bootstrap: str, names: TopicNames) -> None:
        self.bootstrap = bootstrap
        self.names = names
        self.producer: Any = None
        self._lock = asyncio.Lock()
        self.sent = 0

    async def _producer(self) -> Any:
        if self.producer is None:
            async with self._lock:
                if self.producer is None:
                    from aiokafka import AIOKafkaProducer

                    producer = AIOKafkaProducer(
                        bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                        linger_ms=0, max_batch_size=256 * 1024,
                        max_request_size=MAX_MESSAGE_BYTES + 64 * 1024)
                    await producer.start()
                    self.producer = producer
        return self.producer

    async def publish(self, messages: Iterable[Outgoing]) -> None:
        """Send all and wait for the acks."""
        await (await self.enqueue(messages))

    async def enqueue(self, messages: Iterable[Outgoing]) -> asyncio.Future[Any]:
        """Hand all to the producer (one record batch per topic partition, in order, after
        whatever was enqueued before); returns a future done when Kafka acknowledged them."""
        producer = await self._producer()
        batches: dict[tuple[str, int], list[Any]] = {}
        for m in messages:
            built = batches.setdefault((m.topic, m.partition), [])
            headers = list(m.headers)
            if not built or built[-1].append(timestamp=None, key=m.key, value=m.value,
                                             headers=headers) is None:
                batch = producer.create_batch()
                if batch.append(timestamp=None, key=m.key, value=m.value,
                                headers=headers) is None:
                    raise ValueError(f"a message of {len(m.value)} bytes fits no batch")
                built.append(batch)
            self.sent += 1
        pending = []
        for (topic, partition), built in batches.items():
            for batch in built:
                batch.close()
                pending.append(await producer.send_batch(batch, self.names[topic],
                                                         partition=partition))
        return asyncio.gather(*pending)

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()
