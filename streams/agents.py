"""The Faust agents: short loops over the handlers that the embedded runner uses
(`streams.handlers.Pipeline`: checker, permit and rollback services, over one `record`).

    certifier  <p>.tasks -> handlers -> every event into the ledger -> <p>.ledger (each entry),
               <p>.decisions (each decision), <p>.permits / <p>.rollbacks (their events);
               bad input -> an input.rejected event in the ledger, and the original bytes on
               <p>.dead-letter with the reason in headers
    intake     <p>.approvals, <p>.executions -> the same handlers (permit and rollback
               services) -> the same outputs
    metrics    <p>.metrics, read by a plain aiokafka consumer (streams/metrics_intake.py: no
               Faust per-event cost at thousands of samples/s) -> the same handlers
    timers     permit deadlines/expiries/override ends (1 s), checkpoint signing

The ledger writer is not an agent but part of this process (streams/worker_ledger.py): the
process that runs the agents is the ledger's one writer, so an event goes from the handler to
its ledger partition partition_for(subject) directly, which is the partition its subject's key
has on every topic and in embedded mode. The DuckDB projector is a child process, handed every
appended entry over a pipe (streams/worker_projector.py).

Commit ordering (at-least-once with idempotent appends, not Faust's exactly-once): an agent
takes a batch; appends every resulting event to the ledger (the OS has the bytes when append
returns); hands decisions, ledger entries and dead letters to the producer, in recording order,
and takes its next batch meanwhile; each record keeps one reference of ours on its Faust
message until Kafka acknowledged its batch (and every batch before it), so Faust acks it and
commits its offset only then. A SIGKILL
at any point loses nothing: uncommitted records are read again, the handler makes the same
event ids from the same bytes, and the ledger refuses a second copy of an id. Failures other
than bad input (ledger I/O, the broker refusing a send) end the process at once (`on_fatal`), so
Faust never acks a half-done batch; the supervisor restarts it. Bad input never gets that far.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from events import InputError, utc_now
from ledger import LedgerError
from rules.policy import Policy
from streams.handlers import Outcome
from streams.handlers import Pipeline as Handlers
from streams.metrics_intake import MetricsReader
from streams.topics import (
    APPROVALS,
    DEAD_LETTER,
    EXECUTIONS,
    H_EDGE_CODE,
    H_ORIGIN,
    H_REASON,
    H_REASON_CODE,
    H_REJECTION_ID,
    H_REQUEST,
    H_SOURCE,
    TASKS,
)
from streams.worker_config import KafkaSettings
from streams.worker_io import Outgoing, Publisher, header
from streams.worker_ledger import LedgerWriter
from streams.worker_projector import Progress, ProjectorProcess

log = logging.getLogger("certify.worker")
PERMIT_TICK_S = 1.0
MAX_IN_FLIGHT = 4  # batches handed to the producer and not yet acknowledged by Kafka
EXIT_FATAL = 70  # EX_SOFTWARE; docker-compose.yml's `restart:` starts the worker again


# ---- one inbound record ---------------------------------------------------------------------


def dead_letter(outcome: Outcome, raw: bytes, *, key: bytes | None, source: str, origin: str,
                partition: int) -> Outgoing | None:
    """A rejected record's original bytes for <p>.dead-letter, the reason in headers."""
    if outcome.rejected is None:
        return None
    why = outcome.rejected
    rejection_id = outcome.events[0].event_id if outcome.events else ""
    return Outgoing(DEAD_LETTER, key, raw, partition, (
        (H_REASON_CODE, why.code.encode()),
        (H_REASON, why.message.encode()),
        (H_SOURCE, source.encode()),
        (H_ORIGIN, origin.encode()),
        (H_REJECTION_ID, rejection_id.encode()),
    ))


def handle_record(handlers: Handlers, raw: bytes | None, *, key: bytes | None, headers: Any,
                  origin: str, partition: int, now: datetime) -> tuple[Outcome, Outgoing | None]:
    """One inbound record through the embedded runner's handlers (which record its events
    through the ledger writer) -> its outcome and its dead letter, if it was rejected.

    Never raises on bad input; a record that makes a handler fail is rejected too (a poison
    record must not crash-loop the agent). Ledger failures do raise: they are fatal.
    The record is named `source`: the certify-source header if its producer set one (`certify
    produce` sets file:line, as `certify run --events FILE` names records), else `origin`
    (topic:partition:offset); a rejection's event id derives from it.
    """
    raw = raw if raw is not None else b""
    source = header(headers, H_SOURCE) or origin
    try:
        if headers and header(headers, H_EDGE_CODE) is not None:  # refused by the HTTP API
            from streams.worker_web import edge_refusal

            outcome = edge_refusal(handlers, raw, source, headers, now)
        else:
            outcome = handlers.handle_raw(raw, source, now)
    except LedgerError:
        raise
    except Exception as error:  # noqa: BLE001
        log.exception("certify worker: handling %s failed; rejecting it", origin)
        problem = InputError("input.unprocessable", f"internal error while handling: "
                             f"{type(error).__name__}: {error}"[:500])
        outcome = handlers.reject(raw, source, problem, now)
    if headers and handlers.on_request is not None:  # an HTTP request awaits it (worker_web)
        request_id = header(headers, H_REQUEST)
        if request_id is not None:
            handlers.on_request(request_id, outcome)
    return outcome, dead_letter(outcome, raw, key=key, source=source, origin=origin,
                                partition=partition)


# ---- what the agents share --------------------------------------------------------------------


def exit_now(error: BaseException) -> None:
    log.critical("certify worker: fatal: %s: %s (exiting; uncommitted input is read again "
                 "on restart)", type(error).__name__, error, exc_info=error)
    print(f"certify worker: fatal: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    os._exit(EXIT_FATAL)


class Runtime:
    """What the agents share: the handlers (checker + permit service, state rebuilt from the
    ledger at start, as in embedded mode), the ledger (this process is its one writer:
    Ledger.open takes a lock), the projector and the publisher. Opened before the worker
    starts, closed after it stopped."""

    def __init__(self, config: KafkaSettings, policy: Policy, *,
                 clock: Callable[[], datetime] = utc_now,
                 on_fatal: Callable[[BaseException], None] = exit_now,
                 on_projected: Progress | None = None) -> None:
        from streams.embedded import ledger_events, open_ledger

        settings = config.settings
        self.config = config
        self.clock = clock
        self.on_fatal = on_fatal
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = open_ledger(settings)
        try:
            self.writer = LedgerWriter(self.ledger, settings.partitions)
            self.handlers = Handlers(policy, self.writer.record, now_fn=clock)
            self.handlers.load(ledger_events(settings.ledger_dir, self.ledger.partitions))
            self.publisher = Publisher(config.bootstrap, config.topics)
            self.projection: ProjectorProcess | None = None
            if config.projector:
                self.projection = ProjectorProcess(
                    settings.ledger_dir, settings.duckdb_path, config.projector_interval_s,
                    snapshot=config.snapshot, snapshot_interval_s=config.snapshot_interval_s,
                    on_progress=on_projected, on_exit=self._projector_died)
                self.writer.fresh = []
                if not self.projection.wait_ready():
                    self.projection.close(timeout_s=10)
                    raise RuntimeError("the DuckDB projector did not start (see its error)")
        except BaseException:
            self.ledger.close()
            raise
        self.inbound = 0
        self.rejected = 0
        self._closed = False
        self._send_lock = asyncio.Lock()
        self._sent: asyncio.Future[None] | None = None  # the last send (covers all before)
        self._in_flight: list[asyncio.Future[None]] = []

    def _projector_died(self, code: int) -> None:
        self.on_fatal(RuntimeError(f"the DuckDB projector exited with {code}"))

    async def aclose(self) -> None:
        """Close from inside the event loop, after the app stopped (tests, benchmarks)."""
        await self.publisher.stop()
        self.close()

    def close(self) -> None:
        """Sign every partition, release the ledger; the projector's last catch-up."""
        if self._closed:
            return
        self._closed = True
        try:
            self.ledger.close()
        finally:
            if self.projection is not None and self.projection.close():
                raise RuntimeError("the DuckDB projector failed (see its error above)")

    async def guarded(self, work: Awaitable[None]) -> None:
        """Run one batch to its end even if the agent is cancelled meanwhile (a stopping Faust
        acks the batch, so it must be done); on any failure, end before the batch is acked."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                self.on_fatal(task.exception())  # type: ignore[arg-type]
            raise
        except Exception as error:  # noqa: BLE001 - anything here means: do not ack
            self.on_fatal(error)
            raise

    async def inbound_batch(self, records: Sequence[Any]) -> None:
        """Faust events of inbound topics -> ledger -> Kafka. Returns once the batch is in the
        ledger and its messages are handed to the producer; its records are acked (and so
        committed, later) only when Kafka has acknowledged every message (see `_ack_when`)."""
        for record in records:
            # one reference of ours: Faust's ack when this returns is not the last one
            record.message.incref()
        letters: list[Outgoing] = []
        for record in records:
            message = record.message
            outcome, letter = handle_record(
                self.handlers, message.value, key=message.key, headers=message.headers,
                origin=f"{message.topic}:{message.partition}:{message.offset}",
                partition=message.partition, now=self.clock())
            self.inbound += 1
            if letter is not None:
                self.rejected += 1
                letters.append(letter)
        # Every event is in the ledger now (the writer appended it when the handlers recorded
        # it): a decision that masters can read is already on the record.
        acked = await self.send(letters)
        self._ack_when(acked, records)
        while len(self._in_flight) > MAX_IN_FLIGHT:
            await asyncio.wait([self._in_flight[0]])

    def _ack_when(self, acked: asyncio.Future[None], records: Sequence[Any]) -> None:
        """Ack `records` (our reference: the last one) once `acked` is done; if it failed,
        never (fatal: the process ends, the records are read again)."""
        self._in_flight.append(acked)

        def done(future: asyncio.Future[None]) -> None:
            self._in_flight.remove(future)
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or error is not None:
                self.on_fatal(error or asyncio.CancelledError("publishing was cancelled"))
                return
            for record in records:
                record.ack()

        acked.add_done_callback(done)

    async def send(self, extra: Sequence[Outgoing] = ()) -> asyncio.Future[None]:
        """Hand what the writer queued (and `extra`) to the producer, in recording order;
        returns a future done when Kafka acknowledged it and everything sent before it."""
        async with self._send_lock:
            out = self.writer.take()
            if self.projection is not None:
                self.projection.hand_over(self.writer.take_fresh())
            messages = [*out, *extra]
            if messages:
                mine = await self.publisher.enqueue(messages)
                # a flush whose messages an earlier flush took (two agents) waits for that one
                self._sent = asyncio.ensure_future(_after(self._sent, mine))
            elif self._sent is None:
                self._sent = asyncio.ensure_future(_after(None, None))
            return self._sent

    async def flush(self, extra: Sequence[Outgoing] = ()) -> None:
        """Publish what the writer queued (and `extra`); returns when Kafka has it all."""
        await (await self.send(extra))

    async def tick(self) -> None:
        """Due permit timers (deadlines, expiries, override ends) -> recorded, published."""
        self.handlers.tick(self.clock())
        await self.flush()


async def _after(first: asyncio.Future[None] | None, second: asyncio.Future[Any] | None
                 ) -> None:
    if first is not None:
        await first
    if second is not None:
        await second


# ---- the agents -------------------------------------------------------------------------------


def install_agents(app: Any, runtime: Runtime) -> dict[str, Any]:
    """Declare the agents (and the projector task, the permit and checkpoint timers) on `app`;
    returns the agents by name. Every agent: concurrency=1 (ordering per partition; faust
    #606); its batches run through `Runtime.guarded`.

    The registry for agents of later issues: the permit service already runs inside the
    handlers (approvals, executions, metrics reach it through `intake`). A dedicated permit or
    rollback agent (e.g. consuming <p>.decisions, or metrics windows in a Faust table) goes
    here, with concurrency=1, its batches through `runtime.guarded`, and its events recorded
    through `runtime.handlers` (or `runtime.writer.record`) and sent with `runtime.flush`.
    """
    config = runtime.config
    names = config.topics
    size, within = config.batch_size, config.batch_within_s

    def raw_topic(*topic_names: str) -> Any:
        return app.topic(*topic_names, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")

    @app.agent(raw_topic(names[TASKS]), name="certifier", concurrency=1)
    async def certifier(stream: Any) -> None:
        async for batch in stream.take_events(size, within=within):
            await runtime.guarded(runtime.inbound_batch(batch))

    @app.agent(raw_topic(names[APPROVALS], names[EXECUTIONS]), name="intake", concurrency=1)
    async def intake(stream: Any) -> None:
        async for batch in stream.take_events(size, within=within):
            await runtime.guarded(runtime.inbound_batch(batch))

    metrics = MetricsReader(runtime)  # <p>.metrics: same handlers, no Faust per-event cost

    @app.task
    async def metrics_reader() -> None:
        await metrics.run()

    @app.timer(interval=PERMIT_TICK_S)
    async def permit_timers() -> None:
        """Approval deadlines, permit expiries, override ends: due timers become events."""
        await runtime.guarded(runtime.tick())

    @app.timer(interval=max(0.05, min(1.0, config.settings.checkpoint_interval_s / 4)))
    async def checkpoints() -> None:
        """Every entry is covered by a signed checkpoint within the configured interval."""
        try:
            runtime.ledger.maybe_checkpoint()
        except Exception as error:  # noqa: BLE001 - the ledger cannot sign: stop
            runtime.on_fatal(error)
            raise

    @app.on_before_shutdown.connect
    async def stop_publisher(app: Any, **kwargs: Any) -> None:
        # Faust has stopped its consumer and waited for every taken batch to be acked
        await metrics.stop()  # (its last batch sent and committed)
        await runtime.publisher.stop()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: Any, assigned: set[Any], **kwargs: Any) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == names[TASKS]}
        if mine and mine != set(range(config.settings.partitions)):
            log.error("certify worker: given tasks partitions %s of %d: another worker shares "
                      "app id %r. One worker writes one ledger: run one worker per app id.",
                      sorted(mine), config.settings.partitions, config.app_id)
        print(f"certify worker: assigned {len(assigned)} topic partitions", file=sys.stderr,
              flush=True)

    return {"certifier": certifier, "intake": intake}
