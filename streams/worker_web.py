"""Kafka mode's HTTP API: `streams.web.create_app` mounted in the Faust worker's web server.

`certify worker` serves the same routes as `certify serve`, on Faust's port (--web-port, 6066),
next to Faust's own endpoints (`/`, `/router/`, ...: Faust keeps `/`; the dashboard is at
`/dashboard/`). The API's aiohttp application is a sub-application of Faust's
(`app.web.web_app`), matched by a rule that takes exactly the API's routes; Faust's
application gets the API's error middleware (JSON for every error, unknown paths included) and
its body limit.

Reads (permits, decisions, pending approvals, healthz) are the worker's live state: the
handlers the agents run (`Runtime.handlers`), on the same event loop (Faust's web server runs
on the worker's loop: `web_in_thread` is off), so a read never sees half an event.

Writes keep the ledger's one writer and each partition's order: the HTTP API never records.
A write becomes the inbound record `certify produce` would send (the envelope, or a task's
bytes), keyed by subject, onto its inbound topic, with the header certify-request-id; the
agents handle it like any other record, and `streams.agents.handle_record` (or the metrics
reader's fast path, through `answer`) hands its outcome to `KafkaService.answered` (the
Pipeline's `on_request` hook), which resolves the request's
future. The handler then answers what embedded mode answers (the same code in streams/web.py,
awaiting `_done`). No answer within CERTIFY_HTTP_WAIT_S (10 s) -> 504 `kafka.timeout` (the
record is on its topic and will be handled: look the permit or decision up later); the
producer failing -> 503 `kafka.unavailable`.

Authorize goes the same way by default (an `authorization.requested` on <p>.executions): its
verdict and audit record are decided in partition order with the approvals and revocations of
the permit, and the inbound topics stay the complete log of inputs. That costs a round trip
through the broker and an agent's batch (measured here: p50 ~18 ms, p99 ~70 ms). With
CERTIFY_HTTP_AUTHORIZE=local the verdict is decided at once on the worker's live state, in this
process, as the worker's permit timers do: `Runtime.handlers.authorize` records the answer
through the same one ledger writer (no other writer, nothing interleaves on the one loop), and
the answer waits until Kafka acknowledged its events (`Runtime.flush`). The request itself is
then not on <p>.executions (its operation.authorized event is on <p>.permits and <p>.ledger).

Bodies refused at the edge (bad JSON, a bad schema, a permit request naming no decision) are
answered at once (400/422) and recorded the same way: the body goes to <p>.tasks with the
refusal in headers (certify-edge-code, -message, -kind), and the worker records it
(`edge_refusal`: input.rejected, or permit.request_refused) instead of handling it; the answer
waits until it is recorded (or the wait runs out: it is answered anyway).

Not here: POST /reports (a report is signed with the ledger's key and recorded as it is built:
`certify report` makes them), and the dashboard's DuckDB pages unless the worker publishes a
snapshot (--snapshot): the live DuckDB file belongs to the projector process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource

from events import MAX_EVENT_BYTES, Envelope, InputError, decode_json
from events.payloads import AuthorizationRequested
from rules.permits import Refusal
from streams.handlers import Outcome
from streams.handlers import Pipeline as Handlers
from streams.permit_service import Result, parse_model
from streams.topics import (
    EXECUTIONS,
    H_EDGE_CODE,
    H_EDGE_KIND,
    H_EDGE_MESSAGE,
    H_REQUEST,
    H_SOURCE,
    INBOUND,
    MAX_MESSAGE_BYTES,
    TASKS,
)
from streams.worker_io import encode_event, header

log = logging.getLogger("certify.worker.web")
WAIT_ENV = "CERTIFY_HTTP_WAIT_S"
AUTHORIZE_ENV = "CERTIFY_HTTP_AUTHORIZE"  # kafka (default) | local
DEFAULT_WAIT_S = 10.0
SETTLE_S = 5.0  # how long an edge refusal's answer waits for the record
PRODUCE_TIMEOUT_S = 15.0  # the producer's start, and Kafka's acknowledgement of a record
REQUEST_REFUSED = "permit.request_refused"
MAX_HEADER_TEXT = 1000
# inbound event type -> the short name of its topic (what `certify produce --topic` would use)
TOPIC_OF = {kind: spec.name for spec in INBOUND for kind in spec.accepts}

_pending: contextvars.ContextVar[list[asyncio.Future[Any]] | None] = contextvars.ContextVar(
    "certify_edge_records", default=None)


class KafkaUnavailable(Exception):
    """The request could not be produced, or the worker did not handle it in time."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Recorded(InputError):
    """Bad input the worker already recorded as rejected (not to be recorded again)."""


# ---- the worker side: records refused at the edge ---------------------------------------------


def edge_refusal(handlers: Handlers, raw: bytes, source: str, headers: Any, now: datetime
                 ) -> Outcome:
    """A record the HTTP API refused at its edge (headers certify-edge-*): recorded as refused,
    never handled as input. Called by `streams.agents.handle_record`."""
    code = header(headers, H_EDGE_CODE) or "input.schema"
    message = header(headers, H_EDGE_MESSAGE) or code
    if header(headers, H_EDGE_KIND) == REQUEST_REFUSED:
        try:
            body = decode_json(raw)
        except InputError:
            body = None
        if isinstance(body, dict):
            attempt = header(headers, H_REQUEST) or hashlib.sha256(raw).hexdigest()[:32]
            result = handlers.permits.refuse_request(body, Refusal(code, message), now,
                                                     attempt=attempt[:40])
            return Outcome(result.events, refusal=result.refusal, result=result)
    return handlers.reject(raw, source, InputError(code, message), now)


def answer(handlers: Handlers, headers: Any, events: list[Envelope]) -> None:
    """The metrics reader's fast path (streams/metrics_intake.py: a sample the rollback service
    judges without `handle_record`) tells an awaiting HTTP request what it recorded."""
    request_id = header(headers, H_REQUEST)
    if request_id is not None and handlers.on_request is not None:
        handlers.on_request(request_id, Outcome(events))


# ---- the HTTP side ----------------------------------------------------------------------------


class _Permits:
    """The permit service as the API sees it: live reads; a refused request is recorded by the
    worker (see `edge_refusal`)."""

    def __init__(self, service: KafkaService) -> None:
        self._service = service

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service.handlers.permits, name)

    def refuse_request(self, body: dict[str, Any], refusal: Refusal,
                       now: datetime | None = None) -> None:
        raw = json.dumps(body, sort_keys=True, default=str).encode()
        key = f"request-{hashlib.sha256(raw).hexdigest()[:16]}"  # refuse_request's subject
        self._service.edge(raw, key, "http:/v1/permits", refusal.code, refusal.message,
                           kind=REQUEST_REFUSED)


class KafkaService:
    """What streams.web's handlers call in Kafka mode, in place of the Pipeline: reads go to
    the worker's handlers; writes are produced onto inbound topics and answered once the worker
    handled them (awaitables: streams.web awaits them with `_done`)."""

    def __init__(self, runtime: Any, *, wait_s: float = DEFAULT_WAIT_S,
                 authorize_local: bool = False,
                 producer_factory: Callable[[], Any] | None = None) -> None:
        self.runtime = runtime
        self.handlers: Handlers = runtime.handlers
        self.names = runtime.config.topics
        self.bootstrap = runtime.config.bootstrap
        self.wait_s = wait_s
        self.authorize_local = authorize_local
        self.permits = _Permits(self)
        self.waiting: dict[str, asyncio.Future[Outcome]] = {}
        self.produced = 0
        self.timeouts = 0
        self._producer: Any = None
        self._producer_factory = producer_factory
        self._lock: asyncio.Lock | None = None
        self.handlers.on_request = self.answered

    def __getattr__(self, name: str) -> Any:
        if name in ("record", "_record"):  # never a direct write (dashboard.make_report asks)
            raise AttributeError(name)
        return getattr(self.handlers, name)

    # --- the hook: the agents handled a record an HTTP request awaits --------------------------

    def answered(self, request_id: str, outcome: Outcome) -> None:
        future = self.waiting.get(request_id)
        if future is not None and not future.done():
            future.set_result(outcome)

    # --- writes ------------------------------------------------------------------------------

    def handle_raw(self, raw: bytes, source: str, now: datetime | None = None
                   ) -> asyncio.Future[Outcome]:
        """POST /v1/tasks: the body as it came (a task or a task.submitted), on <p>.tasks."""
        from streams.cli_kafka import record_key

        return self._submit(TASKS, record_key(raw), raw, source)

    def handle_event(self, event: Envelope, now: datetime | None = None, *,
                     raw: bytes | None = None, source: str = "event"
                     ) -> asyncio.Future[Outcome]:
        topic = TOPIC_OF.get(event.type, TASKS)
        return self._submit(topic, event.subject.encode(), encode_event(event), source)

    def authorize(self, body: Any, now: datetime | None = None) -> Awaitable[Result]:
        """POST /v1/authorize as an authorization.requested on <p>.executions, keyed by its
        permit (or worker): decided in order with that permit's approvals and revocations."""
        if self.authorize_local:
            return self._authorize_here(body, now)
        if not isinstance(body, dict):
            raise InputError("input.schema", "input: expected a JSON object")
        data = {"request_id": body.get("request_id") or str(uuid.uuid4()),
                **{k: body[k] for k in ("worker", "permit_id", "operation", "task") if k in body}}
        request = parse_model(AuthorizationRequested, data)
        worker_id = request.worker.get("id")
        subject = request.permit_id or (worker_id if isinstance(worker_id, str) else "")
        if not subject:
            raise InputError("input.schema", "worker.id: required")
        now = now if now is not None else self.handlers.now_fn()
        event = Envelope(event_id=f"authz:{request.request_id}", type="authorization.requested",
                         occurred_at=now, producer="http", subject=subject[:200],
                         payload=request.model_dump(mode="json"))
        answer = self._submit(EXECUTIONS, event.subject.encode(), encode_event(event),
                              "http:/v1/authorize")
        return self._verdict(answer)

    async def _authorize_here(self, body: Any, now: datetime | None) -> Result:
        """CERTIFY_HTTP_AUTHORIZE=local: decided and recorded here, answered once published."""
        result = self.handlers.authorize(body, now)  # InputError: post_authorize records it
        await self.runtime.flush()
        return result

    async def _verdict(self, answer: Awaitable[Outcome]) -> Result:
        outcome = await answer
        if outcome.rejected is not None:  # the worker recorded it: not again (post_authorize)
            raise Recorded(outcome.rejected.code, outcome.rejected.message)
        result = outcome.result or Result(outcome.events)
        if result.verdict is None:
            raise InputError("input.schema", result.refusal.message if result.refusal else
                             "the worker gave no verdict for this request")
        return result

    def reject(self, raw: bytes, source: str, error: InputError, now: datetime | None = None,
               subject: str | None = None) -> None:
        """Bad input seen at the edge: recorded by the worker (the answer waits for it)."""
        if isinstance(error, Recorded):
            return
        key = subject or f"rejected-{hashlib.sha256(raw).hexdigest()[:16]}"
        self.edge(raw, key, source, error.code, error.message)

    def edge(self, raw: bytes, key: str, source: str, code: str, message: str, *,
             kind: str = "input.rejected") -> None:
        headers = [(H_EDGE_CODE, code.encode()),
                   (H_EDGE_MESSAGE, message[:MAX_HEADER_TEXT].encode()),
                   (H_EDGE_KIND, kind.encode())]
        if len(raw) > MAX_MESSAGE_BYTES:  # what Kafka cannot carry: an excerpt is recorded
            raw = raw[:MAX_EVENT_BYTES]
        task = self._submit(TASKS, key.encode(), raw, source, headers)
        pending = _pending.get()
        if pending is not None:
            pending.append(task)
        task.add_done_callback(_log_failure)

    def _submit(self, topic: str, key: bytes, value: bytes, source: str,
                headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Outcome]:
        """Produce one record (in call order: one lock, FIFO) and await the worker's outcome."""
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        all_headers = [(H_SOURCE, source.encode()), (H_REQUEST, request_id.encode()),
                       *(headers or [])]
        return asyncio.ensure_future(self._round_trip(topic, key, value, all_headers,
                                                      request_id, future))

    async def _round_trip(self, topic: str, key: bytes, value: bytes,
                          headers: list[tuple[str, bytes]], request_id: str,
                          future: asyncio.Future[Outcome]) -> Outcome:
        from aiokafka.errors import KafkaError

        name = self.names[topic]
        try:
            try:
                if self._lock is None:
                    self._lock = asyncio.Lock()
                async with self._lock:
                    producer = await self._started()
                    sent = await producer.send(name, value, key=key, headers=headers)
                await sent
                self.produced += 1
            except (TimeoutError, KafkaError, OSError) as error:
                log.error("certify worker web: cannot produce to %s: %s", name, error)
                raise KafkaUnavailable("kafka.unavailable", f"cannot produce to {name}: "
                                       f"{type(error).__name__}", 503) from None
            try:
                return await asyncio.wait_for(asyncio.shield(future), self.wait_s)
            except TimeoutError:
                self.timeouts += 1
                raise KafkaUnavailable(
                    "kafka.timeout", f"the worker has not handled this request within "
                    f"{self.wait_s:g} s; it is on {name} (certify-request-id {request_id}) and "
                    "will be handled: look its result up later", 504) from None
        finally:
            self.waiting.pop(request_id, None)

    async def _started(self) -> Any:
        if self._producer is None:
            if self._producer_factory is not None:
                producer = self._producer_factory()
            else:
                from aiokafka import AIOKafkaProducer

                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, enable_idempotence=True, acks="all",
                    linger_ms=0, max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
                    request_timeout_ms=int(PRODUCE_TIMEOUT_S * 1000))
            await asyncio.wait_for(producer.start(), PRODUCE_TIMEOUT_S)
            self._producer = producer
        return self._producer

    async def close(self, _: web.Application | None = None) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.cancel()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self.handlers.on_request == self.answered:
            self.handlers.on_request = None


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("certify worker web: a refused body was not recorded: %s", task.exception())


@web.middleware
async def settle(request: web.Request,
                 handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    """Kafka-mode errors as JSON (503/504), and refused bodies recorded before the answer."""
    if request.method == "POST" and request.path == "/reports":
        return _error("reports.not_here", "reports are signed and recorded as they are made: "
                      "make them with `certify report` in Kafka mode", 501)
    pending: list[asyncio.Future[Any]] = []
    token = _pending.set(pending)
    try:
        return await handler(request)
    except KafkaUnavailable as error:
        return _error(error.code, error.message, error.status)
    finally:
        _pending.reset(token)
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_S)


def _error(code: str, message: str, status: int) -> web.Response:
    from streams.web import error_response

    return error_response(code, message, status)


class ApiRoutes(AbstractRuleMatching):
    """Matches the requests the API has a route for (any method: a wrong one gets its JSON
    405), except `/`, which stays Faust's."""

    def __init__(self, api: web.Application) -> None:
        self.api = api

    async def match(self, request: web.Request) -> bool:
        if request.path == "/":
            return False
        info = await self.api.router.resolve(request)
        problem = info.http_exception
        return problem is None or isinstance(problem, web.HTTPMethodNotAllowed)

    def get_info(self) -> dict[str, Any]:
        return {"rule": "the certify API's routes"}

    @property
    def canonical(self) -> str:
        return "certify-api"


def wait_seconds() -> float:
    value = os.environ.get(WAIT_ENV)
    if not value:
        return DEFAULT_WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{WAIT_ENV}: not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"{WAIT_ENV}: must be positive")
    return seconds


def authorize_locally() -> bool:
    value = (os.environ.get(AUTHORIZE_ENV) or "kafka").strip().lower()
    if value not in ("kafka", "local"):
        raise ValueError(f"{AUTHORIZE_ENV}: kafka or local, not {value!r}")
    return value == "local"


def mount(app: Any, runtime: Any, *, wait_s: float | None = None,
          authorize_local: bool | None = None) -> web.Application:
    """Mount the API in `app`'s (Faust's) web server, over `runtime` (streams.agents.Runtime).
    Call after `install_agents`, before the worker starts; returns the API's application."""
    from streams import dashboard
    from streams.web import create_app, errors

    if app.conf.web_in_thread:
        raise ValueError("the API needs Faust's web server on the worker's loop "
                         "(web_in_thread off)")
    if "web" in app.__dict__:
        raise RuntimeError("mount the API before Faust's web server is created (app.web)")
    # Faust's own aiohttp application (faust.web.drivers.aiohttp.Web.__init__ reads these):
    # the API's body limit (aiohttp reads it from the root app) and JSON errors everywhere.
    # (build_app sets none of its own; reading the setting first would make Faust warn)
    app.conf.web_application_options = {"client_max_size": MAX_EVENT_BYTES,
                                         "middlewares": [errors]}
    service = KafkaService(
        runtime, wait_s=wait_s if wait_s is not None else wait_seconds(),
        authorize_local=authorize_local if authorize_local is not None else authorize_locally())
    api = create_app(service)  # type: ignore[arg-type]  # no ticker: the agents own the timers
    api.middlewares.append(settle)
    api.on_cleanup.append(service.close)
    settings = runtime.config.settings
    trusted: list[str] = []
    with contextlib.suppress(Exception):
        trusted.append(runtime.ledger.signer.vkey())
    snapshot = runtime.config.snapshot
    dashboard.configure(api, reader=_snapshot_reader(Path(snapshot)) if snapshot else None,
                        ledger_dir=Path(settings.ledger_dir), data_dir=Path(settings.data_dir),
                        trusted=trusted)
    root: web.Application = app.web.web_app
    # A sub-application matched by a rule (as Application.add_domain does, with our rule):
    # the API's middlewares and cleanup run for its routes; Faust's routes stay as they are.
    # (`_add_subapp` is what add_domain and add_subapp call; aiohttp has no public way to give
    # a rule of one's own. tests/test_kafka_web.py checks that both sides still answer.)
    root._add_subapp(lambda: MatchedSubAppResource(ApiRoutes(api), api), api)
    runtime.web_service = service
    return api


def _snapshot_reader(path: Path) -> Callable[[], Any]:
    def connect() -> Any:
        import duckdb

        from streams.dashboard import Unavailable

        if not path.exists():
            raise Unavailable("dashboard.no_data", "no DuckDB snapshot yet (the worker "
                              "publishes one at most every CERTIFY_SNAPSHOT_INTERVAL_S)")
        return duckdb.connect(str(path), read_only=True)

    return connect
