"""The rollback service, embedded: metric samples and alerts in, rollback decisions, commands
and escalations out, everything it emits handed to `record` (the ledger). Stateful shell over
the pure core: rules/triggers.py (windows), rules/rollback_tracking.py (the fold and its clock).

Both runners reach it through streams.handlers.Pipeline; its state (`WindowState` per
`key|trigger`, see rules.triggers.state_key, and the tracker) is rebuilt at start by folding the
ledger (docs/rollback.md §6), in Kafka mode too.

Inputs `handle(envelope, now)` understands:
- metric.sample      -> trigger evaluation -> rollback.event triggered (+ commanded when no
                        approval is needed), or escalation.raised (alert-only, no data)
- alert.received     -> an Alertmanager alert: `rollback_trigger` label -> that trigger fires
                        (same hysteresis); any other firing alert pages a human, never rolls back
- rollback.event     -> executors' started / step / completed / failed / verified, a human's
                        commanded (approval): folded into the tracker
- escalation.raised  -> folded (replays mark escalations as raised)
- permit.requested   -> the key's level, operation type and rollback plan (its triggers,
                        partial scenarios, SLA), and its `constraints` (max_error_rate, ...)
                        as threshold overrides within the policy bounds
- permit.closed / expired / revoked / denied -> the key is no longer watched
Anything else is ignored.

A `triggered` rollback without approval that another part recorded (the permit service's
running checks hand over that way) is commanded here: `follow(now)`, and every `tick`. The input itself is not recorded here (the runner records inputs);
what the service derives is recorded, and returned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from events import Envelope
from events.payloads import AlertReceived, EscalationRaised, MetricSample, PermitRequested
from rules.governance import RollbackTrigger
from rules.policy import Policy
from rules.rollback_plans import parse_plan, plan_triggers
from rules.rollback_tracking import KeyContext, RollbackTracker, command_event, decision_events
from rules.rollback_tracking import apply as tracker_apply
from rules.rollback_tracking import tick as tracker_tick
from rules.triggers import (
    EngineSettings,
    OverrideRefused,
    TriggerDecision,
    WindowState,
    apply_overrides,
    evaluate,
    external_fire,
    external_resolve,
    state_key,
)
from rules.triggers import tick as window_tick
from streams.alertmanager import TRIGGER_LABEL

PRODUCER = "rollback-service"
ENDED_PERMIT_TYPES = frozenset({"permit.closed", "permit.expired", "permit.revoked",
                                "permit.denied"})
ALERT_SEVERITY = {"critical": "critical", "page": "critical", "high": "high", "error": "high",
                  "warning": "medium", "medium": "medium", "info": "low", "low": "low"}


def _noop(_: Envelope) -> None:
    return None


class RollbackService:
    def __init__(self, policy: Policy, record: Callable[[Envelope], None] = _noop,
                 producer: str = PRODUCER) -> None:
        self.policy = policy.governance.rollback
        self.record = record
        self.producer = producer
        self.settings = EngineSettings.from_policy(self.policy)
        self.windows: dict[str, WindowState] = {}
        self.tracker = RollbackTracker()
        self.contexts: dict[str, KeyContext] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, tuple[RollbackTrigger, ...]] = {}

    # --- configuration per key -------------------------------------------------------------

    def context(self, key: str) -> KeyContext:
        return self.contexts.get(key) or KeyContext(key=key)

    def set_context(self, context: KeyContext) -> None:
        self.contexts[context.key] = context
        self._triggers.pop(context.key, None)

    def set_overrides(self, key: str, overrides: Mapping[str, Any]) -> list[OverrideRefused]:
        """A permit's thresholds for this key; refused ones are returned (and not applied)."""
        _, refused = apply_overrides(self.policy.triggers, overrides, self.policy)
        self.overrides[key] = dict(overrides)
        self._triggers.pop(key, None)
        return refused

    def forget(self, key: str) -> None:
        """The key's work is over (permit closed, expired, revoked, denied): stop watching it.
        Its rollbacks stay tracked until verified, and its context stays: a revoked permit's
        rollback is triggered after the revocation and still needs the plan, level and SLA."""
        self.windows = {k: v for k, v in self.windows.items() if v.key != key}
        self.overrides.pop(key, None)
        self._triggers.pop(key, None)

    def triggers(self, key: str) -> tuple[RollbackTrigger, ...]:
        if key not in self._triggers:
            plan = self.context(key).plan
            base = plan_triggers(plan, self.policy) if plan else self.policy.triggers
            self._triggers[key] = apply_overrides(base, self.overrides.get(key, {}),
                                                  self.policy)[0]
        return self._triggers[key]

    # --- inputs ------------------------------------------------------------------------------

    def handle(self, envelope: Envelope, now: datetime) -> list[Envelope]:
        emitted = self._handle(envelope, now, replay=False)
        emitted += self._tick_tracker(now)
        for event in emitted:
            self.record(event)
        return emitted

    def tick(self, now: datetime) -> list[Envelope]:
        """The clock: silent metrics (no data), SLA deadlines, failure and verification paths."""
        emitted: list[Envelope] = []
        for name, state in list(self.windows.items()):
            trigger = self._trigger(state.key, state.trigger)
            if trigger is None:
                continue
            self.windows[name], decisions = window_tick(state, trigger, now, self.settings)
            emitted += self._act(decisions, now)
        emitted += self._command_handed_over(now)
        emitted += self._tick_tracker(now)
        for event in emitted:
            self.record(event)
        return emitted

    def observe(self, envelope: Envelope) -> None:
        """Fold one recorded event (the ledger, or another part's output) without emitting."""
        self._handle(envelope, envelope.occurred_at, replay=True)

    def follow(self, now: datetime) -> list[Envelope]:
        """Command the automatic rollbacks another part triggered (approval "none", no
        `commanded` yet): the permit service hands a running-check breach over this way."""
        emitted = self._command_handed_over(now)
        if emitted:
            emitted += self._tick_tracker(now)
        for event in emitted:
            self.record(event)
        return emitted

    def load(self, events: Iterable[Envelope]) -> None:
        """Rebuild from recorded events (the ledger) without emitting: windows from samples and
        alerts, the tracker from rollback and escalation events, contexts from permits."""
        for envelope in events:
            self._handle(envelope, envelope.occurred_at, replay=True)

    def command(self, rollback_id: str, now: datetime, actor: str, *, scope: str | None = None,
                decided_at: datetime | None = None) -> list[Envelope]:
        """A human approves a waiting rollback (or orders one): the `commanded` event."""
        record = self.tracker.records.get(rollback_id)
        if record is None:
            raise KeyError(f"unknown rollback {rollback_id!r}")
        if record.commanded_at is not None:
            return []
        context = self.context(record.key or rollback_id)
        event = command_event(rollback_id, context, record.trigger, now, self.policy,
                              scope=scope, actor=actor, decided_at=decided_at,
                              producer=self.producer)
        self.tracker = tracker_apply(self.tracker, event)
        emitted = [event, *self._tick_tracker(now)]
        for e in emitted:
            self.record(e)
        return emitted

    # --- internals ---------------------------------------------------------------------------

    def _trigger(self, key: str, name: str) -> RollbackTrigger | None:
        return next((t for t in self.triggers(key) if t.name == name), None)

    def _handle(self, envelope: Envelope, now: datetime, replay: bool) -> list[Envelope]:
        kind = envelope.type
        try:
            if kind == "metric.sample":
                return self._sample(MetricSample.model_validate(envelope.payload), now, replay)
            if kind == "alert.received":
                return self._alert(AlertReceived.model_validate(envelope.payload), now, replay)
            if kind in ("rollback.event", "escalation.raised"):
                self.tracker = tracker_apply(self.tracker, envelope)
                return []
            if kind == "permit.requested":
                self._permit(PermitRequested.model_validate(envelope.payload))
                constraints = envelope.payload.get("constraints")
                if isinstance(constraints, dict) and constraints:
                    # The permit's running limits (max_error_rate, ...): bounded thresholds.
                    self.set_overrides(str(envelope.payload["permit_id"]), constraints)
            elif kind in ENDED_PERMIT_TYPES:
                self.forget(str(envelope.payload.get("permit_id") or envelope.subject))
        except ValidationError:
            return []  # validated at the edge (events.parse_event); a stray copy is ignored
        return []

    def _sample(self, sample: MetricSample, now: datetime, replay: bool) -> list[Envelope]:
        triggers = [t for t in self.triggers(sample.key) if t.metric == sample.metric]
        if not triggers:
            return []
        names = [state_key(sample.key, t.name) for t in triggers]
        current = {n: self.windows[n] for n in names if n in self.windows}
        updated, decisions = evaluate(current, sample, triggers, now, self.settings)
        self.windows.update(updated)
        return [] if replay else self._act(decisions, now)

    def _alert(self, alert: AlertReceived, now: datetime, replay: bool) -> list[Envelope]:
        body = alert.alert
        labels = body.get("labels") or {}
        status = body.get("status")
        name = labels.get(TRIGGER_LABEL)
        trigger = self._trigger(alert.key, name) if isinstance(name, str) else None
        at = _time(body.get("endsAt") if status == "resolved" else body.get("startsAt")) or now
        if trigger is not None:
            sk = state_key(alert.key, trigger.name)
            if status == "resolved":
                self.windows[sk] = external_resolve(self.windows.get(sk), alert.key, trigger, at)
                return []
            source = {"alertname": labels.get("alertname"), "fingerprint": body.get("fingerprint"),
                      "startsAt": body.get("startsAt"), "source": alert.source}
            self.windows[sk], decisions = external_fire(
                self.windows.get(sk), alert.key, trigger, at, now,
                {k: v for k, v in source.items() if v}, self.settings)
            return [] if replay else self._act(decisions, now)
        if replay or status != "firing":
            return []
        severity = ALERT_SEVERITY.get(str(labels.get("severity", "")).lower(), "medium")
        title = labels.get("alertname") or "alert"
        payload = EscalationRaised(
            subject_kind="monitor", subject_id=alert.key, code="alert.received",
            reason=f"{title} firing for {alert.key} ({alert.source}); no rollback trigger named",
            escalate_to=list(self.policy.paging.alert_roles),
            severity=severity,  # type: ignore[arg-type]  # one of ALERT_SEVERITY's values
            details={"alert": body})
        return [self._escalation(f"alert:{_digest(alert.key, body.get('fingerprint'), at)}",
                                 alert.key, payload, now)]

    def _permit(self, permit: PermitRequested) -> None:
        plan = None
        if permit.rollback_plan is not None:
            plan, _problems = parse_plan(permit.rollback_plan, permit.level, self.policy)
        operation = plan.operation_summary.operation_type if plan else None
        self.set_context(KeyContext(key=permit.permit_id, permit_id=permit.permit_id,
                                    level=permit.level, operation_type=operation, plan=plan))

    def _act(self, decisions: list[TriggerDecision], now: datetime) -> list[Envelope]:
        out: list[Envelope] = []
        for d in decisions:
            if d.kind == "rollback":
                out += self._rollback(d, now)
                continue
            code = "trigger.alert" if d.kind == "alert" else "trigger.no_data"
            roles = self.policy.paging.alert_roles if d.kind == "alert" else \
                self.policy.paging.no_data_roles
            payload = EscalationRaised(
                subject_kind="monitor", subject_id=d.key, code=code, reason=d.reason,
                escalate_to=list(roles),
                severity=d.severity if d.kind == "alert" else "medium",  # type: ignore[arg-type]
                details={"trigger": d.trigger, "metric": d.metric, "at": d.at.isoformat(),
                         "evidence": d.evidence_dict()})
            out.append(self._escalation(f"{d.kind}:{_digest(d.key, d.trigger, d.at)}", d.key,
                                        payload, now))
        return out

    def _rollback(self, d: TriggerDecision, now: datetime) -> list[Envelope]:
        out: list[Envelope] = []
        active = self.tracker.active_for(d.key)
        if active is not None:
            # One rollback per key at a time: a second trigger is evidence for the running one.
            payload = EscalationRaised(
                subject_kind="rollback", subject_id=active.rollback_id,
                code="rollback.trigger_during_rollback",
                reason=f"{d.trigger} fired for {d.key} while rollback {active.rollback_id} is "
                       f"{active.outcome}: {d.reason}",
                escalate_to=list(self.policy.paging.sla_breach_roles),
                severity=d.severity,  # type: ignore[arg-type]
                details={"tag": f"also:{d.trigger}:{d.at.isoformat()}",
                         "rollback_id": active.rollback_id, "evidence": d.evidence_dict()})
            out.append(self._escalation(f"{active.rollback_id}:also:{_digest(d.trigger, d.at)}",
                                        d.key, payload, now))
        else:
            out += decision_events(d, self.context(d.key), self.policy, now, self.producer)
        if d.security_incident:
            payload = EscalationRaised(
                subject_kind="monitor", subject_id=d.key, code="security.incident",
                reason=f"security incident opened by {d.trigger}: {d.reason}",
                escalate_to=list(self.policy.paging.security_incident_roles),
                severity="critical", actions=["create_security_incident"],
                details={"trigger": d.trigger, "evidence": d.evidence_dict()})
            out.append(self._escalation(f"security:{_digest(d.key, d.trigger, d.at)}", d.key,
                                        payload, now))
        for event in out:
            if event.type in ("rollback.event", "escalation.raised"):
                self.tracker = tracker_apply(self.tracker, event)
        return out

    def _escalation(self, event_id: str, key: str, payload: BaseModel,
                    now: datetime) -> Envelope:
        return Envelope(event_id=event_id, type="escalation.raised", occurred_at=now,
                        producer=self.producer, subject=key,
                        payload=payload.model_dump(mode="json"))

    def _command_handed_over(self, now: datetime) -> list[Envelope]:
        out: list[Envelope] = []
        for record in list(self.tracker.records.values()):
            if record.approval != "none" or record.commanded_at is not None or \
                    record.triggered_at is None or not record.active:
                continue
            key = record.key or record.permit_id or record.rollback_id
            event = command_event(record.rollback_id, self.context(key), record.trigger, now,
                                  self.policy, actor=self.producer, producer=self.producer)
            self.tracker = tracker_apply(self.tracker, event)
            out.append(event)
        return out

    def _tick_tracker(self, now: datetime) -> list[Envelope]:
        self.tracker, emitted = tracker_tick(self.tracker, now, self.policy)
        return emitted


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:24]


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
