"""HTTP routes of the rollback service (registered by streams.web.create_app):

    POST /v1/rollbacks/{rollback_id}/stages   an executor reports a stage
                                              {stage, executor[, step, region, passed, reason,
                                              details, report_id]} -> 202 {rollback, event_ids}
    GET  /v1/rollbacks/{rollback_id}          the rollback's tracking record (SLA, stages)

A report becomes a `rollback.stage_reported` event through the Pipeline, which checks it
against the rollback's state (docs/rollback.md §6): refused reports are recorded as
`input.rejected` with the reason and answered 404 (`rollback.unknown`), 409 (out of order,
duplicate, after verification, not commanded) or 422 (a region not commanded). The event id
is `report_id` when given, else derived from the body: a retried POST is taken once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from events import Envelope, InputError
from events.envelope import MAX_ID_LENGTH
from events.payloads import RollbackStageReported
from streams.web import (
    _body,
    _done,
    _id,
    _now,
    _object,
    _service,
    _validated,
    error_response,
)

STATUS = {"rollback.unknown": 404, "rollback.unknown_region": 422}  # other rollback.*: 409


def _status(code: str) -> int | None:
    if code in STATUS:
        return STATUS[code]
    return 409 if code.startswith("rollback.") else None


def _view(request: web.Request, rollback_id: str) -> dict[str, Any] | None:
    service = _service(request).rollbacks
    record = service.tracker.records.get(rollback_id)
    if record is None:
        return None
    return {**record.report(service.policy), "stage": record.stage,
            "approval": record.approval, "trigger": record.trigger,
            "regions": list(record.regions), "regions_verified": list(record.regions_verified)}


async def post_stage(request: web.Request) -> web.Response:
    rollback_id = _id(request, "rollback_id")
    raw, document = await _body(request)
    body = dict(_object(request, raw, document))
    report_id = body.pop("report_id", None)
    body["rollback_id"] = rollback_id
    report = _validated(request, raw, RollbackStageReported, body)
    if report_id is not None and (not isinstance(report_id, str) or not report_id
                                  or len(report_id) > MAX_ID_LENGTH):
        raise InputError("input.schema", f"report_id: an id of 1..{MAX_ID_LENGTH} characters")
    payload = report.model_dump(mode="json")
    if report_id is None:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        report_id = "stage:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    pipe, now = _service(request), _now(request)
    record = pipe.rollbacks.tracker.records.get(rollback_id)
    subject = (record.key if record is not None and record.key else rollback_id)
    envelope = Envelope(event_id=report_id, type="rollback.stage_reported", occurred_at=now,
                        producer=report.executor[:MAX_ID_LENGTH] or "executor",
                        subject=subject[:MAX_ID_LENGTH], correlation_id=rollback_id,
                        payload=payload)
    outcome = await _done(pipe.handle_event(envelope, now, raw=raw,
                                            source=f"http:{request.path}"))
    if outcome.rejected is not None:
        code = outcome.rejected.code
        return error_response(code, outcome.rejected.message, _status(code),
                              event_ids=[e.event_id for e in outcome.events])
    return web.json_response({"rollback": _view(request, rollback_id),
                              "event_ids": [e.event_id for e in outcome.events]}, status=202,
                             dumps=_dumps)


async def get_rollback(request: web.Request) -> web.Response:
    rollback_id = _id(request, "rollback_id")
    view = _view(request, rollback_id)
    if view is None:
        return error_response("rollback.unknown", f"no rollback {rollback_id!r}", 404)
    return web.json_response({"rollback": view}, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if hasattr(v, "isoformat")
                      else str(v))


def register(app: web.Application) -> None:
    app.router.add_post("/v1/rollbacks/{rollback_id}/stages", post_stage)
    app.router.add_get("/v1/rollbacks/{rollback_id}", get_rollback)

