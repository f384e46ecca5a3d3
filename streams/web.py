"""The HTTP API: one aiohttp application factory, served by `certify serve` (embedded mode) and
mounted in the Faust worker's web server (Kafka mode: streams/worker_web.py, whose service
produces each write onto its inbound topic and answers once the worker handled it; the
handlers here await writes with `_done`).

Routes (JSON in, JSON out; docs/permits.md has the bodies):

    POST /v1/tasks                      submit a task -> the `certify check` decision (+ ids)
    GET  /v1/decisions/{task_id}        the decision of a recorded task
    POST /v1/permits                    request a permit
    GET  /v1/permits?state=pending      permits by state (pending = awaiting approvals)
    GET  /v1/permits/{id}               one permit: state, scope, quorum, approvals, history
    POST /v1/permits/{id}/approvals     signed approve / deny / resume
    POST /v1/permits/{id}/revocations   signed revoke
    POST /v1/permits/{id}/renewals      renew (standard/advanced: then signed approvals of it)
    POST /v1/permits/{id}/closure       close after execution
    POST /v1/executions                 a worker's execution report
    POST /v1/authorize                  may this worker do this operation now?
    POST /v1/overrides                  signed emergency override
    POST /v1/overrides/{id}/reviews     the post-incident review
    POST /v1/metrics                    one metric sample or a list (docs/rollback.md §6)
    POST /v1/alerts/alertmanager        an Alertmanager webhook (payload version 4)
    GET  /healthz
    GET  /metrics                       system metrics, Prometheus text (streams/dashboard.py)
    GET  /, /dashboard/                 the dashboard; /dashboard/api/{overview,audit,metrics}
    GET, POST /reports                  compliance reports (docs/reports.md)

Every error is `{"error": {"code": ..., "message": ...}}` with a stable code; `STATUS` is the
one table from codes to statuses. A middleware catches everything: no stack trace ever leaves.
Bad bodies are also recorded in the ledger (`input.rejected`), refusals as their own events.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from events import MAX_EVENT_BYTES, Envelope, InputError, decode_json, format_time
from events.envelope import MAX_ID_LENGTH
from events.payloads import (
    ApprovalSigned,
    ExecutionReported,
    MetricSample,
    OverrideRequested,
    OverrideReviewSubmitted,
    PermitClosureRequested,
    PermitRenewalRequested,
    PermitRequested,
)
from events.signing import SigningError, request_sha256
from rules.permits import Refusal, default_window
from streams.alertmanager import from_webhook
from streams.handlers import Outcome, Pipeline
from streams.permit_service import Result, parse_model

log = logging.getLogger("certify.web")
SERVICE = web.AppKey("service", Pipeline)
MAX_LIST = 1000

# error code -> HTTP status; codes not listed fall back on their prefix (see status_for)
STATUS = {
    "input.oversize": 413, "http.not_found": 404, "http.method_not_allowed": 405,
    "decision.unknown": 404, "permit.unknown": 404, "approval.unknown_permit": 404,
    "override.unknown": 404,
    "permit.id_conflict": 409, "override.id_conflict": 409, "permit.transition_refused": 409,
    "permit.terminal": 409, "approval.not_in_review": 409, "approval.not_revocable": 409,
    "approval.not_suspended": 409, "override.review_done": 409, "permit.renewal_pending": 409,
    "internal": 500,
}
PREFIX_STATUS = {"input": 400, "http": 400, "approval": 422, "permit": 422, "override": 422,
                 "alertmanager": 400}


def status_for(code: str) -> int:
    return STATUS.get(code) or PREFIX_STATUS.get(code.split(".", 1)[0], 422)


def error_response(code: str, message: str, status: int | None = None,
                   headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status or status_for(code), headers=headers)


class Refused(Exception):
    def __init__(self, refusal: Refusal, **extra: Any) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
        self.extra = extra


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = {404: "http.not_found", 405: "http.method_not_allowed",
                413: "input.oversize"}.get(error.status, f"http.{error.status}")
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        message = {404: f"no route {request.method} {request.path}",
                   405: f"{request.method} is not allowed on {request.path}",
                   413: f"body larger than {MAX_EVENT_BYTES} bytes"}.get(error.status,
                                                                         error.reason)
        return error_response(code, message, error.status, headers)
    except InputError as error:
        return error_response(error.code, error.message)
    except Refused as refused:
        return error_response(refused.refusal.code, refused.refusal.message, **refused.extra)
    except Exception:  # the promise: never a stack trace to the caller
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response("internal", "internal error (see the server log)", 500)


# --- helpers -------------------------------------------------------------------------------


def _service(request: web.Request) -> Pipeline:
    return request.app[SERVICE]


async def _done(answer: Any) -> Any:
    """What a write answered. The embedded Pipeline answers at once; in Kafka mode the service
    (streams/worker_web.py) answers an awaitable: the record produced onto its inbound topic,
    done when the worker has handled it."""
    return await answer if inspect.isawaitable(answer) else answer


def _now(request: web.Request) -> datetime:
    return _service(request).now_fn()


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not value or len(value) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"{name}: an id of 1..{MAX_ID_LENGTH} characters")
    return value


async def _body(request: web.Request) -> tuple[bytes, Any]:
    raw = await request.read()  # client_max_size -> 413 before we see it
    try:
        return raw, decode_json(raw)
    except InputError as error:
        _service(request).reject(raw, f"http:{request.path}", error, _now(request))
        raise


def _object(request: web.Request, raw: bytes, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        error = InputError("input.schema", "input: expected a JSON object")
        _service(request).reject(raw, f"http:{request.path}", error, _now(request))
        raise error
    return document


def _validated(request: web.Request, raw: bytes, model: type, document: Any) -> Any:
    try:
        return parse_model(model, document)
    except InputError as error:
        _service(request).reject(raw, f"http:{request.path}", error, _now(request))
        raise


def _envelope(kind: str, subject: str, payload: Any, now: datetime) -> Envelope:
    return Envelope(type=kind, occurred_at=now, producer="http", subject=subject,
                    payload=payload.model_dump(mode="json"))


def _outcome(outcome: Outcome) -> Result:
    if outcome.rejected is not None:
        raise InputError(outcome.rejected.code, outcome.rejected.message)
    result = outcome.result or Result(outcome.events)
    if result.refusal is not None:
        raise Refused(result.refusal, event_ids=[e.event_id for e in result.events])
    return result


def _permit_json(request: web.Request, permit_id: str, result: Result, status: int = 200
                 ) -> web.Response:
    view = _service(request).permits.view(permit_id)
    if view is None:
        raise Refused(Refusal("permit.unknown", f"no permit {permit_id!r}"))
    return web.json_response({"permit": view, "event_ids": [e.event_id for e in result.events]},
                             status=status)


# --- tasks and decisions ---------------------------------------------------------------------


async def post_task(request: web.Request) -> web.Response:
    raw, document = await _body(request)
    if isinstance(document, dict) and "type" in document and \
            document.get("type") != "task.submitted":
        error = InputError("input.schema", "type: /v1/tasks takes a task or a task.submitted "
                           "event")
        _service(request).reject(raw, "http:/v1/tasks", error, _now(request))
        raise error
    outcome = await _done(_service(request).handle_raw(raw, "http:/v1/tasks", _now(request)))
    result = _outcome(outcome)
    assert outcome.decision is not None
    report = outcome.decision.to_report()
    report["task_event_id"] = result.events[0].event_id
    report["decision_event_id"] = result.events[1].event_id
    return web.json_response(report)


async def get_decision(request: web.Request) -> web.Response:
    task_id = _id(request, "task_id")
    report = _service(request).decision_report(task_id)
    if report is None:
        raise Refused(Refusal("decision.unknown", f"no decision for task {task_id!r}"))
    return web.json_response(report)


# --- permits -----------------------------------------------------------------------------------


def build_request(body: dict[str, Any], pipe: Pipeline, now: datetime) -> PermitRequested:
    """A permit request from the HTTP/CLI body: the server fills what it knows (the decision,
    the level, the default window, the id and the hash) and checks a hash the client sent."""
    body = dict(body)
    task_id = body.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise InputError("input.schema", "task_id: required")
    decision_id = body.get("decision_event_id") or pipe.permits.latest_decision.get(task_id, "")
    decision = pipe.permits.decisions.get(decision_id) if isinstance(decision_id, str) else None
    if decision is None:
        refusal = Refusal("permit.unknown_decision",
                          f"no certification decision for task {task_id!r}: "
                          "submit the task first (POST /v1/tasks)")
        pipe.permits.refuse_request(body, refusal, now)
        raise Refused(refusal)
    gov = pipe.policy.governance
    ptype_name = body.get("permit_type")
    if not ptype_name and decision is not None and decision.level >= 1:
        ptype_name = gov.gate(decision.level).permit_type
    try:
        ptype = gov.permit_type(ptype_name) if isinstance(ptype_name, str) else None
    except KeyError:
        ptype = None
    scope = body.get("scope")
    if isinstance(scope, dict):
        scope = dict(scope)
        start = now
        if isinstance(scope.get("not_before"), str):
            try:
                start = datetime.fromisoformat(scope["not_before"].replace("Z", "+00:00"))
            except ValueError:
                raise InputError("input.schema", "scope.not_before: not an ISO-8601 time"
                                 ) from None
        scope.setdefault("not_before", format_time(start))
        if "not_after" not in scope and ptype is not None and start.tzinfo is not None:
            scope["not_after"] = format_time(default_window(ptype, start)[1])
    given_sha = body.get("request_sha256")
    level = max(ptype.level, decision.level) if ptype else decision.level
    data = {**body, "decision_event_id": decision_id, "permit_type": ptype_name or "",
            "level": body.get("level", level), "scope": scope,
            "request_sha256": "0" * 64}
    data.setdefault("permit_id", "")
    request = parse_model(PermitRequested, data)
    if not request.permit_id:
        digest = hashlib.sha256(json.dumps(request.model_dump(mode="json"), sort_keys=True)
                                .encode()).hexdigest()
        request = request.model_copy(update={"permit_id": f"prm-{digest[:16]}"})
    try:
        computed = request_sha256(request)
    except SigningError as error:
        raise InputError("input.schema", f"request: {error}") from None
    return request.model_copy(update={"request_sha256": given_sha or computed})


async def post_permit(request: web.Request) -> web.Response:
    raw, document = await _body(request)
    body = _object(request, raw, document)
    pipe, now = _service(request), _now(request)
    try:
        req = build_request(body, pipe, now)
    except InputError as error:
        pipe.reject(raw, "http:/v1/permits", error, now)
        raise
    if len(req.permit_id) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"permit_id: at most {MAX_ID_LENGTH} characters")
    outcome = await _done(pipe.handle_event(_envelope("permit.requested", req.permit_id, req,
                                                      now), now, raw=raw,
                                            source="http:/v1/permits"))
    result = _outcome(outcome)
    return _permit_json(request, req.permit_id, result, 200 if result.duplicate else 201)


async def list_permits(request: web.Request) -> web.Response:
    pipe = _service(request)
    state = request.query.get("state")
    states = set(pipe.policy.governance.permit_lifecycle.states) | {"pending"}
    if state is not None and state not in states:
        raise InputError("input.schema", f"state: one of {', '.join(sorted(states))}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InputError("input.schema", "limit: a whole number") from None
    if not 1 <= limit <= MAX_LIST:
        raise InputError("input.schema", f"limit: 1..{MAX_LIST}")
    permits = pipe.permits.query(state, limit)
    return web.json_response({"permits": permits, "count": len(permits)})


async def get_permit(request: web.Request) -> web.Response:
    permit_id = _id(request, "permit_id")
    view = _service(request).permits.view(permit_id)
    if view is None:
        raise Refused(Refusal("permit.unknown", f"no permit {permit_id!r}"))
    return web.json_response({"permit": view})


async def _signed(request: web.Request, allowed: tuple[str, ...], default: str | None
                  ) -> web.Response:
    permit_id = _id(request, "permit_id")
    raw, document = await _body(request)
    body = dict(_object(request, raw, document))
    pipe, now = _service(request), _now(request)
    if body.setdefault("permit_id", permit_id) != permit_id:
        error = InputError("input.schema", "permit_id: does not match the URL")
        pipe.reject(raw, f"http:{request.path}", error, now)
        raise error
    if default is not None:
        body.setdefault("decision", default)
    if body.get("decision") not in allowed:
        error = InputError("input.schema", f"decision: one of {', '.join(allowed)} here")
        pipe.reject(raw, f"http:{request.path}", error, now)
        raise error
    body.setdefault("signature", "")  # unsigned: refused (and recorded) as approval.unsigned
    body.setdefault("key_id", "")
    approval = _validated(request, raw, ApprovalSigned, body)
    outcome = await _done(pipe.handle_event(_envelope("approval.signed", permit_id, approval,
                                                      now), now, raw=raw,
                                            source=f"http:{request.path}"))
    return _permit_json(request, permit_id, _outcome(outcome))


async def post_approval(request: web.Request) -> web.Response:
    return await _signed(request, ("approve", "deny", "resume"), None)


async def post_revocation(request: web.Request) -> web.Response:
    return await _signed(request, ("revoke",), "revoke")


async def _permit_event(request: web.Request, kind: str, model: type) -> web.Response:
    permit_id = _id(request, "permit_id")
    raw, document = await _body(request)
    body = {**_object(request, raw, document), "permit_id": permit_id}
    payload = _validated(request, raw, model, body)
    pipe, now = _service(request), _now(request)
    outcome = await _done(pipe.handle_event(_envelope(kind, permit_id, payload, now), now,
                                            raw=raw, source=f"http:{request.path}"))
    return _permit_json(request, permit_id, _outcome(outcome))


async def post_renewal(request: web.Request) -> web.Response:
    return await _permit_event(request, "permit.renewal_requested", PermitRenewalRequested)


async def post_closure(request: web.Request) -> web.Response:
    return await _permit_event(request, "permit.closure_requested", PermitClosureRequested)


async def post_execution(request: web.Request) -> web.Response:
    raw, document = await _body(request)
    report = _validated(request, raw, ExecutionReported, _object(request, raw, document))
    pipe, now = _service(request), _now(request)
    subject = report.permit_id or report.execution_id
    if len(subject) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"permit_id: at most {MAX_ID_LENGTH} characters")
    result = _outcome(await _done(pipe.handle_event(
        _envelope("execution.reported", subject, report, now), now, raw=raw,
        source="http:/v1/executions")))
    view = pipe.permits.view(report.permit_id) if report.permit_id else None
    return web.json_response({"permit": view, "event_ids": [e.event_id for e in result.events]},
                             status=202)


# --- monitoring: samples and alerts ------------------------------------------------------------


def _sample_id(sample: MetricSample) -> str:
    """Same sample, same id: a retried POST is recorded once."""
    text = json.dumps(sample.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sample:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _monitoring_json(outcomes: list[Outcome], problems: list[str], **extra: Any
                     ) -> dict[str, Any]:
    events = [e for o in outcomes for e in o.events]
    return {**extra, "event_ids": [e.event_id for e in events],
            "rollbacks": [e.payload for e in events if e.type == "rollback.event"],
            "problems": problems}


async def post_metrics(request: web.Request) -> web.Response:
    """One sample `{key, metric, value|state, observed_at[, labels]}` or a list of them. In a
    list, bad samples are recorded as rejected and listed in `problems`; the others are kept."""
    raw, document = await _body(request)
    pipe, now, source = _service(request), _now(request), "http:/v1/metrics"
    if isinstance(document, dict):
        sample = _validated(request, raw, MetricSample, document)
        items: list[tuple[MetricSample, bytes]] = [(sample, raw)]
        problems: list[str] = []
    elif isinstance(document, list) and 0 < len(document) <= MAX_LIST:
        items, problems = [], []
        for index, item in enumerate(document):
            item_raw = json.dumps(item, sort_keys=True).encode()
            try:
                items.append((parse_model(MetricSample, item, f"{index}."), item_raw))
            except InputError as error:
                pipe.reject(item_raw, source, error, now)
                problems.append(error.message)
        if not items:
            raise InputError("input.schema", f"no valid sample: {problems[0]}")
    else:
        error = InputError("input.schema", "input: expected a sample object or a list of 1.."
                           f"{MAX_LIST} samples")
        pipe.reject(raw, source, error, now)
        raise error
    outcomes = []
    for sample, item_raw in items:
        envelope = Envelope(event_id=_sample_id(sample), type="metric.sample", occurred_at=now,
                            producer="http", subject=sample.key[:MAX_ID_LENGTH],
                            payload=sample.model_dump(mode="json"))
        outcomes.append(pipe.handle_event(envelope, now, raw=item_raw, source=source))
    outcomes = [await _done(outcome) for outcome in outcomes]  # (Kafka mode: all sent first)
    return web.json_response(_monitoring_json(outcomes, problems, accepted=len(items)),
                             status=202)


async def post_alertmanager(request: web.Request) -> web.Response:
    """Alertmanager's webhook: every readable alert is recorded and judged; the ones that could
    not be read are listed in `problems` and the body is recorded as rejected. 200 either way
    (a retry would not make a bad alert readable); 400 when the body is not a v4 payload."""
    raw, document = await _body(request)
    pipe, now, source = _service(request), _now(request), "http:/v1/alerts/alertmanager"
    try:
        result = from_webhook(document, now)
    except InputError as error:
        pipe.reject(raw, source, error, now)
        raise
    if result.problems:
        pipe.reject(raw, source, InputError("alertmanager.alert_rejected",
                                            "; ".join(result.problems)), now)
    outcomes = [pipe.handle_event(e, now, raw=json.dumps(e.to_record()).encode(), source=source)
                for e in result.events]
    outcomes = [await _done(outcome) for outcome in outcomes]
    alerts = sum(1 for e in result.events if e.type == "alert.received")
    return web.json_response(_monitoring_json(outcomes, result.problems, alerts=alerts))


# --- enforcement and overrides ---------------------------------------------------------------


async def post_authorize(request: web.Request) -> web.Response:
    raw, document = await _body(request)
    body = _object(request, raw, document)
    pipe, now = _service(request), _now(request)
    try:
        result = await _done(pipe.authorize(body, now))
    except InputError as error:
        pipe.reject(raw, "http:/v1/authorize", error, now)
        raise
    assert result.verdict is not None
    return web.json_response({**result.verdict.to_dict(),
                              "event_ids": [e.event_id for e in result.events]})


async def post_override(request: web.Request) -> web.Response:
    raw, document = await _body(request)
    body = dict(_object(request, raw, document))
    body.setdefault("signature", "")
    body.setdefault("key_id", "")
    override = _validated(request, raw, OverrideRequested, body)
    if len(override.override_id) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"override_id: at most {MAX_ID_LENGTH} characters")
    pipe, now = _service(request), _now(request)
    outcome = await _done(pipe.handle_event(
        _envelope("override.requested", override.override_id, override, now), now, raw=raw,
        source="http:/v1/overrides"))
    return _permit_json(request, override.override_id, _outcome(outcome), 201)


async def post_review(request: web.Request) -> web.Response:
    override_id = _id(request, "override_id")
    raw, document = await _body(request)
    body = {**_object(request, raw, document), "override_id": override_id}
    review = _validated(request, raw, OverrideReviewSubmitted, body)
    pipe, now = _service(request), _now(request)
    outcome = await _done(pipe.handle_event(
        _envelope("override.review_submitted", override_id, review, now), now, raw=raw,
        source=f"http:{request.path}"))
    return _permit_json(request, override_id, _outcome(outcome))


async def healthz(request: web.Request) -> web.Response:
    pipe = _service(request)
    return web.json_response({
        "status": "ok", "policy": {"version": pipe.policy.version, "sha256": pipe.policy.sha256},
        "permits": len(pipe.permits.permits), "live_permits": len(pipe.permits.live),
        "pending_approvals": sum(1 for x in pipe.permits.permits.values()
                                 if x.state == "in_review"),
        "time": format_time(_now(request))})


# --- the factory -------------------------------------------------------------------------------


def create_app(service: Pipeline, *, tick_interval: float | None = None,
               on_tick: Callable[[], None] | None = None) -> web.Application:
    """The API over one Pipeline. With `tick_interval` (embedded mode), a background task runs
    `service.tick()` (deadlines, expiries, override ends) and then `on_tick()` every interval;
    in Kafka mode the agents own the timers and leave it None."""
    app = web.Application(middlewares=[errors], client_max_size=MAX_EVENT_BYTES)
    app[SERVICE] = service
    app.router.add_post("/v1/tasks", post_task)
    app.router.add_get("/v1/decisions/{task_id}", get_decision)
    app.router.add_post("/v1/permits", post_permit)
    app.router.add_get("/v1/permits", list_permits)
    app.router.add_get("/v1/permits/{permit_id}", get_permit)
    app.router.add_post("/v1/permits/{permit_id}/approvals", post_approval)
    app.router.add_post("/v1/permits/{permit_id}/revocations", post_revocation)
    app.router.add_post("/v1/permits/{permit_id}/renewals", post_renewal)
    app.router.add_post("/v1/permits/{permit_id}/closure", post_closure)
    app.router.add_post("/v1/executions", post_execution)
    app.router.add_post("/v1/authorize", post_authorize)
    app.router.add_post("/v1/overrides", post_override)
    app.router.add_post("/v1/overrides/{override_id}/reviews", post_review)
    app.router.add_post("/v1/metrics", post_metrics)
    app.router.add_post("/v1/alerts/alertmanager", post_alertmanager)
    app.router.add_get("/healthz", healthz)
    from streams import dashboard  # the dashboard, reports and /metrics (streams/dashboard.py)

    dashboard.register(app, service)
    from streams import web_rollback  # executors' stage reports (docs/rollback.md §6)

    web_rollback.register(app)
    if tick_interval is not None:
        app.cleanup_ctx.append(_ticker(service, tick_interval, on_tick))
    return app


def _ticker(service: Pipeline, interval: float, on_tick: Callable[[], None] | None):  # type: ignore[no-untyped-def]
    async def context(app: web.Application):  # type: ignore[no-untyped-def]
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    service.tick()
                    if on_tick is not None:
                        on_tick()
                except Exception:  # a failed tick is logged and retried next interval
                    log.exception("tick failed")

        task = asyncio.create_task(loop(), name=f"certify-tick-{uuid.uuid4().hex[:6]}")
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    return context
