"""<p>.metrics read by a plain aiokafka consumer in the worker, not by a Faust agent.

Why: monitoring streams thousands of samples a second, and most of them change nothing (the
rollback service records only the samples that matter, docs/rollback.md §6). Judging one costs
~30-60 µs; Faust's per-event stream machinery (one message through the conductor, the
sensors, the stream iterator and its ack) cost several times that on this machine, so a Faust
agent could not sustain 5,000 samples/s on 2 cores (bench/rollback_bench.py has the numbers).
This reader takes batches with `getmany`, runs every record through the same handlers as the
agents (`streams.agents.handle_record`: bad input is rejected and dead-lettered alike), hands
the events to the same publisher, and commits the batch's offsets only once Kafka has
acknowledged its messages -- the agents' at-least-once contract (docs/kafka-mode.md): a record
is read again after a crash, its events get the same ids, the ledger keeps one copy, and the
trigger windows ignore samples as old as the newest they folded.

Its consumer group is `<app id>-metrics` (the agents' group is the app id); one worker per app
id, as for the agents.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from events import MAX_EVENT_BYTES, Envelope, InputError
from events.registry import parse_payload
from streams.topics import MAX_MESSAGE_BYTES, METRICS

log = logging.getLogger("certify.worker")
STOP_TIMEOUT_S = 30.0
MAX_IN_FLIGHT = 8  # batches handed to the producer, not yet acknowledged by Kafka
COMMIT_EVERY_S = 0.5  # offsets acknowledged are committed at most this often


def fast_sample(permits: Any, raw: bytes | None) -> tuple[Any, Any] | None:
    """A metric sample envelope for a key that is not a permit's, parsed and validated once
    (the envelope and its payload, as `Pipeline.handle_raw` would): (envelope, payload) for
    the rollback service, which records it if it matters. None: anything else (another type,
    a permit's key, a bare document, bad input) -- the general path handles it, rejections
    included. Same outcome as the general path, without its second validation."""
    if not raw or b'"metric.sample"' not in raw or len(raw) > MAX_EVENT_BYTES:
        return None
    try:  # (pydantic's own JSON parser: one pass, no intermediate dict of the envelope)
        envelope = Envelope.model_validate_json(raw)
        if envelope.type != "metric.sample":
            return None
        payload = parse_payload(envelope.type, envelope.payload)
    except (ValueError, InputError):
        return None  # the general path says why
    if getattr(payload, "key", None) in permits:
        return None
    return envelope, payload


class MetricsReader:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._stopping = False
        self._finished: asyncio.Event | None = None
        self.batches = 0
        # (Kafka's acknowledgement of a batch's messages, its next offsets), in batch order
        self._unacked: list[tuple[asyncio.Future[Any], dict[Any, int]]] = []
        self._acked: dict[Any, int] = {}  # offsets acknowledged, not committed yet
        self._next_commit = 0.0

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer

        config = self.runtime.config
        self._finished = asyncio.Event()
        consumer = AIOKafkaConsumer(
            config.topics[METRICS], bootstrap_servers=config.bootstrap,
            group_id=f"{config.app_id}-metrics", enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            session_timeout_ms=int(config.session_timeout_s * 1000),
            heartbeat_interval_ms=int(min(3.0, config.session_timeout_s / 3) * 1000))
        try:
            await consumer.start()
            while not self._stopping:
                batch = await consumer.getmany(timeout_ms=100, max_records=config.batch_size)
                if batch:
                    await self.runtime.guarded(self._batch(consumer, batch))
                elif self._unacked or self._acked:
                    await self.runtime.guarded(self._settle(consumer))
            await self.runtime.guarded(self._settle(consumer, everything=True))
        finally:
            try:
                await consumer.stop()
            finally:
                self._finished.set()

    async def _batch(self, consumer: Any, batch: dict[Any, list[Any]]) -> None:
        from streams.agents import handle_record

        runtime = self.runtime
        letters = []
        handlers, owned = runtime.handlers, runtime.handlers.rollbacks
        for records in batch.values():
            for record in records:
                runtime.inbound += 1
                fast = fast_sample(handlers.permits.permits, record.value)
                if fast is not None:
                    events = owned.sample(fast[0], runtime.clock(), fast[1])
                    if any(e.type != "metric.sample" for e in events):
                        # a decision: on its topic now, not at the end of the batch
                        await runtime.send([])
                    if handlers.on_request is not None and record.headers:
                        from streams.worker_web import answer  # an HTTP request may await it

                        answer(handlers, record.headers, events)
                    continue
                _, letter = handle_record(
                    runtime.handlers, record.value, key=record.key, headers=record.headers,
                    origin=f"{record.topic}:{record.partition}:{record.offset}",
                    partition=record.partition, now=runtime.clock())
                if letter is not None:
                    runtime.rejected += 1
                    letters.append(letter)
        # In the ledger now; handed to the producer. Its offsets are committed once Kafka has
        # acknowledged its messages (and every earlier batch's), at most every COMMIT_EVERY_S:
        # meanwhile the next batches are judged (at most MAX_IN_FLIGHT unacknowledged).
        acked = await runtime.send(letters)
        self._unacked.append((acked, {tp: rs[-1].offset + 1 for tp, rs in batch.items()}))
        self.batches += 1
        await self._settle(consumer)

    async def _settle(self, consumer: Any, *, everything: bool = False) -> None:
        while self._unacked and (everything or self._unacked[0][0].done()
                                 or len(self._unacked) > MAX_IN_FLIGHT):
            acked, offsets = self._unacked.pop(0)
            await acked  # a failed send raises: fatal (guarded), nothing of it committed
            self._acked.update(offsets)
        now = asyncio.get_running_loop().time()
        if self._acked and (everything or now >= self._next_commit):
            offsets, self._acked = self._acked, {}
            self._next_commit = now + COMMIT_EVERY_S
            await consumer.commit(offsets)

    async def stop(self) -> None:
        """Finish the batch in hand (its messages sent, its offsets committed), then stop."""
        self._stopping = True
        if self._finished is not None:
            try:
                await asyncio.wait_for(self._finished.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("certify worker: the metrics reader did not stop in %.0f s",
                          STOP_TIMEOUT_S)
