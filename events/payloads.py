"""One payload model per event type: the vocabulary of the whole system.

Later work fills in behaviour, not vocabulary. Payloads are frozen; unknown fields are refused
except where the outside world sends us documents we must keep whole (tasks, alerts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Level = int  # 0 (non-union) .. 4 (master union); validated where it matters with ge/le


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpenPayload(BaseModel):
    """For documents written by others: unknown fields are kept, not fatal."""

    model_config = ConfigDict(frozen=True, extra="allow")


# --- tasks and certification -------------------------------------------------------------


class TaskSubmitted(Payload):
    task_id: str
    master_id: str | None = None
    task: dict[str, Any]  # the task document as the master sent it (seed field names)


class FactorScore(Payload):
    factor: str
    points: int = Field(ge=0, le=10)
    value: str
    rule: str  # e.g. "scoring.environment.production"
    evidence: list[str] = Field(default_factory=list)


class MinimumTriggered(Payload):
    rule: str  # e.g. "minimum.data.pii"
    level: Level = Field(ge=0, le=4)
    reason: str
    evidence: list[str] = Field(default_factory=list)


class CertificationDecided(Payload):
    task_id: str
    worker_type: Literal["union", "non-union"]
    level: Level = Field(ge=0, le=4)
    score: int = Field(ge=0, le=50)
    score_level: Level = Field(ge=0, le=4)
    risk_level: str
    factors: list[FactorScore]
    minimums: list[MinimumTriggered]
    hard_blocks: list[str]
    approvals_required: int = Field(ge=0)
    approver_roles: list[str]
    # int when whole (the usual case): keeps the hashed record free of floats (fast canonical path)
    approval_time_limit_hours: int | float = Field(ge=0)
    change_advisory_board: bool
    required_artefacts: list[str]
    audit_fields: list[str]
    retention_days: int
    retention_class: str
    compliance_frameworks: list[str]
    environment: str
    environment_confidence: int | float = Field(ge=0, le=1)
    uncertainties: list[str]
    policy_version: str
    policy_sha256: str


class TaskBlocked(Payload):
    """A task refused outright (e.g. a worker of too low a level asked to run it)."""

    task_id: str
    rule: str
    message: str
    required_level: Level = Field(ge=0, le=4)


# --- permits -------------------------------------------------------------------------------


class PermitScope(Payload):
    operations: list[str]
    services: list[str] = Field(default_factory=list)
    environment: str
    data_classes: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    not_before: datetime
    not_after: datetime


class PermitRequested(Payload):
    permit_id: str
    permit_type: str
    task_id: str
    decision_event_id: str
    level: Level = Field(ge=0, le=4)
    requested_by: str
    worker_id: str | None = None
    scope: PermitScope
    justification: str
    rollback_plan: dict[str, Any] | None = None
    request_sha256: str  # hash of the canonical request: what approvers sign over
    # Running-permit limits (facts §9.3 safety_constraints), e.g. max_error_rate 0.01,
    # max_latency_p99_ms 500; they replace only the threshold of the rollback trigger (C-17).
    constraints: dict[str, float] = Field(default_factory=dict)


class PermitRequestRefused(Payload):
    """A permit request we did not accept, with the stable code and the request as sent."""

    permit_id: str | None
    requested_by: str | None
    code: str  # e.g. "permit.rollback_plan_missing", "permit.unknown_decision"
    message: str
    request: dict[str, Any] = Field(default_factory=dict)


class PermitRenewalRequested(Payload):
    permit_id: str
    requested_by: str
    extension_hours: float = Field(gt=0)
    justification: str


class PermitExpiryWarning(Payload):
    """A permit in force ends soon: sent at each of the policy's warning marks (30/15/5 min)."""

    permit_id: str
    expires_at: datetime
    minutes_left: int = Field(ge=0)  # the mark reached, e.g. 30, 15 or 5
    notify: list[str] = Field(default_factory=list)  # who is told: requester, worker, approvers


class PermitClosureRequested(Payload):
    """The master (or worker) asks to close a permit whose execution finished."""

    permit_id: str
    requested_by: str
    summary: dict[str, Any] = Field(default_factory=dict)


class PermitTransition(Payload):
    """review started, approved (quorum reached), issued, execution started, validated, closed,
    denied, expired, suspended, revoked, renewed: the state machine's moves."""

    permit_id: str
    from_state: str
    to_state: str
    reason: str = ""
    actor: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ApprovalSigned(Payload):
    """An approver's signed statement: approve, deny or revoke."""

    permit_id: str
    request_sha256: str
    decision: Literal["approve", "deny", "revoke", "resume"]
    approver_id: str
    approver_role: str
    decided_at: datetime
    comments: str = ""
    key_id: str
    signature: str  # base64 Ed25519 over the canonical approval


class ApprovalRefused(Payload):
    permit_id: str
    approver_id: str | None
    code: str  # e.g. "approval.bad_signature", "approval.self_approval"
    message: str
    approval: dict[str, Any] = Field(default_factory=dict)


class ApproverRegistered(Payload):
    approver_id: str
    roles: list[str]
    public_key: str  # base64 raw Ed25519
    valid_from: datetime
    valid_until: datetime | None = None


# --- operations, executions ----------------------------------------------------------------


class AuthorizationRequested(Payload):
    """A worker's "may I do this now?" as an event (the Kafka form of POST /v1/authorize).

    Only `permit_id` names a permit: a permit body sent along is never trusted."""

    request_id: str
    worker: dict[str, Any]
    permit_id: str | None = None
    operation: dict[str, Any] | None = None
    task: dict[str, Any] | None = None


class OperationAuthorized(Payload):
    """A worker's "may I do this now?" and our answer."""

    worker_id: str
    permit_id: str | None
    operation: dict[str, Any]
    allowed: bool
    reason_code: str
    message: str
    request_id: str | None = None
    required_level: int | None = None
    audit: dict[str, Any] = Field(default_factory=dict)  # level's audit fields + retention


class ExecutionReported(Payload):
    """started / completed / failed, reported by the worker."""

    execution_id: str
    permit_id: str | None
    task_id: str | None
    worker_id: str
    status: Literal["started", "completed", "failed"]
    operations: list[str] = Field(default_factory=list)
    outcome: dict[str, Any] = Field(default_factory=dict)


class PostExecutionReview(Payload):
    """A human's verdict on the level we gave: feeds over/under-certification metrics."""

    task_id: str
    assigned_level: Level = Field(ge=0, le=4)
    appropriate_level: Level = Field(ge=0, le=4)
    reviewer: str
    notes: str = ""


# --- monitoring and rollback ---------------------------------------------------------------


class MetricSample(Payload):
    """One reading: a number (`value`) or, for state metrics such as health_check_status, a
    text (`state`: "failed", "inconsistent", "critical"). A non-numeric text sent as `value`
    is read as the state. Labels `baseline: "true"` mark the key's baseline for the metric."""

    key: str  # permit id or deployment id the sample belongs to
    metric: str
    value: float | None = Field(default=None, allow_inf_nan=False)
    observed_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    state: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _text_value_is_a_state(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("value"), str) and "state" not in data:
            try:
                float(data["value"])
            except ValueError:
                return {**data, "state": data["value"], "value": None}
        return data

    @model_validator(mode="after")
    def _one_reading(self) -> MetricSample:
        if (self.value is None) == (self.state is None):
            raise ValueError("a sample needs exactly one of value (a number) or state (a text)")
        return self


class AlertReceived(OpenPayload):
    key: str
    source: str = "alertmanager"
    alert: dict[str, Any] = Field(default_factory=dict)


class RollbackEvent(Payload):
    """triggered (with evidence), commanded, started, step, completed, failed, verified.

    rules/rollback_tracking.py folds these; docs/rollback.md says who sends which stage."""

    rollback_id: str
    permit_id: str | None
    stage: Literal["triggered", "commanded", "started", "step", "completed", "failed", "verified"]
    trigger: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    step: str | None = None
    sla_minutes: float | None = None
    key: str | None = None  # the monitored key (permit or deployment id)
    level: Level | None = Field(default=None, ge=0, le=4)
    operation_type: str | None = None  # e.g. application_deployment (its SLA, C-15)
    approval: str | None = None  # triggered: "none" when automatic, else the approval awaited
    scope: str | None = None  # commanded: "full" or a partial scenario of the plan
    phases: list[str] = Field(default_factory=list)  # commanded: the plan phases to run
    regions: list[str] = Field(default_factory=list)  # commanded (L4): regions in parallel
    region: str | None = None  # started / step / completed / verified / failed per region
    passed: bool | None = None  # verified: False = verification failed
    decided_at: datetime | None = None  # commanded: when a human decided (before approval)
    actor: str | None = None
    reason: str = ""


class RollbackStageReported(Payload):
    """An executor reports how a commanded rollback goes (inbound; the service turns it into a
    rollback.event after checking it against the rollback's state). Only executor stages: the
    triggered and commanded stages are ours alone."""

    rollback_id: str
    stage: Literal["started", "step", "completed", "failed", "verified"]
    executor: str
    step: str | None = None
    region: str | None = None
    passed: bool | None = None  # verified: False = verification failed
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class EscalationRaised(Payload):
    subject_kind: Literal["permit", "rollback", "override", "approval", "monitor"]
    subject_id: str  # for "monitor": the monitored key
    reason: str
    escalate_to: list[str]
    severity: Literal["low", "medium", "high", "critical"]
    code: str | None = None  # stable, e.g. "rollback.sla_breach", "trigger.alert"
    actions: list[str] = Field(default_factory=list)  # e.g. the level's breach consequences
    details: dict[str, Any] = Field(default_factory=dict)  # evidence, deadlines, stage


class ViolationRecorded(Payload):
    worker_id: str | None
    permit_id: str | None
    rule: str
    message: str
    severity: Literal["low", "medium", "high", "critical"]
    action: Literal["denied", "suspended", "revoked", "rolled_back", "alerted"]
    details: dict[str, Any] = Field(default_factory=dict)


class OverrideScope(Payload):
    """What an emergency override lets its worker do (the time window is ours: now + 60 min)."""

    operations: list[str]
    services: list[str] = Field(default_factory=list)
    environment: str
    data_classes: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)


class OverrideRequested(Payload):
    """An incident commander's (or on-call lead's) signed emergency override.

    The signature is the canonical approval (events.signing) with permit_id = override_id,
    decision "override", decided_at = requested_at and request_sha256 = the hash of this
    request without key_id, signature and request_sha256."""

    override_id: str
    incident_ticket: str
    trigger: str  # one of governance emergency.triggers
    commander_id: str
    commander_role: str
    worker_id: str
    scope: OverrideScope
    reason: str
    requested_at: datetime
    request_sha256: str
    key_id: str
    signature: str


class OverrideReviewSubmitted(Payload):
    """The post-incident review of an override (actions, justification, alternatives, lessons)."""

    override_id: str
    reviewer_id: str
    report: dict[str, Any]


class EmergencyOverride(Payload):
    """granted, revoked (automatically at its end or by hand), review opened / completed."""

    override_id: str
    stage: Literal["granted", "revoked", "review_opened", "review_completed"]
    incident_ticket: str
    commander_id: str
    commander_role: str
    worker_id: str | None = None
    level: Level = Field(default=3, ge=0, le=4)
    expires_at: datetime | None = None
    reason: str = ""
    trigger: str | None = None
    scope: OverrideScope | None = None
    review_due_at: datetime | None = None
    audit: dict[str, Any] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)


# --- ledger housekeeping, keys, privacy ----------------------------------------------------


class LedgerKeyEvent(Payload):
    """The ledger's own key registry events (`ledger.key_added`, `ledger.key_rotated`), exactly
    as ledger/keyring.py writes them: vkeys are C2SP note keys ("name+keyid_hex+base64"), both
    keys sign the statement `ledger.keyring.statement` (a rotation is authorised by the outgoing
    key's `sig_old`; the genesis key signs itself only)."""

    action: Literal["added", "rotated"]
    new_vkey: str
    old_vkey: str | None = None
    sig_new: str
    sig_old: str | None = None


class ReportGenerated(Payload):
    """A compliance report was produced: what it covers, what it rests on, and its signature.

    The report's bytes stay outside the ledger; their hash and the signature over it are here, so
    an auditor can prove a report file is the one we produced, from the checkpoint named."""

    report_id: str
    framework: str  # sox | soc2 | hipaa | pci | gdpr
    period_from: datetime
    period_to: datetime
    format: str  # the rendering hashed: json | md | csv | html
    report_sha256: str
    checkpoint: dict[str, Any]  # the signed checkpoint(s) the report was computed from
    previous_report_id: str | None = None
    population: int = Field(ge=0)
    exceptions: int = Field(ge=0)
    key_id: str
    signature: str  # Ed25519 over the report's canonical bytes, base64
    generated_by: str


class InputRejected(Payload):
    """Bad input is kept, with why: the dead-letter record in ledger form."""

    source: str  # file:line, topic/partition/offset, http route
    code: str  # stable: "input.malformed_json", "input.unknown_type", "input.schema", "input.oversize"
    message: str
    raw_sha256: str
    raw_excerpt: str  # first bytes, for humans; the full bytes stay in the dead-letter store
    raw_size: int


class LedgerTailTruncated(Payload):
    """A torn tail cut on open, exactly as ledger/store.py records it (the partition is the
    entry's own): the bytes are kept in `quarantine`, with their hash."""

    segment: str
    offset: int = Field(ge=0)
    bytes_cut: int = Field(ge=0)
    sha256: str
    reason: str  # the frame problem: short | hash | length
    quarantine: str
    next_index: int = Field(ge=0)


class SubjectErased(Payload):
    data_subject: str
    requested_by: str
    legal_basis: str = "GDPR Art. 17"
