"""Rollback actions and tracking as a fold: rollback.event / escalation.raised in, state out;
`tick(now)` emits the escalations that are due. Pure: no clock, no I/O.

Life of a rollback (docs/rollback.md):

    triggered (evidence) -> [approval, when the trigger, the plan's automation or the level's
    human gates ask for one] -> commanded (scope, phases, regions) -> started -> step ... ->
    completed -> verified (passed) ; failed / verified(passed=false) at any point

- SLA: effective minutes = the stricter of the level SLA, the operation-type SLA (C-15) and the
  plan's own. The clock starts where the level's `sla_excludes` say: nothing excluded (L4) =
  from `triggered`; decision time excluded (L3) = from the decision (automatic triggers decide
  at once; a human's `decided_at` otherwise); approval time excluded too (L2) = from
  `commanded`. It stops at `verified` (L4: every commanded region verified). Past the deadline:
  one `rollback.sla_breach` escalation with the level's breach consequences; the second breach
  for the same key within 30 days adds `rollback.repeated_sla_breach`.
- Failure: `failed` (or no completion within the execution timeout) starts the failure path of
  the policy (0-5 min incident commander, 5-15 senior SRE + director, 15-30 CTO/VP, 30+ full
  incident response); each stage is raised once when due; a later `completed` ends the path.
- Verification failure (`verified` with passed=false): engineer_on_call at once, senior_sre
  after 5 more minutes, engineering_director after 10 more (cumulative timeouts 5 -> 10 -> 15);
  a later passing verification ends it.

Escalations carry deterministic event ids (`<rollback_id>:<tag>`), so a replay or a second
tick never raises one twice, and folding them back marks them raised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events import Envelope
from events.payloads import EscalationRaised, RollbackEvent
from rules.governance import RollbackPolicy
from rules.rollback_plans import RollbackPlan, phases_for, scope_for_trigger
from rules.triggers import TriggerDecision

PRODUCER = "rollback-tracker"
EXECUTOR_STAGES = ("started", "step", "completed", "failed", "verified")
INPUT_STAGES = frozenset({"commanded", *EXECUTOR_STAGES})  # stages that come from outside
SLA_SEVERITY = {2: "medium", 3: "high", 4: "critical"}
Outcome = Literal["awaiting_approval", "commanded", "running", "completed", "failed",
                  "verified", "verification_failed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepTiming(_Frozen):
    step: str
    at: datetime
    region: str | None = None


class RollbackRecord(_Frozen):
    rollback_id: str
    key: str | None = None
    permit_id: str | None = None
    trigger: str | None = None
    level: int | None = None
    operation_type: str | None = None
    sla_minutes: float | None = None
    approval: str | None = None  # "none" = automatic; else the approval awaited
    scope: str = "full"
    phases: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    stage: str = "triggered"
    triggered_at: datetime | None = None
    decided_at: datetime | None = None
    commanded_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    verified_at: datetime | None = None
    regions_verified: tuple[str, ...] = ()
    regions_started: tuple[str, ...] = ()
    regions_completed: tuple[str, ...] = ()
    last_started_at: datetime | None = None  # the latest `started` (a retry after a failure)
    steps: tuple[StepTiming, ...] = ()
    failures: int = 0
    failed_at: datetime | None = None  # start of the current (unresolved) failure path
    verification_failures: int = 0
    verification_failed_at: datetime | None = None
    sla_breached: bool = False
    escalations: tuple[str, ...] = ()  # tags raised so far
    inputs: tuple[str, ...] = ()  # ids of the reports (or inbound stages) folded in: redelivery
    reason: str = ""

    @property
    def outcome(self) -> Outcome:
        if self.verified_at is not None:
            return "verified"
        if self.verification_failed_at is not None:
            return "verification_failed"
        if self.failed_at is not None:
            return "failed"
        if self.completed_at is not None:
            return "completed"
        if self.started_at is not None:
            return "running"
        if self.commanded_at is not None:
            return "commanded"
        return "awaiting_approval"

    @property
    def active(self) -> bool:
        return self.verified_at is None

    def sla(self, policy: RollbackPolicy) -> float | None:
        if self.sla_minutes is not None:
            return self.sla_minutes
        return policy.effective_sla_minutes(self.level, self.operation_type) \
            if self.level is not None else None

    def sla_start(self, policy: RollbackPolicy) -> datetime | None:
        """When the SLA clock started (None: not yet -- e.g. waiting for approval at L2)."""
        excludes = set(policy.level(self.level).sla_excludes) \
            if self.level in (2, 3, 4) else {"decision_making_time", "approval_time"}
        if "approval_time" in excludes:
            return self.commanded_at
        if "decision_making_time" in excludes:
            if self.decided_at is not None:
                return self.decided_at
            return self.triggered_at if self.approval in (None, "none") else self.commanded_at
        return self.triggered_at or self.commanded_at

    def deadline(self, policy: RollbackPolicy) -> datetime | None:
        start, sla = self.sla_start(policy), self.sla(policy)
        return None if start is None or sla is None else start + timedelta(minutes=sla)

    def report(self, policy: RollbackPolicy) -> dict[str, Any]:
        """The seed's sla_tracking metrics and audit fields for this rollback."""
        start, deadline = self.sla_start(policy), self.deadline(policy)
        end = self.verified_at
        seconds = (end - start).total_seconds() if start and end else None
        return {
            "rollback_id": self.rollback_id, "key": self.key, "permit_id": self.permit_id,
            "rollback_trigger_reason": self.reason or self.trigger,
            "rollback_initiated_at": self.commanded_at, "rollback_completed_at": self.completed_at,
            "verified_at": self.verified_at, "measured_from": start, "deadline": deadline,
            "sla_minutes": self.sla(policy), "rollback_time_seconds": seconds,
            "sla_met_boolean": None if deadline is None or end is None else end <= deadline,
            "sla_buffer_seconds": None if deadline is None or end is None
            else (deadline - end).total_seconds(),
            "rollback_phases_executed": [s.step for s in self.steps],
            "phase_timings_array": [s.model_dump(mode="json") for s in self.steps],
            "scope": self.scope, "outcome": self.outcome, "failures": self.failures,
            "escalations": list(self.escalations),
        }


class RollbackTracker(_Frozen):
    records: dict[str, RollbackRecord] = Field(default_factory=dict)
    breaches: dict[str, tuple[datetime, ...]] = Field(default_factory=dict)  # key -> times

    def apply(self, envelope: Envelope) -> RollbackTracker:
        return apply(self, envelope)

    def tick(self, now: datetime, policy: RollbackPolicy,
             ) -> tuple[RollbackTracker, list[Envelope]]:
        return tick(self, now, policy)

    def active_for(self, key: str) -> RollbackRecord | None:
        """The rollback in progress for a key, if any (one at a time per key)."""
        for record in self.records.values():
            if record.key == key and record.active:
                return record
        return None


def fold(events: Iterable[Envelope], tracker: RollbackTracker | None = None) -> RollbackTracker:
    tracker = tracker or RollbackTracker()
    for event in events:
        tracker = apply(tracker, event)
    return tracker


# --- the fold ----------------------------------------------------------------------------------


def apply(tracker: RollbackTracker, envelope: Envelope) -> RollbackTracker:
    if envelope.type == "rollback.event":
        event = RollbackEvent.model_validate(envelope.payload)
        record = tracker.records.get(event.rollback_id) or RollbackRecord(
            rollback_id=event.rollback_id)
        record = _apply_stage(record, event, envelope.occurred_at)
        if event.stage in INPUT_STAGES:
            source = envelope.causation_id or envelope.event_id
            if source not in record.inputs:
                record = record.model_copy(update={"inputs": (*record.inputs, source)})
        return tracker.model_copy(update={"records": {**tracker.records,
                                                      event.rollback_id: record}})
    if envelope.type == "escalation.raised":
        return _apply_escalation(tracker, EscalationRaised.model_validate(envelope.payload),
                                 envelope.occurred_at)
    return tracker


def _context(record: RollbackRecord, event: RollbackEvent) -> dict[str, Any]:
    """Fields any stage may fill in when the record does not know them yet."""
    known = {"key": event.key, "permit_id": event.permit_id, "trigger": event.trigger,
             "level": event.level, "operation_type": event.operation_type,
             "sla_minutes": event.sla_minutes}
    return {k: v for k, v in known.items() if v is not None and getattr(record, k) is None}


def _apply_stage(record: RollbackRecord, event: RollbackEvent, at: datetime) -> RollbackRecord:
    update: dict[str, Any] = {**_context(record, event), "stage": event.stage}
    stage = event.stage
    if stage == "triggered":
        update.update(triggered_at=record.triggered_at or at, reason=record.reason or event.reason,
                      approval=event.approval if record.approval is None else record.approval)
    elif stage == "commanded":
        if record.commanded_at is None:
            update.update(commanded_at=at, decided_at=event.decided_at or record.decided_at,
                          scope=event.scope or record.scope, phases=tuple(event.phases),
                          regions=tuple(event.regions))
            if event.sla_minutes is not None:
                update["sla_minutes"] = event.sla_minutes
    elif stage == "started":
        update.update(started_at=record.started_at or at, last_started_at=at)
        if event.region and event.region not in record.regions_started:
            update["regions_started"] = (*record.regions_started, event.region)
    elif stage == "step":
        update["steps"] = (*record.steps, StepTiming(step=event.step or "?", at=at,
                                                     region=event.region))
    elif stage == "completed":
        update.update(completed_at=at, failed_at=None)
        if event.region and event.region not in record.regions_completed:
            update["regions_completed"] = (*record.regions_completed, event.region)
    elif stage == "failed":
        update.update(failures=record.failures + 1, failed_at=record.failed_at or at)
    elif stage == "verified":
        if event.passed is False:
            if record.verification_failed_at is None:
                update.update(verification_failed_at=at,
                              verification_failures=record.verification_failures + 1)
        else:
            done = tuple(dict.fromkeys((*record.regions_verified,
                                        *([event.region] if event.region else []))))
            update["regions_verified"] = done
            if not set(record.regions) - set(done) or event.region is None:
                update.update(verified_at=record.verified_at or at,
                              verification_failed_at=None, failed_at=None)
    return record.model_copy(update=update)


def _apply_escalation(tracker: RollbackTracker, escalation: EscalationRaised,
                      at: datetime) -> RollbackTracker:
    tag = escalation.details.get("tag")
    rollback_id = escalation.details.get("rollback_id")
    record = tracker.records.get(str(rollback_id)) if rollback_id else None
    if record is None or not isinstance(tag, str) or tag in record.escalations:
        return tracker
    update: dict[str, Any] = {"escalations": (*record.escalations, tag)}
    breaches = tracker.breaches
    if escalation.code == "rollback.sla_breach":
        update["sla_breached"] = True
        if record.key is not None:
            when = datetime.fromisoformat(str(escalation.details["deadline"]))
            breaches = {**breaches, record.key: (*breaches.get(record.key, ()), when)}
    if escalation.code == "rollback.execution_timeout" and record.failed_at is None:
        update.update(failures=record.failures + 1,
                      failed_at=datetime.fromisoformat(str(escalation.details["timed_out_at"])))
    records = {**tracker.records, record.rollback_id: record.model_copy(update=update)}
    return tracker.model_copy(update={"records": records, "breaches": breaches})


# --- the clock's turn --------------------------------------------------------------------------


def tick(tracker: RollbackTracker, now: datetime, policy: RollbackPolicy,
         ) -> tuple[RollbackTracker, list[Envelope]]:
    """Escalations due at `now`, folded back into the state they come out of."""
    emitted: list[Envelope] = []
    for rollback_id in list(tracker.records):
        while True:  # one escalation may make another due (timeout -> failure path)
            due = _due(tracker.records[rollback_id], tracker, now, policy)
            if not due:
                break
            for envelope in due:
                tracker = apply(tracker, envelope)
                emitted.append(envelope)
    horizon = now - timedelta(days=policy.sla_breach_window_days)
    kept = {k: r for k, r in tracker.records.items()
            if r.verified_at is None or r.verified_at >= horizon}
    breaches = {k: tuple(t for t in ts if t >= horizon) for k, ts in tracker.breaches.items()}
    breaches = {k: ts for k, ts in breaches.items() if ts}
    if kept != tracker.records or breaches != tracker.breaches:
        tracker = tracker.model_copy(update={"records": kept, "breaches": breaches})
    return tracker, emitted


def _escalation(record: RollbackRecord, tag: str, now: datetime, *, code: str, reason: str,
                escalate_to: Iterable[str], severity: str, actions: Iterable[str] = (),
                details: dict[str, Any] | None = None, subject_kind: str = "rollback",
                subject_id: str | None = None) -> Envelope:
    payload = EscalationRaised(
        subject_kind=subject_kind,  # type: ignore[arg-type]  # literal checked by pydantic
        subject_id=subject_id or record.rollback_id, reason=reason,
        escalate_to=list(escalate_to), severity=severity,  # type: ignore[arg-type]
        code=code, actions=list(actions),
        details={"tag": tag, "rollback_id": record.rollback_id, **(details or {})})
    return Envelope(event_id=f"{record.rollback_id}:{tag}", type="escalation.raised",
                    occurred_at=now, producer=PRODUCER,
                    subject=record.key or record.rollback_id,
                    correlation_id=record.rollback_id,
                    payload=payload.model_dump(mode="json"))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _due(record: RollbackRecord, tracker: RollbackTracker, now: datetime,
         policy: RollbackPolicy) -> list[Envelope]:
    out: list[Envelope] = []
    raised = set(record.escalations)
    paging = policy.paging

    # A rollback waiting for a human: ask once.
    if record.approval not in (None, "none") and record.commanded_at is None and \
            "approval" not in raised:
        roles = next((r for name, r in paging.approval_roles.items() if name == record.approval),
                     paging.approval_roles["manual"])
        out.append(_escalation(
            record, "approval", now, code="rollback.approval_required",
            reason=f"rollback {record.rollback_id} for {record.key} waits for {record.approval} "
                   f"approval ({record.trigger}: {record.reason})",
            escalate_to=roles, severity="high", actions=["approve_or_decline_rollback"],
            details={"trigger": record.trigger, "approval": record.approval}))

    # SLA deadline.
    deadline, sla = record.deadline(policy), record.sla(policy)
    finished = record.verified_at
    if deadline is not None and "sla_breach" not in raised and \
            (finished or now) > deadline and (finished is None or finished > deadline):
        level = record.level if record.level in (2, 3, 4) else None
        consequences = policy.level(level).breach_consequences if level else ()
        out.append(_escalation(
            record, "sla_breach", now, code="rollback.sla_breach",
            reason=f"rollback {record.rollback_id} not verified within its {sla:g}-minute SLA "
                   f"(level {record.level}, {record.operation_type or 'any operation'}; "
                   f"deadline {deadline.isoformat()})",
            escalate_to=paging.sla_breach_roles, severity=SLA_SEVERITY.get(level or 2, "medium"),
            actions=consequences,
            details={"deadline": deadline.isoformat(), "sla_minutes": sla, "level": record.level,
                     "measured_from": _iso(record.sla_start(policy)),
                     "outcome": record.outcome}))
        if record.key is not None:
            window = timedelta(days=policy.sla_breach_window_days)
            recent = [t for t in tracker.breaches.get(record.key, ()) if t > deadline - window]
            if len(recent) + 1 >= policy.sla_breaches_before_escalation:
                out.append(_escalation(
                    record, "repeated_sla_breach", now, code="rollback.repeated_sla_breach",
                    reason=f"{len(recent) + 1} rollback SLA breaches for {record.key} within "
                           f"{policy.sla_breach_window_days} days",
                    escalate_to=paging.repeated_breach_roles, severity="high",
                    actions=["rollback_plan_review", "additional_automation"],
                    details={"breaches": [_iso(t) for t in (*recent, deadline)]},
                    subject_kind="monitor", subject_id=record.key))

    # Execution timeout: commanded, neither completed nor failed in time -> a failure.
    if record.commanded_at is not None and record.completed_at is None and \
            record.failed_at is None and record.verified_at is None and \
            "execution_timeout" not in raised:
        timed_out_at = record.commanded_at + timedelta(seconds=policy.execution_timeout_seconds)
        if now >= timed_out_at:
            out.append(_escalation(
                record, "execution_timeout", now, code="rollback.execution_timeout",
                reason=f"rollback {record.rollback_id} has not completed "
                       f"{policy.execution_timeout_seconds} s after its command; treated as "
                       "failed", escalate_to=policy.failure_escalation[0].roles,
                severity="critical", actions=list(policy.failure_escalation[0].actions),
                details={"timed_out_at": timed_out_at.isoformat()}))
            return out  # folded first: the failure path then starts at timed_out_at

    # Failure path.
    if record.failed_at is not None and record.verified_at is None:
        elapsed = now - record.failed_at
        for i, stage in enumerate(policy.failure_escalation):
            tag = f"failure:{record.failures}:{i}"
            if tag in raised or elapsed < timedelta(minutes=stage.from_minute):
                continue
            until = f"-{stage.to_minute}" if stage.to_minute is not None else "+"
            out.append(_escalation(
                record, tag, now, code="rollback.failure_escalation",
                reason=f"rollback {record.rollback_id} failed at {record.failed_at.isoformat()} "
                       f"and is not recovered: stage {i + 1} ({stage.from_minute}{until} min)",
                escalate_to=stage.roles, severity="high" if i == 0 else "critical",
                actions=stage.actions,
                details={"stage": i + 1, "from_minute": stage.from_minute,
                         "to_minute": stage.to_minute, "failed_at": _iso(record.failed_at)}))

    # Verification failure path (cumulative timeouts).
    if record.verification_failed_at is not None and record.verified_at is None:
        elapsed = now - record.verification_failed_at
        offset = 0.0
        for i, step in enumerate(policy.verification_escalation):
            tag = f"verification:{record.verification_failures}:{i}"
            if tag not in raised and elapsed >= timedelta(minutes=offset):
                last = i == len(policy.verification_escalation) - 1
                out.append(_escalation(
                    record, tag, now, code="rollback.verification_failed",
                    reason=f"rollback {record.rollback_id} failed verification at "
                           f"{record.verification_failed_at.isoformat()}: {step.role} has "
                           f"{step.timeout_minutes:g} min to {step.action.replace('_', ' ')}",
                    escalate_to=[step.role], severity="critical" if last else "high",
                    actions=[step.action],
                    details={"step": i + 1, "after_minutes": offset,
                             "timeout_minutes": step.timeout_minutes}))
            offset += step.timeout_minutes
    return out


# --- from a trigger decision to events ---------------------------------------------------------


class KeyContext(_Frozen):
    """What the service knows about a monitored key (from its permit and plan)."""

    key: str
    permit_id: str | None = None
    level: int | None = None
    operation_type: str | None = None
    plan: RollbackPlan | None = None


def rollback_id_for(key: str, trigger: str, at: datetime) -> str:
    """Deterministic: the same decision from a replay or the other runner gets the same id."""
    digest = hashlib.sha256(f"{key}|{trigger}|{at.isoformat()}".encode()).hexdigest()
    return f"rb-{digest[:20]}"


def approval_needed(decision: TriggerDecision, context: KeyContext,
                    policy: RollbackPolicy) -> str:
    """"none" when the rollback may run at once; else the approval it waits for: the
    trigger's own, or "manual" for a plan whose automation wants a human (semi_automated) or a
    level with human gates (L4, C-14)."""
    if decision.approval != "none":
        return decision.approval
    return approval_for(context.level, context.plan, policy)


def approval_for(level: int | None, plan: RollbackPlan | None, policy: RollbackPolicy) -> str:
    """The approval a rollback of work at `level` under `plan` waits for, whoever triggered it
    (this service, or the permit service's running checks): "manual" when the plan's automation
    wants a human or the level has human gates (L4, C-14), else "none"."""
    if plan is not None:
        automation = next(a for a in policy.automation_levels
                          if a.name == plan.rollback_procedure.automation_level)
        if automation.human_approval:
            return "manual"
    if level in (2, 3, 4) and policy.level(level).human_gates:
        return "manual"
    return "none"


def effective_sla(context: KeyContext, policy: RollbackPolicy) -> float | None:
    """C-15 stricter of level and operation type, and the plan's own sla_minutes."""
    slas = []
    if context.level is not None:
        found = policy.effective_sla_minutes(context.level, context.operation_type)
        if found is not None:
            slas.append(found)
    if context.plan is not None:
        slas.append(float(context.plan.rollback_procedure.sla_minutes))
    return min(slas, default=None)


def decision_events(decision: TriggerDecision, context: KeyContext, policy: RollbackPolicy,
                    now: datetime, producer: str = "rollback-service") -> list[Envelope]:
    """A rollback decision -> `triggered` (with the evidence), and `commanded` at once when no
    approval is needed. Scope: the plan's partial scenario for this trigger, else full."""
    rollback_id = rollback_id_for(decision.key, decision.trigger, decision.at)
    approval = approval_needed(decision, context, policy)
    sla = effective_sla(context, policy)
    common = {"rollback_id": rollback_id, "permit_id": context.permit_id, "key": decision.key,
              "trigger": decision.trigger, "level": context.level,
              "operation_type": context.operation_type, "sla_minutes": sla}
    evidence = {**decision.evidence_dict(), "reason": decision.reason,
                "severity": decision.severity, "observed_at": decision.at.isoformat(),
                "security_incident": decision.security_incident}
    triggered = RollbackEvent(stage="triggered", evidence=evidence, approval=approval,
                              reason=decision.reason, **common)
    events = [Envelope(event_id=f"{rollback_id}:triggered", type="rollback.event",
                       occurred_at=now, producer=producer, subject=decision.key,
                       correlation_id=rollback_id, payload=triggered.model_dump(mode="json"))]
    if approval == "none":
        events.append(command_event(rollback_id, context, decision.trigger, now, policy,
                                    actor=producer, producer=producer))
    return events


def command_event(rollback_id: str, context: KeyContext, trigger: str | None, now: datetime,
                  policy: RollbackPolicy, *, scope: str | None = None, actor: str,
                  decided_at: datetime | None = None, regions: Iterable[str] = (),
                  producer: str = "rollback-service") -> Envelope:
    """The order to executors: which scope, which phases, which regions (L4: in parallel)."""
    plan = context.plan
    if scope is None:
        scope = scope_for_trigger(plan, trigger) if plan is not None and trigger else "full"
    phases = phases_for(plan, scope) if plan is not None else []
    if not regions and plan is not None and plan.multi_region_coordination is not None:
        regions = plan.multi_region_coordination.regions
    payload = RollbackEvent(
        rollback_id=rollback_id, permit_id=context.permit_id, stage="commanded",
        trigger=trigger, key=context.key, level=context.level,
        operation_type=context.operation_type, sla_minutes=effective_sla(context, policy),
        scope=scope, phases=phases, regions=list(regions), actor=actor, decided_at=decided_at,
        reason=f"roll back {scope}" + (f" ({len(phases)} phases)" if phases else ""))
    return Envelope(event_id=f"{rollback_id}:commanded", type="rollback.event", occurred_at=now,
                    producer=producer, subject=context.key, correlation_id=rollback_id,
                    payload=payload.model_dump(mode="json"))


# --- executors' reports: checked against the rollback's state -----------------------------------


class StageRefusal(_Frozen):
    """Why a reported stage is not taken (`code` stable: rollback.unknown, .not_commanded,
    .finished, .stage_out_of_order, .stage_duplicate, .unknown_region)."""

    code: str
    message: str


def stage_refusal(record: RollbackRecord | None, rollback_id: str, stage: str, *,
                  step: str | None = None, region: str | None = None,
                  passed: bool | None = None) -> StageRefusal | None:
    """None when `stage` may follow what the record knows; else why not.

    Order (per region when the command named regions): commanded -> started -> step ... ->
    completed -> verified. `failed` may come any time after the command and before
    verification; after it, a retry starts again (`started`, steps, `completed`). After a
    failed verification the rollback may be verified again or run again. Nothing after a
    passing verification."""
    def no(code: str, message: str) -> StageRefusal:
        return StageRefusal(code=f"rollback.{code}", message=f"rollback {rollback_id}: {message}")

    if record is None:
        return no("unknown", "no such rollback (never triggered here, or verified more than "
                  "the retention window ago)")
    if record.verified_at is not None:
        return no("finished", f"verified at {record.verified_at.isoformat()}; no stage after "
                  "a passing verification")
    if stage == "commanded":
        if record.commanded_at is not None:
            return no("stage_duplicate", f"already commanded at {record.commanded_at.isoformat()}")
        return None
    if stage == "triggered":
        return no("stage_out_of_order", "'triggered' is decided here, from samples and alerts")
    if record.commanded_at is None:
        return no("not_commanded", f"waits for {record.approval or 'a'} approval; executors "
                  "report stages after the command")
    if region is not None and record.regions and region not in record.regions:
        return no("unknown_region", f"region {region!r} was not commanded (commanded: "
                  f"{', '.join(record.regions)})")
    failing = record.failed_at is not None or record.verification_failed_at is not None
    started = record.started_at is not None and (
        region is None or not record.regions_started or region in record.regions_started)
    completed = record.completed_at is not None and (
        region is None or not record.regions_completed or region in record.regions_completed)
    if stage == "started":
        if failing:
            return None  # a retry
        if completed:
            return no("stage_out_of_order", "completed already; not started again unless it "
                      "failed")
        if started and (region is None or region in record.regions_started):
            return no("stage_duplicate", "started already" + (f" in {region}" if region else ""))
        return None
    if stage == "step":
        if not started:
            return no("stage_out_of_order", f"step {step!r} reported before 'started'")
        if completed and not failing:
            return no("stage_out_of_order", f"step {step!r} reported after 'completed'")
        if not failing and any(s.step == step and s.region == region for s in record.steps):
            return no("stage_duplicate", f"step {step!r} reported already"
                      + (f" in {region}" if region else ""))
        return None
    if stage == "completed":
        if not started:
            return no("stage_out_of_order", "'completed' reported before 'started'")
        if completed and not failing:
            return no("stage_duplicate", "completed already" + (f" in {region}" if region else ""))
        return None
    if stage == "failed":
        if record.failed_at is not None and (record.last_started_at is None
                                             or record.last_started_at <= record.failed_at):
            return no("stage_duplicate", f"failed already at {record.failed_at.isoformat()} "
                      "and not started again")
        if completed and record.verification_failed_at is None:
            return no("stage_out_of_order", "completed already; a bad result is reported as "
                      "'verified' with passed=false")
        return None
    if stage == "verified":
        if not completed or record.failed_at is not None:
            return no("stage_out_of_order", "'verified' reported before 'completed'")
        if passed is False and record.verification_failed_at is not None:
            return no("stage_duplicate", "verification failed already at "
                      f"{record.verification_failed_at.isoformat()}")
        if passed is not False and region is not None and region in record.regions_verified:
            return no("stage_duplicate", f"verified already in {region}")
        return None
    return no("stage_out_of_order", f"unknown stage {stage!r}")


def reported_event(record: RollbackRecord, report: Envelope, now: datetime,
                   producer: str = "rollback-service") -> Envelope:
    """An accepted `rollback.stage_reported` -> the `rollback.event` stage the tracker folds.
    Timed by our clock (`now`, when it arrived), not the executor's: SLA time is measured
    here. Its id derives from the report's, so a redelivered report makes the same event."""
    body = report.payload
    digest = hashlib.sha256(report.event_id.encode()).hexdigest()[:16]
    payload = RollbackEvent(
        rollback_id=record.rollback_id, permit_id=record.permit_id, stage=body["stage"],
        trigger=record.trigger, key=record.key, level=record.level,
        operation_type=record.operation_type, step=body.get("step"),
        region=body.get("region"), passed=body.get("passed"), actor=body.get("executor"),
        reason=str(body.get("reason") or ""))
    return Envelope(event_id=f"{record.rollback_id}:{body['stage']}:{digest}",
                    type="rollback.event", occurred_at=now, producer=producer,
                    subject=record.key or record.rollback_id, correlation_id=record.rollback_id,
                    causation_id=report.event_id, payload=payload.model_dump(mode="json"))
