"""Permits, pure: the state machine, what a request must carry, scope, windows, renewal, audit.

The lifecycle itself is data (governance.toml `permit_lifecycle`): request -> review ->
approval -> issuance -> execution -> validation -> closure, plus denied, expired, suspended and
revoked. `transition` answers every (state, event) pair: the next state, or a refusal with a
stable code and a reason. No I/O, no clock: time is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from events import format_time
from events.payloads import CertificationDecided, OverrideScope, PermitRequested, PermitScope
from events.signing import canonical_json
from rules.governance import Governance, PermitLifecycle, PermitType
from rules.rollback_plans import validate_plan
from rules.scoring_model import normalise_name
from rules.triggers import apply_overrides

if TYPE_CHECKING:
    from rules.approvals import QuorumSpec

# lifecycle event -> the ledger event type that records it
EVENT_TYPES = {
    "submit": "permit.review_started", "approvals_complete": "permit.approved",
    "reject": "permit.denied", "request_changes": "permit.changes_requested",
    "issue": "permit.issued", "start": "permit.execution_started", "renew": "permit.renewed",
    "expire": "permit.expired", "suspend": "permit.suspended", "resume": "permit.resumed",
    "revoke": "permit.revoked", "complete": "permit.execution_finished",
    "fail": "permit.execution_finished", "close": "permit.closed",
}
TRANSITION_TYPES = frozenset(EVENT_TYPES.values())
ACTIVE_STATES = frozenset({"issued", "executing"})  # operations may be authorized
LIVE_STATES = frozenset({"issued", "executing", "validating", "suspended"})  # may be revoked
EMERGENCY_TYPE = "emergency"
DESTRUCTIVE_TYPE = "destructive"
DESTRUCTIVE_RULE = "minimum.operation.data_deletion"  # the checker's sign of a deletion

# Environment spellings that mean the same place (a permit for "prod" covers "production").
ENV_ALIASES = {"prod": "production", "prd": "production", "live": "production",
               "dev": "development", "develop": "development", "stage": "staging",
               "stg": "staging", "testing": "test", "qa": "test"}


@dataclass(frozen=True)
class Refusal:
    """A refused request or move: a stable code (never renamed) and one clear sentence."""

    code: str
    message: str


@lru_cache(maxsize=1024)
def env_name(value: str) -> str:
    name = normalise_name(value)
    return ENV_ALIASES.get(name, name)


# --- the state machine -------------------------------------------------------------------


def lifecycle_events(lifecycle: PermitLifecycle) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.event for t in lifecycle.transitions))


def transition(lifecycle: PermitLifecycle, state: str, event: str) -> str | Refusal:
    """The state after `event`, or why the move is refused."""
    if state not in lifecycle.states:
        return Refusal("permit.unknown_state", f"unknown permit state {state!r}")
    if event not in lifecycle_events(lifecycle):
        return Refusal("permit.unknown_event", f"unknown permit event {event!r}")
    if state in lifecycle.terminal:
        return Refusal("permit.terminal",
                       f"the permit is {state}: a {state} permit never moves again "
                       f"({event!r} refused)")
    for t in lifecycle.transitions:
        if t.from_ == state and t.event == event:
            return t.to
    allowed = ", ".join(t.event for t in lifecycle.transitions if t.from_ == state)
    return Refusal("permit.transition_refused",
                   f"{event!r} is not allowed while the permit is {state} "
                   f"(allowed there: {allowed})")


# --- decisions and scope -----------------------------------------------------------------


@dataclass(frozen=True)
class DecisionInfo:
    """What a permit needs to know of the certification decision it rests on."""

    event_id: str
    task_id: str
    level: int
    score: int
    environment: str
    approver_roles: tuple[str, ...]
    approvals_required: int
    change_advisory_board: bool
    compliance_frameworks: tuple[str, ...]
    retention_days: int
    retention_class: str
    minimum_rules: frozenset[str]

    @classmethod
    def from_record(cls, event_id: str, d: Mapping[str, Any]) -> DecisionInfo:
        """From the recorded JSON payload (our own writing: no second validation needed)."""
        return cls(event_id=event_id, task_id=d["task_id"], level=d["level"], score=d["score"],
                   environment=d["environment"], approver_roles=tuple(d["approver_roles"]),
                   approvals_required=d["approvals_required"],
                   change_advisory_board=d["change_advisory_board"],
                   compliance_frameworks=tuple(d["compliance_frameworks"]),
                   retention_days=d["retention_days"], retention_class=d["retention_class"],
                   minimum_rules=frozenset(m["rule"] for m in d["minimums"]))

    @classmethod
    def from_payload(cls, event_id: str, d: CertificationDecided) -> DecisionInfo:
        return cls(event_id=event_id, task_id=d.task_id, level=d.level, score=d.score,
                   environment=d.environment, approver_roles=tuple(d.approver_roles),
                   approvals_required=d.approvals_required,
                   change_advisory_board=d.change_advisory_board,
                   compliance_frameworks=tuple(d.compliance_frameworks),
                   retention_days=d.retention_days, retention_class=d.retention_class,
                   minimum_rules=frozenset(m.rule for m in d.minimums))


def _names(values: Any) -> frozenset[str]:
    return frozenset(normalise_name(v) for v in values if isinstance(v, str) and v.strip())


@dataclass(frozen=True)
class Scope:
    """A permit's scope, normalised once so that enforcement is set lookups."""

    operations: frozenset[str]
    services: frozenset[str]
    environment: str
    data_classes: frozenset[str]
    regions: frozenset[str]
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, scope: PermitScope | OverrideScope, not_before: datetime | None = None,
           not_after: datetime | None = None) -> Scope:
        start = not_before if not_before is not None else getattr(scope, "not_before")
        end = not_after if not_after is not None else getattr(scope, "not_after")
        return cls(operations=_names(scope.operations), services=_names(scope.services),
                   environment=env_name(scope.environment),
                   data_classes=_names(scope.data_classes) - {"public"},
                   regions=_names(scope.regions), not_before=start, not_after=end)


# --- audit ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSpec:
    level: int
    fields: tuple[str, ...]
    retention_days: int
    retention_class: str


def audit_spec(governance: Governance, level: int, decision: DecisionInfo | None = None,
               emergency: bool = False) -> AuditSpec:
    """The level's audit fields and the longest retention that applies (C-9)."""
    requirement = governance.emergency_audit if emergency else governance.audit_for(level)
    frameworks = decision.compliance_frameworks if decision else ()
    days = governance.retention_days(level, frameworks, emergency=emergency)
    days = max(days, decision.retention_days if decision else 0)
    name = next((n for n, d in governance.retention_classes.items() if d == days),
                f"retain-{days}d")
    return AuditSpec(level=level, fields=tuple(requirement.fields), retention_days=days,
                     retention_class=name)


def audit_record(spec: AuditSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The `audit` object of a ledger entry: every required field present (None if unknown)."""
    return {"level": spec.level, "retention_class": spec.retention_class,
            "retention_days": spec.retention_days,
            "fields": {name: values.get(name) for name in spec.fields}}


# --- the permit as folded from the ledger --------------------------------------------------


@dataclass(frozen=True)
class Approval:
    approver_id: str
    role: str
    decision: str
    decided_at: datetime
    recorded_at: datetime
    key_id: str
    signature: str


@dataclass(frozen=True)
class PendingRenewal:
    """A renewal that waits for the permit's quorum (types with renewal_requires_approval).

    `document` is what the approvers sign (through its hash, `request_sha256`): the renewal
    request bound to this permit, to its request version, to the renewal's number and to the
    end it extends, so that an approval of one renewal never counts for another."""

    number: int
    document: Mapping[str, Any]
    request_sha256: str
    requested_by: str
    requested_at: datetime
    extension_hours: float
    approvals: tuple[Approval, ...] = ()

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.approver_id for a in self.approvals if a.decision == "approve")


@dataclass(frozen=True)
class Permit:
    permit_id: str
    permit_type: str
    level: int
    state: str
    requested_by: str
    worker_id: str | None
    scope: Scope
    justification: str
    request_sha256: str
    requested_at: datetime
    audit: AuditSpec
    request: Mapping[str, Any] = field(default_factory=dict)  # the request document as hashed
    task_id: str | None = None
    decision_event_id: str | None = None
    rollback_plan: Mapping[str, Any] | None = None
    constraints: Mapping[str, float] = field(default_factory=dict)
    quorum: QuorumSpec | None = None
    approval_deadline: datetime | None = None
    approvals: tuple[Approval, ...] = ()
    issued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    renewals: int = 0
    emergency: bool = False
    incident_ticket: str | None = None
    compliance_frameworks: tuple[str, ...] = ()
    escalated: bool = False
    windows: Mapping[str, Any] = field(default_factory=dict)  # rules.triggers WindowState
    reason: str = ""
    history: tuple[dict[str, Any], ...] = ()
    pending_renewal: PendingRenewal | None = None
    # the most urgent expiry warning sent for the current end: (not_after, minutes_left)
    warned: tuple[datetime, int] | None = None

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(a.approver_id for a in self.approvals if a.decision == "approve")


# --- requests ------------------------------------------------------------------------------


def permit_type_for(requested: str | None, decision: DecisionInfo, governance: Governance
                    ) -> PermitType | Refusal:
    """The permit type a request gets: the decision level's type, or a stricter one asked for.

    Deletions at Level 3+ need the destructive type (every approver), as the checker says;
    at Level 4 the permit keeps Level 4 and its quorum (rules.approvals.quorum_for)."""
    gate = governance.gate(decision.level)
    if gate.permit_type is None:
        return Refusal("permit.not_needed",
                       f"task {decision.task_id} is Level {decision.level} work: no permit needed")
    needs_destructive = decision.level >= 3 and DESTRUCTIVE_RULE in decision.minimum_rules
    name = requested or (DESTRUCTIVE_TYPE if needs_destructive else gate.permit_type)
    if name == EMERGENCY_TYPE:
        return Refusal("permit.emergency_via_override",
                       "emergency permits come only from an emergency override "
                       "(POST /v1/overrides)")
    try:
        ptype = governance.permit_type(name)
    except KeyError:
        known = ", ".join(p.id for p in governance.permit_types if p.id != EMERGENCY_TYPE)
        return Refusal("permit.unknown_type", f"unknown permit type {name!r} (known: {known})")
    if needs_destructive and ptype.id != DESTRUCTIVE_TYPE:
        return Refusal("permit.type_too_weak",
                       "the task deletes data: it needs a destructive permit (every approver)")
    if ptype.level < decision.level and ptype.id != DESTRUCTIVE_TYPE:
        return Refusal("permit.type_too_weak",
                       f"permit type {ptype.id} is Level {ptype.level}; the task needs "
                       f"Level {decision.level}")
    return ptype


def permit_level(ptype: PermitType, decision: DecisionInfo) -> int:
    """A permit is at the higher of its type's level and the task's level."""
    return max(ptype.level, decision.level)


def check_rollback_plan(plan: Any, level: int, governance: Governance) -> Refusal | None:
    """The one place that judges a rollback plan: from the level that needs plans (L2+), the
    plan must pass the rollback schema and the level's requirements (rules.rollback_plans)."""
    if level < governance.rollback.plan_required_from_level:
        return None
    if not isinstance(plan, Mapping) or not plan:
        return Refusal("permit.rollback_plan_missing",
                       f"Level {level} permits need a rollback plan (rollback_plan); "
                       "`certify rollback-plan template NAME` prints a starting point")
    problems = validate_plan(dict(plan), level, policy=governance.rollback)
    if problems:
        listed = "; ".join(str(problem) for problem in problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        return Refusal("permit.rollback_plan_invalid",
                       f"rollback_plan is not valid for level {level}: {listed}{more}")
    return None


def check_request(request: PermitRequested, decision: DecisionInfo | None,
                  governance: Governance, now: datetime, computed_sha256: str
                  ) -> PermitType | Refusal:
    """Everything a permit request must satisfy before review starts; its permit type if so."""
    if decision is None:
        return Refusal("permit.unknown_decision",
                       f"no certification decision {request.decision_event_id!r}: submit the "
                       "task first (POST /v1/tasks) and name its decision")
    if decision.task_id != request.task_id:
        return Refusal("permit.decision_mismatch",
                       f"decision {decision.event_id} is for task {decision.task_id}, "
                       f"not {request.task_id}")
    ptype = permit_type_for(request.permit_type, decision, governance)
    if isinstance(ptype, Refusal):
        return ptype
    level = permit_level(ptype, decision)
    if request.level != level:
        return Refusal("permit.level_mismatch",
                       f"this {ptype.id} permit is Level {level}, the request says "
                       f"Level {request.level}")
    if not request.requested_by.strip():
        return Refusal("permit.requester_missing", "requested_by: required")
    scope = request.scope
    if not [o for o in scope.operations if o.strip()]:
        return Refusal("permit.scope_empty", "scope.operations: name at least one operation")
    if env_name(scope.environment) != env_name(decision.environment):
        return Refusal("permit.environment_mismatch",
                       f"scope.environment {scope.environment!r} is not the certified "
                       f"environment {decision.environment!r}")
    window = check_window(scope.not_before, scope.not_after, ptype, now)
    if window is not None:
        return window
    if not request.justification.strip():
        return Refusal("permit.justification_missing", "justification: required")
    plan = check_rollback_plan(request.rollback_plan, level, governance)
    if plan is not None:
        return plan
    if request.constraints:
        _, refused = apply_overrides(governance.rollback.triggers, request.constraints,
                                     governance.rollback)
        if refused:
            return Refusal("permit.bad_constraint",
                           f"constraints.{refused[0].name}: {refused[0].reason}")
    if request.request_sha256 != computed_sha256:
        return Refusal("permit.request_hash_mismatch",
                       "request_sha256 is not the hash of this request (see events.signing)")
    return ptype


def check_window(not_before: datetime, not_after: datetime, ptype: PermitType, now: datetime
                 ) -> Refusal | None:
    if not_after <= not_before:
        return Refusal("permit.window_invalid", "scope.not_after must be after scope.not_before")
    hours = (not_after - not_before).total_seconds() / 3600
    if hours > ptype.max_duration_hours:
        return Refusal("permit.window_too_long",
                       f"a {ptype.id} permit lasts at most {ptype.max_duration_hours:g} h, "
                       f"the window is {hours:g} h")
    if not_after <= now:
        return Refusal("permit.window_passed", "scope.not_after is already past")
    return None


def approval_deadline(requested_at: datetime, ptype: PermitType, not_after: datetime
                      ) -> datetime:
    """Approvals count until the type's SLA runs out, and never after the window has closed."""
    return min(requested_at + timedelta(hours=ptype.approval_sla_hours), not_after)


def default_window(ptype: PermitType, start: datetime) -> tuple[datetime, datetime]:
    return start, start + timedelta(hours=ptype.default_duration_hours)


def check_renewal(permit: Permit, ptype: PermitType, lifecycle: PermitLifecycle,
                  extension_hours: float, now: datetime) -> datetime | Refusal:
    """The new end of the window, or why not (permit-workflow expiration_policies, facts §9.2).

    Renewal is allowed within `renewal_window_hours` of the end, up to `max_renewals`, and the
    whole lifetime stays within `max_duration_hours`; new end = old + min(asked, default).
    Whether the renewal then needs the quorum again is `ptype.renewal_requires_approval`
    (the caller's next step: `renewal_document`, then `rules.approvals` over its hash)."""
    moved = transition(lifecycle, permit.state, "renew")
    if isinstance(moved, Refusal):
        return moved
    if permit.pending_renewal is not None:
        return Refusal("permit.renewal_pending",
                       f"renewal {permit.pending_renewal.number} is waiting for its approvals")
    if permit.emergency:
        return Refusal("permit.renew_by_new_override",
                       "an emergency override is continued by a new override (C-18)")
    if not ptype.renewable:
        return Refusal("permit.not_renewable", f"{ptype.id} permits are not renewable: "
                       "request a new permit")
    if permit.renewals >= ptype.max_renewals:
        return Refusal("permit.renewals_exhausted",
                       f"already renewed {permit.renewals} times (max {ptype.max_renewals})")
    end = permit.scope.not_after
    if now >= end:
        return Refusal("permit.expired", "the permit window has ended")
    if now < end - timedelta(hours=lifecycle.renewal_window_hours):
        return Refusal("permit.renewal_too_early",
                       f"renewal opens {lifecycle.renewal_window_hours:g} h before the end")
    new_end = renewed_end(permit, ptype, extension_hours)
    if new_end <= end:
        return Refusal("permit.renewals_exhausted",
                       f"a {ptype.id} permit lives at most {ptype.max_duration_hours:g} h")
    return new_end


def renewed_end(permit: Permit, ptype: PermitType, extension_hours: float) -> datetime:
    """old end + min(asked, default duration), the whole lifetime within max_duration_hours."""
    new_end = permit.scope.not_after + timedelta(
        hours=min(extension_hours, ptype.default_duration_hours))
    return min(new_end, permit.scope.not_before + timedelta(hours=ptype.max_duration_hours))


def renewal_document(permit: Permit, requested_by: str, extension_hours: float,
                     justification: str, requested_at: datetime) -> dict[str, Any]:
    """What approvers of a renewal sign (its hash): recorded facts only, no policy numbers, so
    the fold rebuilds the same document after a restart even if the policy changed."""
    return {"kind": "permit.renewal", "permit_id": permit.permit_id,
            "permit_request_sha256": permit.request_sha256, "renewal": permit.renewals + 1,
            "requested_by": requested_by, "extension_hours": extension_hours,
            "justification": justification, "requested_at": format_time(requested_at),
            "not_after": format_time(permit.scope.not_after)}


def renewal_sha256(document: Mapping[str, Any]) -> str:
    """SHA-256 hex of the RFC 8785 form of a renewal document (what approvals are signed over;
    clients recompute it from the document the server shows)."""
    return hashlib.sha256(canonical_json(dict(document))).hexdigest()


# --- expiry warnings -----------------------------------------------------------------------


def expiry_warning_due(permit: Permit, lifecycle: PermitLifecycle) -> datetime | None:
    """When the next expiry warning of the permit's current end is due (None: no more)."""
    if permit.state not in ACTIVE_STATES:
        return None
    end = permit.scope.not_after
    sent = permit.warned[1] if permit.warned and permit.warned[0] == end else None
    marks = [m for m in lifecycle.expiry_warning_minutes if sent is None or m < sent]
    return end - timedelta(minutes=marks[0]) if marks else None


def expiry_warning_mark(permit: Permit, lifecycle: PermitLifecycle, now: datetime
                        ) -> int | None:
    """The mark to warn at now: the most urgent one reached and not yet sent for this end
    (a late tick sends one warning, the nearest, not every mark it slept through)."""
    if permit.state not in ACTIVE_STATES or now >= permit.scope.not_after:
        return None
    end = permit.scope.not_after
    sent = permit.warned[1] if permit.warned and permit.warned[0] == end else None
    reached = [m for m in lifecycle.expiry_warning_minutes
               if end - timedelta(minutes=m) <= now and (sent is None or m < sent)]
    return min(reached) if reached else None
