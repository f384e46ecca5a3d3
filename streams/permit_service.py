"""The permit service: live permits, approvals, overrides and enforcement over the pure rules.

State is a fold over recorded events (`observe`): `load(ledger events)` at start rebuilds
exactly what `handle` built before a restart, pending timers included. `handle(envelope, now)`
validates one inbound event and returns the events it caused, each recorded (through the
`record` callable) and folded in before the next is computed; `tick(now)` emits what is due
(approval deadlines, expiries, the end of emergency overrides, overruns, overdue reviews).
The fold trusts the ledger: it applies recorded outcomes, it never re-decides them.

Event ids of everything we derive are deterministic (from the permit's history length or the
causing event's id), so a replay after a crash or a second delivery is refused by the ledger
as a duplicate instead of being recorded twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from events import Envelope, InputError, describe_validation_error, format_time, parse_payload
from events import payloads as p
from events.envelope import utc_now
from events.signing import SigningError, request_sha256
from rules.approvals import (
    ApproverKey,
    QuorumSpec,
    check_approval,
    missing_approvals,
    quorum_for,
    registered_key,
)
from rules.authorize import Verdict, assess
from rules.enforcement import (
    MONITORED_STATES,
    execution_check,
    metric_check,
    overrun_due,
    response_for,
)
from rules.governance import Governance
from rules.overrides import check_override
from rules.permits import (
    EMERGENCY_TYPE,
    EVENT_TYPES,
    LIVE_STATES,
    TRANSITION_TYPES,
    Approval,
    AuditSpec,
    DecisionInfo,
    PendingRenewal,
    Permit,
    Refusal,
    Scope,
    approval_deadline,
    audit_record,
    audit_spec,
    check_renewal,
    check_request,
    expiry_warning_due,
    expiry_warning_mark,
    renewal_document,
    renewal_sha256,
    renewed_end,
    transition,
)
from rules.policy import Policy
from rules.rollback_plans import parse_plan
from rules.rollback_tracking import approval_for
from rules.scoring_model import normalise_name

PRODUCER = "permits"
SYSTEM = "system"
HANDLED_TYPES = frozenset({
    "permit.requested", "permit.renewal_requested", "permit.closure_requested",
    "approval.signed", "authorization.requested", "override.requested",
    "override.review_submitted", "execution.reported", "metric.sample"})
# permit.request_refused codes that end a pending renewal (others refuse a new request only)
RENEWAL_ENDINGS = frozenset({"permit.renewal_denied", "permit.renewal_lapsed"})


@dataclass
class Result:
    """What one inbound event did: the events recorded, and why it was refused, if it was."""

    events: list[Envelope] = field(default_factory=list)
    refusal: Refusal | None = None
    subject: str | None = None
    duplicate: bool = False
    verdict: Verdict | None = None


@dataclass
class OverrideState:
    override_id: str
    incident_ticket: str
    granted_at: datetime
    expires_at: datetime
    review_due_at: datetime
    revoked: bool = False
    review_completed: bool = False
    review_escalated: bool = False


def _t(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


class PermitService:
    def __init__(self, policy: Policy, record: Callable[[Envelope], Any],
                 now_fn: Callable[[], datetime] = utc_now) -> None:
        self.policy = policy
        self.gov: Governance = policy.governance
        self.lifecycle = self.gov.permit_lifecycle
        self._record = record
        self.now_fn = now_fn
        self.permits: dict[str, Permit] = {}
        self.live: set[str] = set()  # permits not in a terminal state: what tick looks at
        self.decisions: dict[str, DecisionInfo] = {}
        self.latest_decision: dict[str, str] = {}  # task id -> decision event id
        self.registry: dict[str, dict[str, ApproverKey]] = {}
        self.signatures: set[str] = set()
        # Ids of handled inbound requests, approvals, overrides (a redelivery is a no-op, not a
        # replay). Samples, execution reports and authorizations need none: their derived
        # events have deterministic ids and every move is checked against the state.
        self.seen: set[str] = set()
        self.overrides: dict[str, OverrideState] = {}
        self.ticket_overrides: Counter[str] = Counter()
        self._stamp_cache: tuple[datetime | None, str] = (None, "")
        self._audit_cache: dict[str, tuple[Permit, dict[str, Any]]] = {}
        self.destructive_ops = frozenset(
            normalise_name(n) for n in policy.scoring.operations["data_deletion"].names)

    # --- the fold ----------------------------------------------------------------------------

    def load(self, events: Iterable[Envelope | Mapping[str, Any]]) -> int:
        count = 0
        for event in events:
            envelope = event if isinstance(event, Envelope) else Envelope.model_validate(event)
            self.observe(envelope)
            count += 1
        return count

    def observe(self, e: Envelope) -> None:
        """Fold one recorded event into the state (never decides, never records)."""
        kind = e.type
        if kind in TRANSITION_TYPES:
            self._fold_transition(e, e.payload)  # JSON-native fields: no model needed
        elif kind == "certification.decided":
            info = DecisionInfo.from_record(e.event_id, e.payload)
            self.decisions[e.event_id] = info
            self.latest_decision[info.task_id] = e.event_id
        elif kind == "approver.registered":
            key = registered_key(p.ApproverRegistered.model_validate(e.payload))
            self.registry.setdefault(key.approver_id, {})[key.key_id] = key
        elif kind == "permit.requested":
            self.seen.add(e.event_id)
            self._fold_request(e, p.PermitRequested.model_validate(e.payload))
        elif kind == "approval.signed":
            self.seen.add(e.event_id)
            self._fold_approval(e, p.ApprovalSigned.model_validate(e.payload))
        elif kind in ("approval.refused", "permit.request_refused"):
            if e.causation_id:
                self.seen.add(e.causation_id)
            if kind == "permit.request_refused" and e.payload.get("code") in RENEWAL_ENDINGS:
                self._end_renewal(e.payload.get("permit_id"))
        elif kind == "permit.expiry_warning":
            self._fold_warning(p.PermitExpiryWarning.model_validate(e.payload))
        elif kind == "override.requested":
            self.seen.add(e.event_id)
            self.signatures.add(e.payload.get("signature", ""))
        elif kind == "override.event":
            self._fold_override(e, p.EmergencyOverride.model_validate(e.payload))
        elif kind == "metric.sample":  # (replays: the trigger windows ignore old samples)
            self._fold_sample(p.MetricSample.model_validate(e.payload))
        elif kind == "escalation.raised":
            self._fold_escalation(p.EscalationRaised.model_validate(e.payload))
        elif kind == "permit.renewal_requested":
            self.seen.add(e.event_id)
            self._fold_renewal_request(e, p.PermitRenewalRequested.model_validate(e.payload))
        elif kind in ("permit.closure_requested", "override.review_submitted"):
            self.seen.add(e.event_id)

    def _put(self, permit: Permit) -> None:
        self.permits[permit.permit_id] = permit
        if permit.state in self.lifecycle.terminal:
            self.live.discard(permit.permit_id)
        else:
            self.live.add(permit.permit_id)

    def _fold_request(self, e: Envelope, req: p.PermitRequested) -> None:
        decision = self.decisions.get(req.decision_event_id)
        self._put(Permit(
            permit_id=req.permit_id, permit_type=req.permit_type, level=req.level,
            state=self.lifecycle.initial, requested_by=req.requested_by,
            worker_id=req.worker_id, scope=Scope.of(req.scope), justification=req.justification,
            request_sha256=req.request_sha256, requested_at=e.occurred_at,
            audit=audit_spec(self.gov, req.level, decision),
            request={k: v for k, v in e.payload.items()}, task_id=req.task_id,
            decision_event_id=req.decision_event_id, rollback_plan=req.rollback_plan,
            constraints=dict(req.constraints),
            compliance_frameworks=decision.compliance_frameworks if decision else ()))

    def _fold_transition(self, e: Envelope, t: Mapping[str, Any]) -> None:
        permit = self.permits.get(t["permit_id"])
        if permit is None:
            return
        d = t.get("details") or {}
        reason = t.get("reason") or ""
        changes: dict[str, Any] = {"state": t["to_state"], "reason": reason or permit.reason}
        if "quorum" in d:
            changes["quorum"] = QuorumSpec.from_dict(d["quorum"])
        if "approval_deadline" in d:
            changes["approval_deadline"] = datetime.fromisoformat(d["approval_deadline"])
        if "audit_spec" in d:
            a = d["audit_spec"]
            changes["audit"] = AuditSpec(level=a["level"], fields=tuple(a["fields"]),
                                         retention_days=a["retention_days"],
                                         retention_class=a["retention_class"])
        if e.type == "permit.issued":
            changes["issued_at"] = e.occurred_at
        elif e.type == "permit.execution_started":
            changes["started_at"] = e.occurred_at
            changes["worker_id"] = d.get("worker_id", permit.worker_id)
        elif e.type == "permit.execution_finished":
            changes["finished_at"] = e.occurred_at
        elif e.type == "permit.renewed":
            changes["renewals"] = permit.renewals + 1
            changes["pending_renewal"] = None
            changes["scope"] = replace(permit.scope,
                                       not_after=datetime.fromisoformat(d["not_after"]))
        entry = {"event": e.type, "from": t["from_state"], "to": t["to_state"],
                 "at": e.occurred_at, "reason": reason, "actor": t.get("actor")}
        changes["history"] = (*permit.history, entry)
        self._put(replace(permit, **changes))

    def _fold_approval(self, e: Envelope, a: p.ApprovalSigned) -> None:
        self.signatures.add(a.signature)
        permit = self.permits.get(a.permit_id)
        if permit is None or a.decision not in ("approve", "deny"):
            return
        approval = Approval(approver_id=a.approver_id, role=a.approver_role,
                            decision=a.decision, decided_at=a.decided_at,
                            recorded_at=e.occurred_at, key_id=a.key_id, signature=a.signature)
        renewal = permit.pending_renewal
        if renewal is not None and a.request_sha256 == renewal.request_sha256:
            renewal = replace(renewal, approvals=(*renewal.approvals, approval))
            self._put(replace(permit, pending_renewal=renewal))
            return
        self._put(replace(permit, approvals=(*permit.approvals, approval)))

    def _fold_renewal_request(self, e: Envelope, r: p.PermitRenewalRequested) -> None:
        """A recorded renewal request was accepted: it waits for approvals until permit.renewed
        (at once for types that renew without approval) or its denial / lapse."""
        permit = self.permits.get(r.permit_id)
        if permit is None:
            return
        document = renewal_document(permit, r.requested_by, r.extension_hours, r.justification,
                                    e.occurred_at)
        self._put(replace(permit, pending_renewal=PendingRenewal(
            number=document["renewal"], document=document,
            request_sha256=renewal_sha256(document), requested_by=r.requested_by,
            requested_at=e.occurred_at, extension_hours=r.extension_hours)))

    def _end_renewal(self, permit_id: Any) -> None:
        permit = self.permits.get(permit_id) if isinstance(permit_id, str) else None
        if permit is not None and permit.pending_renewal is not None:
            self._put(replace(permit, pending_renewal=None))

    def _fold_warning(self, w: p.PermitExpiryWarning) -> None:
        permit = self.permits.get(w.permit_id)
        if permit is None:
            return
        sent = permit.warned
        if sent is None or sent[0] != w.expires_at or w.minutes_left < sent[1]:
            self._put(replace(permit, warned=(w.expires_at, w.minutes_left)))

    def _fold_override(self, e: Envelope, o: p.EmergencyOverride) -> None:
        state = self.overrides.get(o.override_id)
        if o.stage == "granted" and o.scope is not None and o.expires_at is not None:
            self.ticket_overrides[o.incident_ticket] += 1
            self.overrides[o.override_id] = OverrideState(
                override_id=o.override_id, incident_ticket=o.incident_ticket,
                granted_at=e.occurred_at, expires_at=o.expires_at,
                review_due_at=o.review_due_at or o.expires_at)
            self._put(Permit(
                permit_id=o.override_id, permit_type=EMERGENCY_TYPE, level=o.level,
                state="issued", requested_by=o.commander_id, worker_id=o.worker_id,
                scope=Scope.of(o.scope, e.occurred_at, o.expires_at), justification=o.reason,
                request_sha256=o.details.get("request_sha256", ""), requested_at=e.occurred_at,
                audit=audit_spec(self.gov, o.level, emergency=True),
                request=o.details.get("request", {}), emergency=True,
                incident_ticket=o.incident_ticket, issued_at=e.occurred_at,
                approvals=(Approval(o.commander_id, o.commander_role, "approve", e.occurred_at,
                                    e.occurred_at, "", ""),),
                history=({"event": "override.event", "from": None, "to": "issued",
                          "at": e.occurred_at, "reason": o.reason,
                          "actor": o.commander_id},)))
        elif state is not None and o.stage == "revoked":
            state.revoked = True
        elif state is not None and o.stage == "review_completed":
            state.review_completed = True

    def _fold_sample(self, sample: p.MetricSample) -> None:
        permit = self.permits.get(sample.key)
        if permit is None or permit.state not in MONITORED_STATES:
            return
        updated, _ = metric_check(permit, permit.windows, sample, self.gov)
        if updated:
            self._put(replace(permit, windows={**permit.windows, **updated}))

    def _fold_escalation(self, x: p.EscalationRaised) -> None:
        if x.code == "permit.approval_deadline_passed" and x.subject_id in self.permits:
            self._put(replace(self.permits[x.subject_id], escalated=True))
        elif x.code == "override.review_overdue" and x.subject_id in self.overrides:
            self.overrides[x.subject_id].review_escalated = True

    # --- emitting ----------------------------------------------------------------------------

    def _emit(self, envelope: Envelope, out: list[Envelope]) -> None:
        """Record, then fold: state never runs ahead of the ledger."""
        fresh = self._record(envelope)
        if fresh is not False:
            self.observe(envelope)
        out.append(envelope)

    def _event(self, kind: str, subject: str, payload: BaseModel | dict[str, Any],
               now: datetime, event_id: str, cause: Envelope | None = None) -> Envelope:
        return Envelope(
            event_id=event_id, type=kind, occurred_at=now, producer=PRODUCER, subject=subject,
            correlation_id=(cause.correlation_id or cause.event_id) if cause else None,
            causation_id=cause.event_id if cause else None,
            payload=payload if isinstance(payload, dict) else payload.model_dump(mode="json"))

    def _stamp(self, now: datetime) -> str:
        if self._stamp_cache[0] != now:
            self._stamp_cache = (now, format_time(now))
        return self._stamp_cache[1]

    def _permit_audit(self, permit: Permit) -> dict[str, Any]:
        """The permit's part of the audit fields, computed once per version of the permit."""
        cached = self._audit_cache.get(permit.permit_id)
        if cached is None or cached[0] is not permit:
            values = self._audit_values(permit, permit.requested_at)
            del values["timestamp"]
            cached = (permit, values)
            self._audit_cache[permit.permit_id] = cached
        return cached[1]

    def _audit_values(self, permit: Permit, now: datetime, **extra: Any) -> dict[str, Any]:
        approvals = [a for a in permit.approvals if a.decision == "approve"]
        decision = self.decisions.get(permit.decision_event_id or "")
        values: dict[str, Any] = {
            "operation_type": sorted(permit.scope.operations), "timestamp": format_time(now),
            "worker_id": permit.worker_id, "resources_accessed": sorted(permit.scope.services),
            "approver_id": [a.approver_id for a in approvals],
            "approval_timestamp": [format_time(a.recorded_at) for a in approvals],
            "certification_level": permit.level,
            "data_accessed": sorted(permit.scope.data_classes),
            "rollback_capability": bool(permit.rollback_plan) or permit.emergency,
            "security_context": {"requested_by": permit.requested_by,
                                 "environment": permit.scope.environment,
                                 "regions": sorted(permit.scope.regions)},
            "compliance_tags": list(permit.compliance_frameworks),
            "systems_affected": sorted(permit.scope.services),
            "change_justification": permit.justification,
            "risk_assessment": {"score": decision.score} if decision else None,
            "approval_reasoning": [a.role for a in approvals],
        }
        if permit.emergency:
            values.update({"emergency_justification": permit.justification,
                           "incident_id": permit.incident_ticket,
                           "authorized_by": permit.requested_by,
                           "post_incident_review_id": f"pir-{permit.permit_id}"})
        values.update(extra)
        return values

    def _move(self, permit_id: str, event: str, now: datetime, out: list[Envelope], *,
              actor: str | None = None, reason: str = "", cause: Envelope | None = None,
              details: dict[str, Any] | None = None) -> Refusal | None:
        permit = self.permits[permit_id]
        target = transition(self.lifecycle, permit.state, event)
        if isinstance(target, Refusal):
            return target
        kind = EVENT_TYPES[event]
        info = dict(details or {})
        info.setdefault("audit", audit_record(permit.audit, self._audit_values(permit, now)))
        payload = p.PermitTransition(permit_id=permit_id, from_state=permit.state,
                                     to_state=target, reason=reason, actor=actor, details=info)
        event_id = f"{permit_id}#{len(permit.history) + 1}:{kind}"
        self._emit(self._event(kind, permit_id, payload, now, event_id, cause), out)
        return None

    def _rollback(self, permit: Permit, trigger: str, evidence: dict[str, Any], now: datetime,
                  out: list[Envelope], cause: Envelope | None, reason: str) -> None:
        """Hand over to the rollback engine: a `triggered` rollback event, nothing more."""
        policy = self.gov.rollback
        sla = policy.effective_sla_minutes(permit.level) if permit.level >= 2 else None
        rollback_id = f"rb-{permit.permit_id}-{trigger}"
        # The work stops now (the permit is revoked); whether the rollback runs at once or waits
        # for a human is the plan's and the level's to say (L4 human gates, C-14), as for
        # rollbacks the rollback service triggers itself.
        plan = (parse_plan(permit.rollback_plan, permit.level, policy)[0]
                if permit.rollback_plan else None)
        payload = p.RollbackEvent(
            rollback_id=rollback_id, permit_id=permit.permit_id, stage="triggered",
            trigger=trigger, evidence=evidence, sla_minutes=sla, key=permit.permit_id,
            level=permit.level, regions=sorted(permit.scope.regions),
            approval=approval_for(permit.level, plan, policy), actor=PRODUCER, reason=reason)
        self._emit(self._event("rollback.event", permit.permit_id, payload, now,
                               f"{rollback_id}:triggered", cause), out)

    def _escalate(self, kind: str, subject: str, code: str, reason: str, to: list[str],
                  severity: str, now: datetime, out: list[Envelope],
                  cause: Envelope | None = None, details: dict[str, Any] | None = None) -> None:
        payload = p.EscalationRaised.model_validate({
            "subject_kind": kind, "subject_id": subject, "reason": reason, "escalate_to": to,
            "severity": severity, "code": code, "details": details or {}})
        self._emit(self._event("escalation.raised", subject, payload, now,
                               f"{subject}:escalation:{code}", cause), out)

    def _revoke(self, permit_id: str, reason_id: str, message: str, now: datetime,
                out: list[Envelope], *, actor: str = SYSTEM, cause: Envelope | None = None,
                trigger: str | None = None, evidence: dict[str, Any] | None = None) -> None:
        """Revoke per the governance revocation reason: rollback, incident, override end."""
        permit = self.permits[permit_id]
        was = permit.state
        reason = next((r for r in self.gov.revocation_reasons if r.id == reason_id), None)
        details = {"revocation_reason": reason_id, "halt": reason.halt if reason else True,
                   "notify": reason.notify if reason else None}
        if self._move(permit_id, "revoke", now, out, actor=actor, reason=message, cause=cause,
                      details=details) is not None:
            return
        rollback = (reason.rollback if reason else False) or trigger is not None
        if rollback and was in MONITORED_STATES:
            self._rollback(permit, trigger or reason_id, evidence or {}, now, out, cause,
                           message)
        if reason is not None and reason.create_incident:
            self._escalate("permit", permit_id, f"permit.{reason_id}", message,
                           ["security_team", "approvers"], reason.severity or "high", now, out,
                           cause, {"rca_due_hours": reason.rca_due_hours})
        if permit.emergency:
            self._override_stage(permit_id, "revoked", message, now, out, cause)

    def _override_stage(self, override_id: str, stage: str, reason: str, now: datetime,
                        out: list[Envelope], cause: Envelope | None) -> None:
        permit = self.permits[override_id]
        state = self.overrides[override_id]
        payload = p.EmergencyOverride.model_validate(dict(
            override_id=override_id, stage=stage, incident_ticket=state.incident_ticket,
            commander_id=permit.requested_by, commander_role=permit.approvals[0].role,
            worker_id=permit.worker_id, level=permit.level, expires_at=state.expires_at,
            reason=reason, review_due_at=state.review_due_at,
            audit=audit_record(permit.audit, self._audit_values(permit, now))))
        self._emit(self._event("override.event", override_id, payload, now,
                               f"{override_id}:override:{stage}", cause), out)

    def _refuse_approval(self, e: Envelope, permit_id: str, approver: str | None,
                         refusal: Refusal, body: Mapping[str, Any], now: datetime) -> Result:
        out: list[Envelope] = []
        payload = p.ApprovalRefused(permit_id=permit_id, approver_id=approver,
                                    code=refusal.code, message=refusal.message,
                                    approval=dict(body))
        self._emit(self._event("approval.refused", permit_id, payload, now,
                               f"{e.event_id}:refused", e), out)
        return Result(out, refusal, permit_id)

    # --- inbound -----------------------------------------------------------------------------

    def handle(self, envelope: Envelope, now: datetime | None = None) -> list[Envelope]:
        """The entry point for agents: one inbound event -> the events it caused (recorded)."""
        return self.submit(envelope, now).events

    def submit(self, envelope: Envelope, now: datetime | None = None) -> Result:
        now = now if now is not None else self.now_fn()
        if envelope.event_id in self.seen:
            return Result(duplicate=True, subject=envelope.subject)
        handler = {
            "permit.requested": self._on_request,
            "approval.signed": self._on_approval,
            "authorization.requested": self._on_authorization,
            "override.requested": self._on_override,
            "override.review_submitted": self._on_review,
            "permit.renewal_requested": self._on_renewal,
            "permit.closure_requested": self._on_closure,
            "execution.reported": self._on_execution,
            "metric.sample": self._on_sample,
        }.get(envelope.type)
        if handler is None:
            raise InputError("input.not_handled",
                             f"type: the permit service does not handle {envelope.type!r}")
        payload = parse_payload(envelope.type, envelope.payload)
        subject = getattr(payload, "permit_id", None) or getattr(payload, "override_id", None)
        if envelope.type in ("permit.requested", "approval.signed", "override.requested",
                             "permit.renewal_requested", "permit.closure_requested",
                             "override.review_submitted") and envelope.subject != subject:
            raise InputError("input.subject_mismatch",
                             f"subject: must be the permit (or override) id {subject!r}")
        return handler(envelope, payload, now)  # type: ignore[operator]

    def _on_request(self, e: Envelope, req: p.PermitRequested, now: datetime) -> Result:
        existing = self.permits.get(req.permit_id)
        if existing is not None:
            if existing.request_sha256 == req.request_sha256:
                return Result(duplicate=True, subject=req.permit_id)  # a retried request
            return self._refuse_request(e, req.model_dump(mode="json"), Refusal(
                "permit.id_conflict", f"permit {req.permit_id!r} exists with another request"),
                now)
        decision = self.decisions.get(req.decision_event_id)
        ptype = check_request(req, decision, self.gov, now, _hash(req))
        if isinstance(ptype, Refusal):
            return self._refuse_request(e, req.model_dump(mode="json"), ptype, now)
        out: list[Envelope] = []
        self._emit(e, out)
        quorum = quorum_for(ptype, decision, self.gov)
        spec = audit_spec(self.gov, ptype.level, decision)
        deadline = approval_deadline(now, ptype, req.scope.not_after)
        self._move(req.permit_id, "submit", now, out, actor=req.requested_by, cause=e,
                   details={"quorum": quorum.to_dict(), "approval_deadline": deadline.isoformat(),
                            "audit_spec": {"level": spec.level, "fields": list(spec.fields),
                                           "retention_days": spec.retention_days,
                                           "retention_class": spec.retention_class},
                            "permit_type": ptype.id})
        return Result(out, None, req.permit_id)

    def refuse_request(self, body: dict[str, Any], refusal: Refusal,
                       now: datetime | None = None, *, attempt: str | None = None) -> Result:
        """Record a permit request refused before it could become an event (the HTTP/CLI
        front refuses a request naming no certified task this way). `attempt` names the try
        (Kafka mode: the HTTP request's id, so that a redelivered record is recorded once)."""
        now = now if now is not None else self.now_fn()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode())
        subject = f"request-{digest.hexdigest()[:16]}"
        cause = Envelope(event_id=f"{subject}:{attempt or uuid.uuid4().hex[:8]}",
                         type="permit.requested",
                         occurred_at=now, producer="http", subject=subject)
        return self._refuse_request(cause, body, refusal, now)

    def _refuse_request(self, e: Envelope, body: dict[str, Any], refusal: Refusal,
                        now: datetime) -> Result:
        out: list[Envelope] = []
        pid = body.get("permit_id") if isinstance(body.get("permit_id"), str) else None
        who = body.get("requested_by") if isinstance(body.get("requested_by"), str) else None
        payload = p.PermitRequestRefused(permit_id=pid, requested_by=who,
                                         code=refusal.code, message=refusal.message,
                                         request=body)
        self._emit(self._event("permit.request_refused", e.subject, payload, now,
                               f"{e.event_id}:refused", e), out)
        return Result(out, refusal, pid)

    def _on_approval(self, e: Envelope, a: p.ApprovalSigned, now: datetime) -> Result:
        permit = self.permits.get(a.permit_id)
        refusal = check_approval(a, permit, self.registry, self.gov, now, self.signatures)
        if refusal is not None:
            return self._refuse_approval(e, a.permit_id, a.approver_id, refusal,
                                         a.model_dump(mode="json"), now)
        assert permit is not None
        renewal = permit.pending_renewal
        out: list[Envelope] = []
        self._emit(e, out)
        pid = a.permit_id
        if renewal is not None and a.request_sha256 == renewal.request_sha256:
            self._renewal_decided(pid, a, now, out, e)
        elif a.decision == "approve":
            permit = self.permits[pid]
            assert permit.quorum is not None
            approves = [(x.approver_id, x.role) for x in permit.approvals
                        if x.decision == "approve"]
            if not missing_approvals(permit.quorum, approves):
                self._move(pid, "approvals_complete", now, out, actor="quorum", cause=e,
                           reason="quorum reached",
                           details={"approvers": [w for w, _ in approves],
                                    "roles": [r for _, r in approves]})
                self._move(pid, "issue", now, out, actor=SYSTEM, cause=e,
                           details={"not_before": _t(permit.scope.not_before),
                                    "not_after": _t(permit.scope.not_after)})
        elif a.decision == "deny":
            self._move(pid, "reject", now, out, actor=a.approver_id, cause=e,
                       reason=a.comments or f"denied by {a.approver_role}")
        elif a.decision == "revoke":
            self._revoke(pid, "approver_request", a.comments or f"revoked by {a.approver_role}",
                         now, out, actor=a.approver_id, cause=e)
        else:
            self._move(pid, "resume", now, out, actor=a.approver_id, cause=e,
                       reason=a.comments or f"resumed by {a.approver_role}")
        return Result(out, None, pid)

    def _renewal_decided(self, pid: str, a: p.ApprovalSigned, now: datetime,
                         out: list[Envelope], e: Envelope) -> None:
        """An accepted decision on the pending renewal: its quorum renews; a denial ends the
        renewal (the permit runs on to its current end)."""
        permit = self.permits[pid]
        renewal = permit.pending_renewal
        assert renewal is not None and permit.quorum is not None
        if a.decision == "deny":
            self._renewal_refused(permit, "permit.renewal_denied",
                                  f"renewal {renewal.number} denied by {a.approver_role} "
                                  f"{a.approver_id}" + (f": {a.comments}" if a.comments else ""),
                                  now, out, e, f"{e.event_id}:refused")
            return
        approves = [(x.approver_id, x.role) for x in renewal.approvals if x.decision == "approve"]
        if missing_approvals(permit.quorum, approves):
            return
        new_end = renewed_end(permit, self.gov.permit_type(permit.permit_type),
                              renewal.extension_hours)
        self._move(pid, "renew", now, out, actor="quorum", cause=e,
                   reason=str(renewal.document["justification"]),
                   details={"not_after": new_end.isoformat(), "renewal": renewal.number,
                            "approval": "quorum", "renewal_sha256": renewal.request_sha256,
                            "approvers": [w for w, _ in approves],
                            "roles": [r for _, r in approves]})

    def _renewal_refused(self, permit: Permit, code: str, message: str, now: datetime,
                         out: list[Envelope], cause: Envelope | None, event_id: str) -> None:
        renewal = permit.pending_renewal
        assert renewal is not None
        payload = p.PermitRequestRefused(
            permit_id=permit.permit_id, requested_by=renewal.requested_by, code=code,
            message=message, request={**renewal.document,
                                      "request_sha256": renewal.request_sha256})
        self._emit(self._event("permit.request_refused", permit.permit_id, payload, now,
                               event_id, cause), out)

    def _on_override(self, e: Envelope, req: p.OverrideRequested, now: datetime) -> Result:
        recent = [o.granted_at for o in self.overrides.values()]
        grant = check_override(
            req, computed_sha256=_hash(req), registry=self.registry, governance=self.gov,
            destructive_operations=self.destructive_ops,
            ticket_overrides=self.ticket_overrides[req.incident_ticket], recent_grants=recent,
            known_ids=self.permits.keys() | self.overrides.keys(),
            seen_signatures=self.signatures, now=now)
        if isinstance(grant, Refusal):
            return self._refuse_approval(e, req.override_id, req.commander_id, grant,
                                         req.model_dump(mode="json"), now)
        out: list[Envelope] = []
        self._emit(e, out)
        emergency = self.gov.emergency
        spec = audit_spec(self.gov, emergency.level, emergency=True)
        values = {"emergency_justification": req.reason, "incident_id": req.incident_ticket,
                  "authorized_by": req.commander_id, "worker_id": req.worker_id,
                  "operation_type": req.scope.operations, "timestamp": format_time(now),
                  "certification_level": emergency.level, "approver_id": [req.commander_id],
                  "approval_timestamp": [format_time(now)],
                  "post_incident_review_id": f"pir-{req.override_id}",
                  "real_time_oversight_log": "required", "rollback_capability": True}
        granted = p.EmergencyOverride(
            override_id=req.override_id, stage="granted", incident_ticket=req.incident_ticket,
            commander_id=req.commander_id, commander_role=req.commander_role,
            worker_id=req.worker_id, level=emergency.level, expires_at=grant.expires_at,
            reason=req.reason, trigger=req.trigger, scope=req.scope,
            review_due_at=grant.review_due_at, audit=audit_record(spec, values),
            details={"request_sha256": req.request_sha256, "sequence": grant.sequence,
                     "request": req.model_dump(mode="json"),
                     "always_kept": list(emergency.always_kept),
                     "never_bypassable": list(emergency.never_bypassable)})
        self._emit(self._event("override.event", req.override_id, granted, now,
                               f"{req.override_id}:override:granted", e), out)
        self._override_stage(req.override_id, "review_opened",
                             f"post-incident review due by {format_time(grant.review_due_at)}",
                             now, out, e)
        if grant.alert:
            self._escalate("override", req.override_id, "override.daily_threshold",
                           f"{grant.overrides_last_day} emergency overrides in 24 h (alert above "
                           f"{emergency.daily_alert_threshold})", ["incident_commander"], "high",
                           now, out, e)
        return Result(out, None, req.override_id)

    def _on_review(self, e: Envelope, r: p.OverrideReviewSubmitted, now: datetime) -> Result:
        state = self.overrides.get(r.override_id)
        if state is None:
            return self._refuse_approval(e, r.override_id, r.reviewer_id, Refusal(
                "override.unknown", f"no override {r.override_id!r}"), r.model_dump(), now)
        if state.review_completed:
            return self._refuse_approval(e, r.override_id, r.reviewer_id, Refusal(
                "override.review_done", "the post-incident review is already complete"),
                r.model_dump(), now)
        if not r.reviewer_id.strip() or not r.report:
            return self._refuse_approval(e, r.override_id, r.reviewer_id, Refusal(
                "override.review_incomplete", "reviewer_id and a report are required"),
                r.model_dump(), now)
        out: list[Envelope] = []
        self._emit(e, out)
        self._override_stage(r.override_id, "review_completed", f"reviewed by {r.reviewer_id}",
                             now, out, e)
        return Result(out, None, r.override_id)

    def _on_renewal(self, e: Envelope, r: p.PermitRenewalRequested, now: datetime) -> Result:
        permit = self.permits.get(r.permit_id)
        if permit is None:
            refusal = Refusal("permit.unknown", f"no permit {r.permit_id!r}")
        elif r.requested_by != permit.requested_by:
            refusal = Refusal("permit.not_requester", "only the requester may renew a permit")
        elif not r.justification.strip():
            refusal = Refusal("permit.justification_missing", "justification: required")
        else:
            ptype = self.gov.permit_type(permit.permit_type)
            new_end = check_renewal(permit, ptype, self.lifecycle, r.extension_hours, now)
            if not isinstance(new_end, Refusal):
                out: list[Envelope] = []
                self._emit(e, out)  # (folded: the renewal is pending)
                if not ptype.renewal_requires_approval:
                    self._move(r.permit_id, "renew", now, out, actor=r.requested_by, cause=e,
                               reason=r.justification,
                               details={"not_after": new_end.isoformat(),
                                        "renewal": permit.renewals + 1, "approval": "none"})
                return Result(out, None, r.permit_id)
            refusal = new_end
        return self._refuse_request(e, r.model_dump(mode="json"), refusal, now)

    def _on_closure(self, e: Envelope, c: p.PermitClosureRequested, now: datetime) -> Result:
        permit = self.permits.get(c.permit_id)
        if permit is None:
            refusal: Refusal | None = Refusal("permit.unknown", f"no permit {c.permit_id!r}")
        elif c.requested_by not in (permit.requested_by, permit.worker_id):
            refusal = Refusal("permit.not_requester",
                              "only the requester or the permit's worker may close it")
        else:
            refusal = transition(self.lifecycle, permit.state, "close")
            refusal = refusal if isinstance(refusal, Refusal) else None
        if refusal is not None:
            return self._refuse_request(e, c.model_dump(mode="json"), refusal, now)
        out: list[Envelope] = []
        self._emit(e, out)
        self._move(c.permit_id, "close", now, out, actor=c.requested_by, cause=e,
                   reason="closed by request", details={"summary": c.summary})
        return Result(out, None, c.permit_id)

    def _on_execution(self, e: Envelope, x: p.ExecutionReported, now: datetime) -> Result:
        out: list[Envelope] = []
        self._emit(e, out)
        permit = self.permits.get(x.permit_id or "")
        if permit is None or permit.state not in MONITORED_STATES:
            return Result(out, None, x.permit_id)
        services = x.outcome.get("services_touched", x.outcome.get("services", []))
        breach = execution_check(permit, x.operations,
                                 services if isinstance(services, list) else [])
        if breach is not None:
            self._violation(x.worker_id, permit.permit_id, "running.scope_expansion",
                            breach.message, "high", "revoked", now, out, e, breach.evidence)
            self._revoke(permit.permit_id, breach.revocation_reason, breach.message, now, out,
                         cause=e, trigger=breach.trigger, evidence=breach.evidence)
        elif x.status in ("completed", "failed") and permit.state == "executing":
            self._move(permit.permit_id, "complete" if x.status == "completed" else "fail", now,
                       out, actor=x.worker_id, cause=e, reason=f"execution {x.status}",
                       details={"execution_id": x.execution_id, "outcome": x.outcome})
        return Result(out, None, permit.permit_id)

    def _on_sample(self, e: Envelope, s: p.MetricSample, now: datetime) -> Result:
        permit = self.permits.get(s.key)
        breach = None
        if permit is not None and permit.state in MONITORED_STATES:
            _, breach = metric_check(permit, permit.windows, s, self.gov)
        out: list[Envelope] = []
        self._emit(e, out)
        if permit is not None and breach is not None:
            out.extend(self.revoke_for_breach(
                permit.permit_id, breach.trigger, breach.revocation_reason, breach.message,
                "critical", breach.evidence, now, e))
        return Result(out, None, s.key)

    def revoke_for_breach(self, permit_id: str, trigger: str, reason_id: str, message: str,
                          severity: str, evidence: dict[str, Any], now: datetime,
                          cause: Envelope | None) -> list[Envelope]:
        """A breach judged elsewhere (the rollback service: an alert, a metric not watched here)
        for a permit in force: the same steps as this service's own running checks -- the
        violation, `permit.revoked`, its `triggered` rollback, the incident if the reason asks."""
        out: list[Envelope] = []
        permit = self.permits[permit_id]
        self._violation(permit.worker_id, permit_id, f"running.{trigger}", message, severity,
                        "revoked", now, out, cause, evidence)
        self._revoke(permit_id, reason_id, message, now, out, cause=cause, trigger=trigger,
                     evidence=evidence)
        return out

    def suspend_for_breach(self, permit_id: str, trigger: str, message: str, severity: str,
                           evidence: dict[str, Any], now: datetime, cause: Envelope | None,
                           reason: str, actor: str = SYSTEM) -> list[Envelope]:
        """A breach whose rollback waits for a human: the violation, and the work stops
        (`permit.suspended`) while they decide."""
        out: list[Envelope] = []
        permit = self.permits[permit_id]
        self._violation(permit.worker_id, permit_id, f"running.{trigger}", message, severity,
                        "suspended", now, out, cause, evidence)
        self._move(permit_id, "suspend", now, out, actor=actor, cause=cause, reason=reason,
                   details={"trigger": trigger, "evidence": evidence})
        return out

    def _violation(self, worker_id: str | None, permit_id: str | None, rule: str, message: str,
                   severity: str, action: str, now: datetime, out: list[Envelope],
                   cause: Envelope | None, details: dict[str, Any] | None = None,
                   event_id: str | None = None) -> None:
        payload = p.ViolationRecorded.model_validate({
            "worker_id": worker_id, "permit_id": permit_id, "rule": rule, "message": message,
            "severity": severity, "action": action, "details": details or {}})
        subject = permit_id or worker_id or "unknown"
        eid = event_id or (f"{cause.event_id}:violation" if cause else
                           f"{subject}:violation:{rule}")
        self._emit(self._event("violation.recorded", subject, payload, now, eid, cause), out)

    # --- enforcement -------------------------------------------------------------------------

    def _on_authorization(self, e: Envelope, r: p.AuthorizationRequested, now: datetime
                          ) -> Result:
        request = {"worker": r.worker, "permit_id": r.permit_id, "operation": r.operation,
                   "task": r.task}
        return self.authorize(request, now, request_id=r.request_id, cause=e)

    def authorize(self, request: Any, now: datetime | None = None, *,
                  request_id: str | None = None, cause: Envelope | None = None) -> Result:
        """May this worker do this now? Records the answer; a refusal is a violation, acted on.

        Raises InputError for a malformed request (nothing to record but the rejection)."""
        now = now if now is not None else self.now_fn()
        a = assess(request, self.policy, now, self.permits.get)
        v = a.verdict
        request_id = request_id or str(uuid.uuid4())
        base = f"{cause.event_id}" if cause else f"authz:{request_id}"
        permit = self.permits.get(a.permit_id) if a.permit_id else None
        spec = permit.audit if permit else audit_spec(self.gov, v.required_level)
        values = {"operation_type": a.operation.get("type"), "timestamp": self._stamp(now),
                  "worker_id": a.worker.id, "outcome": "allowed" if v.allowed else "denied",
                  "error_conditions": None if v.allowed else v.reason_code,
                  "resources_accessed": [a.operation["service"]] if a.operation.get("service")
                  else [], "input_parameters": a.operation,
                  "certification_level": a.worker.certification_level,
                  "constraint_validations": {"permit_id": a.permit_id, "result": v.reason_code}}
        if permit is not None:
            values = {**self._permit_audit(permit), **values}
        out: list[Envelope] = []
        # The hot path: the payload is the OperationAuthorized document built as JSON directly
        # (its values are validated by assess or ours; tests check it against the model).
        answer = {"worker_id": a.worker.id, "permit_id": a.permit_id, "operation": a.operation,
                  "allowed": v.allowed, "reason_code": v.reason_code, "message": v.message,
                  "request_id": request_id, "required_level": v.required_level,
                  "audit": audit_record(spec, values)}
        subject = a.permit_id or a.worker.id
        self._emit(self._event("operation.authorized", subject, answer, now,
                               f"{base}:authorized", cause), out)
        if v.allowed:
            if permit is not None and permit.state == "issued":
                self._move(permit.permit_id, "start", now, out, actor=a.worker.id, cause=cause,
                           reason="first authorized operation",
                           details={"worker_id": a.worker.id})
            return Result(out, None, subject, verdict=v)
        self._enforce(v, a.worker.id, permit, now, out, cause, base)
        return Result(out, None, subject, verdict=v)

    def _enforce(self, v: Verdict, worker_id: str, permit: Permit | None, now: datetime,
                 out: list[Envelope], cause: Envelope | None, base: str) -> None:
        response = response_for(v.reason_code)
        action = response.action
        targets: list[str] = []
        if v.reason_code == "certification_revoked":
            targets = sorted(pid for pid in self.live if self.permits[pid].worker_id == worker_id
                             and self.permits[pid].state in LIVE_STATES)
        elif permit is not None and action != "denied" and permit.state in LIVE_STATES:
            targets = [permit.permit_id]
        if not targets:
            action = "denied"
        self._violation(worker_id, v.permit_id, f"authorize.{v.reason_code}", v.message,
                        response.severity, action, now, out, cause,
                        {"permits": targets, "revocation_reason": response.revocation_reason},
                        event_id=f"{base}:violation")
        for pid in targets:
            if action == "suspended":
                self._move(pid, "suspend", now, out, actor=SYSTEM, cause=cause,
                           reason=v.message, details={"violation": v.reason_code})
            else:
                self._revoke(pid, response.revocation_reason or "safety_violation", v.message,
                             now, out, cause=cause,
                             trigger="scope_expansion" if response.rollback else None,
                             evidence={"reason_code": v.reason_code, "worker_id": worker_id})

    # --- timers --------------------------------------------------------------------------------

    def timers(self) -> list[tuple[datetime, str, str]]:
        """Pending timers (due time, kind, subject), soonest first: what tick will act on."""
        return sorted(self._timers())

    def _timers(self) -> list[tuple[datetime, str, str]]:
        due: list[tuple[datetime, str, str]] = []
        for pid in self.live:
            permit = self.permits[pid]
            if permit.pending_renewal is not None:
                due.append((permit.scope.not_after, "renewal_lapse", pid))
            warning = expiry_warning_due(permit, self.lifecycle)
            if warning is not None and warning < permit.scope.not_after:
                due.append((warning, "expiry_warning", pid))
            if permit.state == "in_review" and permit.approval_deadline is not None:
                due.append((permit.approval_deadline, "approval_deadline", pid))
            elif permit.emergency and permit.state in LIVE_STATES:
                due.append((permit.scope.not_after, "override_end", pid))
            elif permit.state in ("issued", "suspended"):
                due.append((permit.scope.not_after, "expiry", pid))
            elif permit.state == "executing":
                due.append((overrun_due(permit, self.gov), "overrun", pid))
            elif permit.state == "validating":
                due.append((permit.scope.not_after, "close", pid))
        for o in self.overrides.values():
            if not o.review_completed and not o.review_escalated:
                due.append((o.review_due_at, "review_due", o.override_id))
        return due

    def tick(self, now: datetime | None = None) -> list[Envelope]:
        """Emit whatever is due at `now` (event time; the caller passes the clock)."""
        now = now if now is not None else self.now_fn()
        out: list[Envelope] = []
        due = sorted(t for t in self._timers() if t[0] < now or (
            t[0] == now and t[1] != "approval_deadline"))  # approvals count up to the deadline
        for at, kind, subject in due:
            if kind == "approval_deadline":
                self._deadline_passed(subject, now, out)
            elif kind == "override_end":
                self._revoke(subject, "time_expiration",
                             "emergency override ended (60 minutes): revoked automatically",
                             now, out)
            elif kind == "expiry":
                self._move(subject, "expire", now, out, actor=SYSTEM,
                           reason="permit window ended", details={"halt": True})
            elif kind == "overrun":
                permit = self.permits[subject]
                message = (f"still executing {self.lifecycle.in_progress_finish_minutes} min "
                           "after the permit window ended")
                self._violation(permit.worker_id, subject, "running.deadline_overrun", message,
                                "high", "revoked", now, out, None,
                                {"not_after": _t(permit.scope.not_after)})
                self._revoke(subject, "time_expiration", message, now, out,
                             trigger="deadline_overrun",
                             evidence={"not_after": _t(permit.scope.not_after),
                                       "now": format_time(now)})
            elif kind == "close":
                self._move(subject, "close", now, out, actor=SYSTEM,
                           reason="permit window ended after execution")
            elif kind == "expiry_warning":
                self._warn(subject, now, out)
            elif kind == "renewal_lapse":
                permit = self.permits[subject]
                if permit.pending_renewal is not None:
                    number = permit.pending_renewal.number
                    self._renewal_refused(
                        permit, "permit.renewal_lapsed",
                        f"renewal {number} was not approved before the permit's end "
                        f"{format_time(at)}", now, out, None,
                        f"{subject}:renewal:{number}:lapsed")
            elif kind == "review_due":
                state = self.overrides[subject]
                self._escalate("override", subject, "override.review_overdue",
                               f"post-incident review of {subject} (incident "
                               f"{state.incident_ticket}) was due at "
                               f"{format_time(state.review_due_at)}",
                               ["incident_commander", "engineering_director"], "high", now, out)
        return out

    def _warn(self, permit_id: str, now: datetime, out: list[Envelope]) -> None:
        """permit.expiry_warning at the policy's marks (governance permit_lifecycle
        expiry_warning_minutes), once per mark and end: the id names both, the fold remembers
        the last mark sent, so a replay or a restart never warns twice."""
        permit = self.permits[permit_id]
        mark = expiry_warning_mark(permit, self.lifecycle, now)
        if mark is None:
            return
        end = permit.scope.not_after
        notify = list(dict.fromkeys(x for x in (permit.requested_by, permit.worker_id,
                                                *permit.approvers) if x))
        payload = p.PermitExpiryWarning(permit_id=permit_id, expires_at=end, minutes_left=mark,
                                        notify=notify)
        self._emit(self._event("permit.expiry_warning", permit_id, payload, now,
                               f"{permit_id}:expiry_warning:{format_time(end)}:{mark}"), out)

    def _deadline_passed(self, permit_id: str, now: datetime, out: list[Envelope]) -> None:
        permit = self.permits[permit_id]
        gate = self.gov.gate(min(permit.level + 1, 4))
        missing = missing_approvals(permit.quorum, [(a.approver_id, a.role)
                                                    for a in permit.approvals
                                                    if a.decision == "approve"]) \
            if permit.quorum else []
        if not permit.escalated:
            self._escalate("approval", permit_id, "permit.approval_deadline_passed",
                           f"no quorum by the approval deadline "
                           f"{_t(permit.approval_deadline)}; missing: {', '.join(missing)}",
                           list(gate.approver_roles), "medium", now, out,
                           details={"missing": missing, "requested_by": permit.requested_by})
        self._move(permit_id, "reject", now, out, actor=SYSTEM,
                   reason="approval deadline passed without quorum",
                   details={"code": "permit.approval_deadline_passed", "missing": missing})

    # --- queries -------------------------------------------------------------------------------

    def permit(self, permit_id: str) -> Permit | None:
        return self.permits.get(permit_id)

    def view(self, permit_id: str) -> dict[str, Any] | None:
        permit = self.permits.get(permit_id)
        return None if permit is None else self._view(permit)

    def query(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Permit views by state ("pending" = in review, awaiting approvals), oldest first."""
        wanted = "in_review" if state == "pending" else state
        chosen = [x for x in self.permits.values() if wanted is None or x.state == wanted]
        chosen.sort(key=lambda x: (x.requested_at, x.permit_id))
        return [self._view(x) for x in chosen[:limit]]

    def _view(self, permit: Permit) -> dict[str, Any]:
        approves = [(a.approver_id, a.role) for a in permit.approvals if a.decision == "approve"]
        quorum = None
        if permit.quorum is not None:
            missing = missing_approvals(permit.quorum, approves)
            quorum = {**permit.quorum.to_dict(), "met": not missing, "missing": missing}
        s = permit.scope
        return {
            "permit_id": permit.permit_id, "permit_type": permit.permit_type,
            "level": permit.level, "state": permit.state, "task_id": permit.task_id,
            "decision_event_id": permit.decision_event_id,
            "requested_by": permit.requested_by, "worker_id": permit.worker_id,
            "scope": {"operations": sorted(s.operations), "services": sorted(s.services),
                      "environment": s.environment, "data_classes": sorted(s.data_classes),
                      "regions": sorted(s.regions), "not_before": _t(s.not_before),
                      "not_after": _t(s.not_after)},
            "justification": permit.justification, "rollback_plan": permit.rollback_plan,
            "constraints": dict(permit.constraints), "request": dict(permit.request),
            "request_sha256": permit.request_sha256, "requested_at": _t(permit.requested_at),
            "approval_deadline": _t(permit.approval_deadline), "quorum": quorum,
            "approvals": [{"approver_id": a.approver_id, "role": a.role,
                           "decision": a.decision, "decided_at": _t(a.decided_at),
                           "recorded_at": _t(a.recorded_at)} for a in permit.approvals],
            "issued_at": _t(permit.issued_at), "started_at": _t(permit.started_at),
            "finished_at": _t(permit.finished_at), "renewals": permit.renewals,
            "emergency": permit.emergency, "incident_ticket": permit.incident_ticket,
            "reason": permit.reason,
            "pending_renewal": None if permit.pending_renewal is None else {
                "renewal": permit.pending_renewal.number,
                "document": dict(permit.pending_renewal.document),
                "request_sha256": permit.pending_renewal.request_sha256,
                "requested_at": _t(permit.pending_renewal.requested_at),
                "approvals": [{"approver_id": a.approver_id, "role": a.role,
                               "decision": a.decision, "recorded_at": _t(a.recorded_at)}
                              for a in permit.pending_renewal.approvals],
                "missing": missing_approvals(permit.quorum, [
                    (a.approver_id, a.role) for a in permit.pending_renewal.approvals
                    if a.decision == "approve"]) if permit.quorum else []},
            "audit": {"level": permit.audit.level,
                      "retention_class": permit.audit.retention_class,
                      "retention_days": permit.audit.retention_days},
            "history": [{**h, "at": _t(h["at"])} for h in permit.history],
        }


def _hash(request: BaseModel) -> str:
    try:
        return request_sha256(request)
    except SigningError as error:
        raise InputError("input.schema", f"request: {error} (RFC 8785 allows integers up to "
                         "2**53 and finite numbers only)") from None


def parse_model(model: type[BaseModel], document: Any, where: str = "") -> Any:
    """Validate a document at the edge; InputError with the first problem, never a trace."""
    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise InputError("input.schema", describe_validation_error(error, where)) from None
