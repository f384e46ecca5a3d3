"""Event type names -> payload models, and the one parser that turns outside bytes into events."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from events import payloads as p
from events.envelope import Envelope

EVENT_TYPES: dict[str, type[BaseModel]] = {
    "task.submitted": p.TaskSubmitted,
    "certification.decided": p.CertificationDecided,
    "task.blocked": p.TaskBlocked,
    "permit.requested": p.PermitRequested,
    "permit.review_started": p.PermitTransition,
    "permit.approved": p.PermitTransition,
    "permit.issued": p.PermitTransition,
    "permit.execution_started": p.PermitTransition,
    "permit.validated": p.PermitTransition,
    "permit.closed": p.PermitTransition,
    "permit.denied": p.PermitTransition,
    "permit.expired": p.PermitTransition,
    "permit.suspended": p.PermitTransition,
    "permit.revoked": p.PermitTransition,
    "permit.renewed": p.PermitTransition,
    "permit.resumed": p.PermitTransition,
    "permit.changes_requested": p.PermitTransition,
    "permit.execution_finished": p.PermitTransition,
    "permit.request_refused": p.PermitRequestRefused,
    "permit.renewal_requested": p.PermitRenewalRequested,
    "permit.closure_requested": p.PermitClosureRequested,
    "permit.expiry_warning": p.PermitExpiryWarning,
    "approval.signed": p.ApprovalSigned,
    "approval.refused": p.ApprovalRefused,
    "approver.registered": p.ApproverRegistered,
    "authorization.requested": p.AuthorizationRequested,
    "operation.authorized": p.OperationAuthorized,
    "execution.reported": p.ExecutionReported,
    "review.post_execution": p.PostExecutionReview,
    "metric.sample": p.MetricSample,
    "alert.received": p.AlertReceived,
    "rollback.event": p.RollbackEvent,
    "rollback.stage_reported": p.RollbackStageReported,
    "escalation.raised": p.EscalationRaised,
    "violation.recorded": p.ViolationRecorded,
    "override.event": p.EmergencyOverride,
    "override.requested": p.OverrideRequested,
    "override.review_submitted": p.OverrideReviewSubmitted,
    "ledger.key_added": p.LedgerKeyEvent,
    "ledger.key_rotated": p.LedgerKeyEvent,
    "report.generated": p.ReportGenerated,
    "input.rejected": p.InputRejected,
    "ledger.tail_truncated": p.LedgerTailTruncated,
    "subject.erased": p.SubjectErased,
}

# Types that outside producers may send us; the rest we derive ourselves.
INBOUND_TYPES = frozenset(
    {"task.submitted", "approval.signed", "execution.reported", "metric.sample",
     "alert.received", "review.post_execution",
     # permits (issue 5): masters request, renew and close; approvers sign; workers ask;
     # incident commanders override. approver.registered is NOT inbound: operators add
     # approvers with `certify approver add` (a self-registered approver could approve anything).
     "permit.requested", "permit.renewal_requested", "permit.closure_requested",
     "authorization.requested", "override.requested", "override.review_submitted",
     # rollback executors report the stages of a commanded rollback (issue 6)
     "rollback.stage_reported"}
)

MAX_EVENT_BYTES = 1_000_000


class InputError(Exception):
    """Bad input, with a stable code and one clear line naming the field and the problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """First problem only, as `field.path: problem`: what a human needs to fix the input."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    where = f"{prefix}{where}" if where else (prefix.rstrip(".") or "input")
    more = len(error.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"{where}: {first['msg']}{tail}"


def parse_payload(event_type: str, payload: dict[str, Any]) -> BaseModel:
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise InputError("input.unknown_type", f"type: unknown event type {event_type!r}")
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise InputError("input.schema", describe_validation_error(error, "payload.")) from None


def decode_json(raw: bytes | str, *, limit: int = MAX_EVENT_BYTES) -> Any:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limit:
        raise InputError("input.oversize", f"input: {size} bytes exceeds the limit of {limit}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InputError("input.undecodable", "input: not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            "input.malformed_json", f"input: malformed JSON at line {error.lineno} column "
            f"{error.colno}: {error.msg}") from None


def parse_event(document: Any) -> tuple[Envelope, BaseModel]:
    """An envelope dict -> (envelope, typed payload), or InputError."""
    if not isinstance(document, dict):
        raise InputError("input.schema", "input: an event must be a JSON object")
    event_type = document.get("type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        raise InputError("input.unknown_type", f"type: unknown event type {event_type!r}")
    try:
        envelope = Envelope.model_validate(document)
    except ValidationError as error:
        raise InputError("input.schema", describe_validation_error(error)) from None
    return envelope, parse_payload(envelope.type, envelope.payload)
