"""Governance policy as validated data: approval gates, audit, allocations, compliance,
permit types, emergency override, rollback, permit lifecycle, revocation, promotion, targets.

The values live in rules/policy/governance.toml and rules/policy/resolutions.toml; this module
only describes their shape and refuses nonsense (frozen pydantic v2 models, unknown keys refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEVELS = (0, 1, 2, 3, 4)
RESOLUTION_IDS = tuple(f"C-{n}" for n in range(1, 30))
REQUIRED_FRAMEWORKS = frozenset({"SOX", "HIPAA", "PCI_DSS", "GDPR", "SOC2"})
REQUIRED_PERMIT_TYPES = frozenset(
    {"read_only", "standard_production", "advanced_production", "master_production",
     "emergency", "destructive"}
)

Level = Annotated[int, Field(ge=0, le=4)]
UnionLevel = Annotated[int, Field(ge=1, le=4)]
Count = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Hours = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Names = tuple[Name, ...]
Keyword = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9 _\-]*$")]
OneLine = Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\n]+$")]
SemVer = Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
Severity = Literal["critical", "high", "medium", "low"]
Automation = Literal["fully_automated", "semi_automated", "manual"]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _unique(values: Iterable[object], what: str) -> None:
    seen: set[object] = set()
    dupes: set[str] = set()
    for v in values:
        if v in seen:
            dupes.add(str(v))
        seen.add(v)
    if dupes:
        raise ValueError(f"{what}: duplicate entries {sorted(dupes)}")


def _check_approvers(required: int, roles: tuple[str, ...]) -> None:
    _unique(roles, "approver_roles")
    if required > 0 and not roles:
        raise ValueError(f"approvers_required={required} but approver_roles is empty")
    if required > len(roles):
        raise ValueError(f"approvers_required={required} exceeds the {len(roles)} approver_roles")


def _one_per_level(items: tuple, what: str, levels: tuple[int, ...] = LEVELS) -> tuple:
    got = sorted(i.level for i in items)
    if got != sorted(levels):
        raise ValueError(f"{what} must list levels {list(levels)} exactly once each, got {got}")
    return tuple(sorted(items, key=lambda i: i.level))


def _non_decreasing(items: tuple, attr: str, what: str) -> None:
    values = [getattr(i, attr) for i in items]
    if values != sorted(values):
        raise ValueError(f"{what}.{attr} must not decrease as the level rises, got {values}")


# --- approvals, audit, allocations ----------------------------------------------------------

class ApprovalGate(_Data):
    level: Level
    approvers_required: Count
    approver_roles: Names
    max_hours: Hours
    required_artefacts: Names
    change_advisory_board: bool
    can_auto_approve: bool
    synchronous_review: bool
    permit_type: Name | None = None  # permit type issued at this level; none at level 0

    @model_validator(mode="after")
    def _check(self) -> ApprovalGate:
        _check_approvers(self.approvers_required, self.approver_roles)
        _unique(self.required_artefacts, "required_artefacts")
        if self.approvers_required == 0 and not self.can_auto_approve:
            raise ValueError(f"level {self.level}: no approvers but can_auto_approve is false")
        if (self.level == 0) != (self.permit_type is None):
            raise ValueError("level 0 issues no permit; levels 1-4 must name their permit_type")
        return self


class ApproverRules(_Data):
    self_approval_allowed: Literal[False]
    delegation_allowed: bool
    delegation_allowed_in_emergency: bool
    decisions: Names
    cab_meeting_interval_days: PositiveInt
    cab_advance_notice_days: Count
    cab_presentation_required: bool


class AuditRequirement(_Data):
    level: Level
    fields: Annotated[Names, Field(min_length=1)]
    retention_days: PositiveInt
    retention_class: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")]
    destinations: Annotated[Names, Field(min_length=1)]
    real_time_monitoring: bool
    alerting: Literal["on_error", "all"]
    security_monitoring: bool
    compliance_reporting: bool
    executive_visibility: bool
    error_retention_days: PositiveInt | None = None  # longer retention of error records

    @model_validator(mode="after")
    def _check(self) -> AuditRequirement:
        _unique(self.fields, "fields")
        _unique(self.destinations, "destinations")
        errors = self.error_retention_days
        if errors is not None and errors < self.retention_days:
            raise ValueError("error_retention_days must be >= retention_days")
        return self


class Allocation(_Data):
    level: Level
    tokens: PositiveInt
    extended_tokens: PositiveInt  # with a business justification (soft block)
    time_limit_minutes: PositiveInt
    max_concurrent_tasks: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> Allocation:
        if self.extended_tokens < self.tokens:
            raise ValueError(f"level {self.level}: extended_tokens < tokens")
        return self


class ComplianceFramework(_Data):
    min_level: UnionLevel
    extra_approver_roles: Names
    required_artefacts: Names
    controls: Annotated[Names, Field(min_length=1)]
    retention_days: PositiveInt
    keywords: Annotated[tuple[Keyword, ...], Field(min_length=1)]


# --- permits and emergency ------------------------------------------------------------------

class PermitType(_Data):
    id: Name
    level: UnionLevel
    approvers_required: PositiveInt
    approver_roles: Names
    all_must_approve: bool
    sequential: bool
    change_advisory_board: bool
    approval_sla_hours: Positive
    default_duration_hours: Positive
    max_duration_hours: Positive  # total lifetime cap, renewals included
    renewable: bool
    renewal_requires_approval: bool
    # who signs a renewal that needs approval: any approver eligible for the permit, or only
    # those who approved it (facts §9.2 "same approvers")
    renewal_approvers: Literal["any", "original"] = "any"
    max_renewals: Count
    auto_approve_eligible: bool
    single_use: bool
    rollback_strategies: Annotated[Names, Field(min_length=1)]  # preferred first
    max_rollback_minutes: Positive | None = None

    @model_validator(mode="after")
    def _check(self) -> PermitType:
        _check_approvers(self.approvers_required, self.approver_roles)
        if self.all_must_approve and self.approvers_required != len(self.approver_roles):
            raise ValueError(f"{self.id}: all_must_approve needs approvers_required == roles")
        if self.max_duration_hours < self.default_duration_hours:
            raise ValueError(f"{self.id}: max_duration_hours < default_duration_hours")
        if self.single_use and self.renewable:
            raise ValueError(f"{self.id}: a single_use permit cannot be renewable")
        if self.renewable != (self.max_renewals > 0):
            raise ValueError(f"{self.id}: renewable permits need max_renewals > 0, others 0")
        if self.renewal_requires_approval and not self.renewable:
            raise ValueError(f"{self.id}: renewal_requires_approval on a non-renewable permit")
        return self


class EmergencyOverride(_Data):
    level: UnionLevel
    approvers_required: PositiveInt
    approver_roles: Names
    approval_max_minutes: Positive
    duration_minutes: Positive
    max_renewals: Count  # each renewal is a new override with a new approval (C-18)
    renewal_approver_roles: Names
    max_total_minutes: Positive
    required: Annotated[Names, Field(min_length=1)]
    triggers: Annotated[Names, Field(min_length=1)]
    automatic_revocation: Literal[True]
    revoke_when_incident_resolved: bool
    enhanced_monitoring: bool
    post_incident_review_due_hours: Positive
    daily_alert_threshold: Count
    never_bypassable: Names
    always_kept: Names

    @model_validator(mode="after")
    def _check(self) -> EmergencyOverride:
        _check_approvers(self.approvers_required, self.approver_roles)
        if not set(self.renewal_approver_roles) <= set(self.approver_roles):
            raise ValueError("renewal_approver_roles must be a subset of approver_roles")
        if self.duration_minutes * (1 + self.max_renewals) > self.max_total_minutes:
            raise ValueError("duration_minutes * (1 + max_renewals) exceeds max_total_minutes")
        return self


# --- rollback -------------------------------------------------------------------------------

class RollbackLevel(_Data):
    level: Annotated[int, Field(ge=2, le=4)]
    target_minutes: Positive
    sla_minutes: Positive
    per_region: bool  # L4: SLA per region, regions rolled back in parallel
    sla_excludes: Names
    automation_accepted: Annotated[tuple[Automation, ...], Field(min_length=1)]
    automation_preferred: Automation
    human_gates: bool
    required_evidence: Annotated[Names, Field(min_length=1)]  # testing_evidence fields (C-16)
    testing: Names
    documentation: Names
    breach_consequences: Names

    @model_validator(mode="after")
    def _check(self) -> RollbackLevel:
        if self.target_minutes > self.sla_minutes:
            raise ValueError(f"level {self.level}: target_minutes > sla_minutes")
        if self.automation_preferred not in self.automation_accepted:
            raise ValueError(f"level {self.level}: automation_preferred is not accepted")
        return self


class OperationSla(_Data):
    operation: Name
    target_minutes: Positive
    sla_minutes: Positive
    typical_minutes: tuple[Positive, Positive]
    automation: Automation

    @model_validator(mode="after")
    def _check(self) -> OperationSla:
        low, high = self.typical_minutes
        if self.target_minutes > self.sla_minutes or low > high:
            raise ValueError(f"{self.operation}: target > sla or typical range reversed")
        return self


class RollbackTrigger(_Data):
    name: Name
    group: Literal["metric", "health_check", "business", "data_quality", "security",
                   "customer_impact"]
    metric: Name
    comparison: Literal["greater_than", "less_than", "equals"]
    threshold: float | str
    threshold_type: Literal["absolute", "baseline_multiplier", "percentage_difference", "state"]
    sustained_seconds: PositiveInt | None = None  # condition must hold this long (C-17)
    window_seconds: PositiveInt | None = None  # counting window ("> 10 per 60 s")
    consecutive: PositiveInt | None = None  # consecutive failed checks
    severity: Severity
    automatic: bool  # roll back without a human
    alert_only: bool  # alert and wait for a human, no rollback proposal
    approval: Literal["none", "manual", "manual_review", "executive"]
    security_incident: bool

    @model_validator(mode="after")
    def _check(self) -> RollbackTrigger:
        is_state = self.comparison == "equals"
        typed_as_state = {self.threshold_type == "state", isinstance(self.threshold, str)}
        if typed_as_state != {is_state}:
            raise ValueError(f"{self.name}: 'equals' needs a state threshold, others a number")
        if self.threshold_type == "baseline_multiplier" and not self.threshold > 0:
            raise ValueError(f"{self.name}: baseline multiplier must be > 0")
        if self.automatic and self.alert_only:
            raise ValueError(f"{self.name}: cannot be both automatic and alert_only")
        if (self.approval == "none") != (self.automatic or self.alert_only):
            raise ValueError(f"{self.name}: a non-automatic rollback trigger needs an approval")
        if self.window_seconds is not None and (self.sustained_seconds or self.consecutive):
            raise ValueError(f"{self.name}: a counting window cannot also be sustained or "
                             "consecutive")
        if is_state and self.window_seconds is not None:
            raise ValueError(f"{self.name}: a state trigger cannot count within a window")
        return self


class AutomationLevel(_Data):
    name: Automation
    human_approval: bool
    manual_verification: bool
    requires_justification: bool
    required_for: Names


class FailureEscalationStage(_Data):
    from_minute: Count
    to_minute: PositiveInt | None = None  # None = open-ended last stage
    roles: Names
    actions: Annotated[Names, Field(min_length=1)]


class VerificationEscalationStep(_Data):
    role: Name
    timeout_minutes: Positive
    action: Name


class TriggerEvaluation(_Data):
    """How the trigger engine reads a stream of samples (rules/triggers.py; docs/rollback.md).
    Ours: the seed names thresholds and windows but not these mechanics."""

    no_data_after_intervals: PositiveInt = 3  # no sample for N x check interval -> "no data"
    min_samples: PositiveInt = 3  # a sustained window needs at least this many samples
    rearm_healthy_seconds: PositiveInt = 300  # a fired trigger re-arms after this long healthy
    max_evidence_samples: PositiveInt = 20  # crossing samples kept as evidence (the latest)
    max_window_points: PositiveInt = 1000  # count-window samples kept per key and trigger


class OverrideBound(_Data):
    """How far a permit may move a trigger threshold: tightening down to `min` (greater_than)
    and loosening up to `max`; for less_than triggers the directions swap."""

    min: float
    max: float

    @model_validator(mode="after")
    def _check(self) -> OverrideBound:
        if self.min > self.max:
            raise ValueError("override bound min > max")
        return self


class RollbackPaging(_Data):
    """Who is paged for what the trigger engine and the tracker find (ours, see docs/rollback.md;
    the incident commander may authorise a rollback per rollback-plans.json)."""

    alert_roles: Names = ("engineer_on_call",)  # alert-only triggers
    no_data_roles: Names = ("sre",)  # a metric went silent, or a baseline is missing
    approval_roles: dict[Literal["manual", "manual_review", "executive"], Names] = Field(
        default_factory=lambda: {"manual": ("incident_commander",),
                                 "manual_review": ("incident_commander",),
                                 "executive": ("engineering_director", "cto")})
    sla_breach_roles: Names = ("incident_commander",)
    repeated_breach_roles: Names = ("engineering_director",)
    security_incident_roles: Names = ("security_lead", "incident_commander")


class RollbackAudit(_Data):
    levels: tuple[Level, ...]
    fields: Annotated[Names, Field(min_length=1)]
    retention_days: PositiveInt
    immutable: Literal[True]


class RollbackPolicy(_Data):
    plan_required_from_level: Level
    levels: tuple[RollbackLevel, ...]
    operation_slas: tuple[OperationSla, ...]
    sla_rule: Literal["stricter"]  # C-15: min(level SLA, operation-type SLA)
    check_interval_seconds: PositiveInt
    execution_timeout_seconds: PositiveInt
    triggers: Annotated[tuple[RollbackTrigger, ...], Field(min_length=1)]
    permit_threshold_overrides: dict[str, Name]  # permit constraint -> trigger (threshold only)
    automation_levels: tuple[AutomationLevel, ...]
    failure_escalation: Annotated[tuple[FailureEscalationStage, ...], Field(min_length=1)]
    verification_escalation: Annotated[tuple[VerificationEscalationStep, ...], Field(min_length=1)]
    rehearsal_hours_before: Positive
    enhanced_monitoring_hours: Positive
    sla_breaches_before_escalation: PositiveInt
    sla_breach_window_days: PositiveInt
    audit: RollbackAudit
    trigger_evaluation: TriggerEvaluation = TriggerEvaluation()
    permit_override_bounds: dict[str, OverrideBound] = Field(default_factory=dict)
    paging: RollbackPaging = RollbackPaging()

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: tuple) -> tuple:
        return _one_per_level(v, "rollback.levels", (2, 3, 4))

    @model_validator(mode="after")
    def _check(self) -> RollbackPolicy:
        _unique((o.operation for o in self.operation_slas), "operation_slas")
        _unique((t.name for t in self.triggers), "triggers")
        names = {t.name for t in self.triggers}
        unknown = sorted(set(self.permit_threshold_overrides.values()) - names)
        if unknown:
            raise ValueError(f"permit_threshold_overrides name unknown triggers {unknown}")
        for constraint, bound in self.permit_override_bounds.items():
            if constraint not in self.permit_threshold_overrides:
                raise ValueError(f"permit_override_bounds.{constraint}: not a permit override")
            default = self.trigger(self.permit_threshold_overrides[constraint]).threshold
            if not (isinstance(default, float | int) and bound.min <= default <= bound.max):
                raise ValueError(f"permit_override_bounds.{constraint}: the policy threshold "
                                 f"{default} lies outside [{bound.min}, {bound.max}]")
        if sorted(a.name for a in self.automation_levels) != sorted(get_args(Automation)):
            raise ValueError("automation_levels must define each automation level once")
        evidence: set[str] = set()
        for lvl in self.levels:  # sorted 2, 3, 4
            if not evidence <= set(lvl.required_evidence):
                raise ValueError(f"level {lvl.level}: required_evidence drops lower-level items")
            evidence = set(lvl.required_evidence)
        stages = self.failure_escalation
        if stages[0].from_minute != 0 or stages[-1].to_minute is not None:
            raise ValueError("failure_escalation must start at minute 0 and end open-ended")
        for a, b in zip(stages, stages[1:]):
            if a.to_minute is None or a.to_minute <= a.from_minute or b.from_minute != a.to_minute:
                raise ValueError("failure_escalation stages must be contiguous and increasing")
        return self

    def level(self, level: int) -> RollbackLevel:
        for item in self.levels:
            if item.level == level:
                return item
        raise KeyError(f"no rollback requirements for level {level}")

    def trigger(self, name: str) -> RollbackTrigger:
        for t in self.triggers:
            if t.name == name:
                return t
        raise KeyError(f"unknown rollback trigger {name!r}")

    def override_constraint(self, trigger: str) -> str | None:
        """The permit constraint (e.g. max_error_rate) that may set this trigger's threshold."""
        for constraint, name in self.permit_threshold_overrides.items():
            if name == trigger:
                return constraint
        return None

    def effective_sla_minutes(self, level: int, operation: str | None = None) -> float | None:
        """C-15: the stricter (smaller) of the level SLA and the operation-type SLA."""
        slas = [lv.sla_minutes for lv in self.levels if lv.level == level]
        slas += [o.sla_minutes for o in self.operation_slas if o.operation == operation]
        return min(slas, default=None)


# --- permit lifecycle, revocation, promotion, targets ---------------------------------------

class Transition(_Data):
    from_: Name = Field(alias="from")
    event: Name
    to: Name


class PermitLifecycle(_Data):
    states: Annotated[Names, Field(min_length=2)]
    initial: Name
    terminal: Annotated[Names, Field(min_length=1)]
    transitions: Annotated[tuple[Transition, ...], Field(min_length=1)]
    expiry_warning_minutes: Annotated[tuple[PositiveInt, ...], Field(min_length=1)]
    grace_minutes: Count
    in_progress_finish_minutes: Count
    renewal_window_hours: Positive
    monitor_interval_seconds: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> PermitLifecycle:
        _unique(self.states, "states")
        states = set(self.states)
        if self.initial not in states or not set(self.terminal) <= states:
            raise ValueError("initial and terminal states must be listed in states")
        for t in self.transitions:
            if t.from_ not in states or t.to not in states:
                raise ValueError(f"transition {t.from_} -{t.event}-> {t.to} uses an unknown state")
            if t.from_ in self.terminal:
                raise ValueError(f"terminal state {t.from_!r} cannot have outgoing transitions")
        _unique(((t.from_, t.event) for t in self.transitions), "transitions (from, event)")
        reached, frontier = {self.initial}, [self.initial]
        while frontier:
            state = frontier.pop()
            for t in self.transitions:
                if t.from_ == state and t.to not in reached:
                    reached.add(t.to)
                    frontier.append(t.to)
        if reached != states:
            lost = sorted(states - reached)
            raise ValueError(f"states unreachable from {self.initial!r}: {lost}")
        stuck = states - set(self.terminal) - {t.from_ for t in self.transitions}
        if stuck:
            raise ValueError(f"non-terminal states without a way out: {sorted(stuck)}")
        w = list(self.expiry_warning_minutes)
        if w != sorted(set(w), reverse=True):
            raise ValueError("expiry_warning_minutes must be strictly decreasing")
        return self

    def next_state(self, state: str, event: str) -> str:
        for t in self.transitions:
            if t.from_ == state and t.event == event:
                return t.to
        raise ValueError(f"permit event {event!r} is not allowed in state {state!r}")


class RevocationReason(_Data):
    id: Name
    automatic: bool
    authorized_by: Names  # roles that may revoke manually; empty when automatic
    severity: Severity | None = None  # None where the seed states none
    notify: Name
    halt: bool
    rollback: bool
    create_incident: bool
    scope: Literal["permit", "all_worker_permits", "all_related"]
    confirm_first: bool
    reason_required: bool
    rca_due_hours: PositiveInt | None = None

    @model_validator(mode="after")
    def _check(self) -> RevocationReason:
        if self.automatic == bool(self.authorized_by):
            raise ValueError(f"{self.id}: manual reasons need authorized_by, automatic ones none")
        if self.rollback and not self.halt:
            raise ValueError(f"{self.id}: a rollback needs the operation halted")
        return self


class RevocationFollowUp(_Data):
    halt_verify_seconds: PositiveInt
    rollback_verify_minutes: PositiveInt
    page_on_call_severities: tuple[Severity, ...]
    review_due_days: PositiveInt


class PromotionStep(_Data):
    from_level: Level
    to_level: Level
    min_days_at_level: Count
    min_operations: Count
    incident_free_days: Count
    approval: Name
    requires: Names


class PromotionPolicy(_Data):
    automatic: Literal[False]  # C-11: never automatic, every step explicitly approved
    steps: tuple[PromotionStep, ...]

    @model_validator(mode="after")
    def _check(self) -> PromotionPolicy:
        if [(s.from_level, s.to_level) for s in self.steps] != [(n, n + 1) for n in range(4)]:
            raise ValueError("promotion steps must be 0->1, 1->2, 2->3, 3->4 in order (C-12)")
        return self


class MetricsTargets(_Data):
    over_certification_rate_below: Fraction
    under_certification_rate_below: Fraction
    safety_violations_max: Count
    safety_violations_caught_min: Fraction
    accuracy_above: Fraction
    analysis_seconds_below: Positive
    permit_failure_rate_max: Fraction
    level_2_average_approval_hours_max: Positive
    emergency_permits_per_day_max: Count
    rollback_plan_coverage_min: Fraction
    rollback_auto_trigger_coverage_min: Fraction
    rollback_sla_met_min: Fraction
    rollback_success_min: Fraction
    rollback_automated_min: Fraction


# --- the whole governance policy ------------------------------------------------------------

class Governance(_Data):
    version: SemVer
    retention_classes: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")], PositiveInt]
    approval_gates: tuple[ApprovalGate, ...]
    approver_rules: ApproverRules
    audit: tuple[AuditRequirement, ...]
    allocations: tuple[Allocation, ...]
    extended_tokens_cap: PositiveInt
    extra_domain_tokens: Count
    compliance: dict[str, ComplianceFramework]
    operation_extra_approvers: dict[Name, Names]
    permit_types: tuple[PermitType, ...]
    emergency: EmergencyOverride
    emergency_audit: AuditRequirement
    rollback: RollbackPolicy
    permit_lifecycle: PermitLifecycle
    revocation_reasons: Annotated[tuple[RevocationReason, ...], Field(min_length=1)]
    revocation_follow_up: RevocationFollowUp
    promotion: PromotionPolicy
    metrics_targets: MetricsTargets

    @field_validator("approval_gates", "audit", "allocations")
    @classmethod
    def _per_level(cls, v: tuple, info) -> tuple:
        return _one_per_level(v, info.field_name)

    @field_validator("compliance")
    @classmethod
    def _frameworks(cls, v: dict[str, ComplianceFramework]) -> dict[str, ComplianceFramework]:
        missing = sorted(REQUIRED_FRAMEWORKS - set(v))
        if missing:
            raise ValueError(f"compliance is missing frameworks {missing}")
        _unique((k for f in v.values() for k in f.keywords), "compliance keywords")
        return v

    @field_validator("permit_types")
    @classmethod
    def _permit_types(cls, v: tuple[PermitType, ...]) -> tuple[PermitType, ...]:
        _unique((p.id for p in v), "permit_types")
        missing = sorted(REQUIRED_PERMIT_TYPES - {p.id for p in v})
        if missing:
            raise ValueError(f"permit_types is missing {missing}")
        return v

    @model_validator(mode="after")
    def _cross_check(self) -> Governance:
        for attr in ("approvers_required", "max_hours"):
            _non_decreasing(self.approval_gates, attr, "approval_gates")
        _non_decreasing(self.audit, "retention_days", "audit")
        for attr in ("tokens", "extended_tokens", "time_limit_minutes", "max_concurrent_tasks"):
            _non_decreasing(self.allocations, attr, "allocations")
        for a in self.allocations:
            if a.extended_tokens > self.extended_tokens_cap:
                raise ValueError(f"level {a.level}: extended_tokens above extended_tokens_cap")
        for lower, higher in zip(self.audit, self.audit[1:]):
            if not set(lower.fields) <= set(higher.fields):
                raise ValueError(f"audit level {higher.level} drops fields of level {lower.level}")
        for a in (*self.audit, self.emergency_audit):
            if self.retention_classes.get(a.retention_class) != a.retention_days:
                raise ValueError(f"audit level {a.level}: retention_class {a.retention_class!r} "
                                 f"does not mean {a.retention_days} days")
        base = self.audit_for(self.emergency.level)
        if self.emergency_audit.level != self.emergency.level or not (
            set(base.fields) <= set(self.emergency_audit.fields)
            and self.emergency_audit.retention_days >= base.retention_days
        ):
            raise ValueError("emergency_audit must extend the audit of the emergency level")
        for gate in self.approval_gates[1:]:
            p = self.permit_type(gate.permit_type)
            same = (p.level, p.approvers_required, set(p.approver_roles), p.approval_sla_hours,
                    p.change_advisory_board, p.auto_approve_eligible) == (
                gate.level, gate.approvers_required, set(gate.approver_roles), gate.max_hours,
                gate.change_advisory_board, gate.can_auto_approve)
            if not same:
                raise ValueError(f"approval gate {gate.level} disagrees with permit type {p.id}")
        e, p = self.emergency, self.permit_type("emergency")
        if (e.level, e.approvers_required, set(e.approver_roles), e.approval_max_minutes,
                e.duration_minutes, e.max_renewals, e.max_total_minutes) != (
                p.level, p.approvers_required, set(p.approver_roles), p.approval_sla_hours * 60,
                p.default_duration_hours * 60, p.max_renewals, p.max_duration_hours * 60):
            raise ValueError("emergency override disagrees with the 'emergency' permit type")
        _unique((r.id for r in self.revocation_reasons), "revocation_reasons")
        return self

    def _by_level(self, items: tuple, level: int, what: str):
        for item in items:
            if item.level == level:
                return item
        raise KeyError(f"no {what} for level {level}")

    def gate(self, level: int) -> ApprovalGate:
        return self._by_level(self.approval_gates, level, "approval gate")

    def audit_for(self, level: int) -> AuditRequirement:
        return self._by_level(self.audit, level, "audit requirement")

    def allocation(self, level: int) -> Allocation:
        return self._by_level(self.allocations, level, "allocation")

    def permit_type(self, id: str | None) -> PermitType:
        for p in self.permit_types:
            if p.id == id:
                return p
        raise KeyError(f"unknown permit type {id!r}")

    def retention_days(self, level: int, frameworks: Iterable[str] = (),
                       emergency: bool = False, rollback: bool = False) -> int:
        """C-9: keep a record for the longest retention that applies to it."""
        days = [self.audit_for(level).retention_days]
        days += [self.compliance[f].retention_days for f in frameworks]
        days += [self.emergency_audit.retention_days] if emergency else []
        days += [self.rollback.audit.retention_days] if rollback else []
        return max(days)


# --- resolutions of the contradictions C-1 ... C-29 -----------------------------------------

class Resolution(_Data):
    id: Annotated[str, Field(pattern=r"^C-[1-9][0-9]*$")]
    topic: OneLine
    decision: Annotated[str, Field(min_length=1)]
    reason: OneLine
    applies_to: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]


class Resolutions(_Data):
    version: SemVer
    resolutions: tuple[Resolution, ...]

    @field_validator("resolutions")
    @classmethod
    def _exactly_c1_to_c29(cls, v: tuple[Resolution, ...]) -> tuple[Resolution, ...]:
        _unique((r.id for r in v), "resolutions")
        ids = {r.id for r in v}
        missing = [i for i in RESOLUTION_IDS if i not in ids]
        unknown = sorted(ids - set(RESOLUTION_IDS))
        if missing or unknown:
            raise ValueError(f"resolutions must cover C-1..C-29 exactly: missing {missing}, "
                             f"unknown {unknown}")
        return tuple(sorted(v, key=lambda r: int(r.id[2:])))

    def get(self, id: str) -> Resolution:
        for r in self.resolutions:
            if r.id == id:
                return r
        raise KeyError(f"no resolution {id!r}")
