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

from events import Envelope, InputError
from events.payloads import (
    AlertReceived,
    EscalationRaised,
    MetricSample,
    PermitRequested,
    RollbackStageReported,
)
from events.registry import parse_payload
from rules.enforcement import MONITORED_STATES, PERMIT_TRIGGERS
from rules.governance import RollbackTrigger
from rules.policy import Policy
from rules.rollback_plans import parse_plan, plan_triggers
from rules.rollback_tracking import (
    EXECUTOR_STAGES,
    KeyContext,
    RollbackTracker,
    approval_needed,
    command_event,
    decision_events,
    reported_event,
    stage_refusal,
)
from rules.rollback_tracking import apply as tracker_apply
from rules.rollback_tracking import tick as tracker_tick
from rules.triggers import (
    EngineSettings,
    OverrideRefused,
    TriggerDecision,
    WindowState,
    apply_overrides,
    evaluate_one,
    external_fire,
    external_resolve,
    material,
    state_key,
)
from rules.triggers import tick as window_tick
from streams.alertmanager import TRIGGER_LABEL

PRODUCER = "rollback-service"
ENDED_PERMIT_TYPES = frozenset({"permit.closed", "permit.expired", "permit.revoked",
                                "permit.denied"})
# A sample that changes nothing but the time of a window's newest sample is recorded at most
# this often per key and metric (docs/rollback.md §6): the refold at start then knows a time
# within this many seconds of the newest sample, well inside the no-data limit (90 s).
SAMPLE_HEARTBEAT_SECONDS = 10.0
# hand_over(decision, approval, cause, now) -> (taken, events it recorded): permit_hand_over
HandOver = Callable[[TriggerDecision, str, Envelope | None, datetime],
                    tuple[bool, list[Envelope]]]
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
        # key -> metric -> the triggers watching it and their window names (from `triggers`)
        self._watching: dict[str, dict[str, tuple[tuple[RollbackTrigger, str], ...]]] = {}
        # (key, metric) -> observed_at of the newest recorded sample (the heartbeat's clock)
        self._recorded_at: dict[tuple[str, str], datetime] = {}
        # Metrics the permit service's running checks watch for permits in execution (one
        # owner per breach): never judged here for a permit key.
        self.permit_metrics = frozenset(self.policy.trigger(name).metric
                                        for name in PERMIT_TRIGGERS)
        self.hand_over: HandOver | None = None  # the Pipeline's: permits in execution
        self._cause: Envelope | None = None  # the inbound event being handled
        self._handed: list[Envelope] = []  # recorded by the hand-over, returned by handle

    # --- configuration per key -------------------------------------------------------------

    def context(self, key: str) -> KeyContext:
        return self.contexts.get(key) or KeyContext(key=key)

    def set_context(self, context: KeyContext) -> None:
        self.contexts[context.key] = context
        self._forget_triggers(context.key)

    def set_overrides(self, key: str, overrides: Mapping[str, Any]) -> list[OverrideRefused]:
        """A permit's thresholds for this key; refused ones are returned (and not applied)."""
        _, refused = apply_overrides(self.policy.triggers, overrides, self.policy)
        self.overrides[key] = dict(overrides)
        self._forget_triggers(key)
        return refused

    def forget(self, key: str) -> None:
        """The key's work is over (permit closed, expired, revoked, denied): stop watching it.
        Its rollbacks stay tracked until verified, and its context stays: a revoked permit's
        rollback is triggered after the revocation and still needs the plan, level and SLA."""
        self.windows = {k: v for k, v in self.windows.items() if v.key != key}
        self.overrides.pop(key, None)
        self._forget_triggers(key)

    def _forget_triggers(self, key: str) -> None:
        self._triggers.pop(key, None)
        self._watching.pop(key, None)

    def triggers(self, key: str) -> tuple[RollbackTrigger, ...]:
        if key not in self._triggers:
            plan = self.context(key).plan
            base = plan_triggers(plan, self.policy) if plan else self.policy.triggers
            self._triggers[key] = apply_overrides(base, self.overrides.get(key, {}),
                                                  self.policy)[0]
        return self._triggers[key]

    # --- inputs ------------------------------------------------------------------------------

    def handle(self, envelope: Envelope, now: datetime) -> list[Envelope]:
        self._cause, self._handed = envelope, []
        try:
            emitted = self._handle(envelope, now, replay=False)
            emitted += self._tick_tracker(now)
            for event in emitted:
                self.record(event)
            return [*self._handed, *emitted]
        finally:
            self._cause, self._handed = None, []

    def sample(self, envelope: Envelope, now: datetime,
               payload: MetricSample | None = None) -> list[Envelope]:
        """A metric sample this service owns (not a permit's), not recorded yet: judged, and
        recorded only when it matters (the fast path, docs/rollback.md §6) -- when it changed
        a window beyond the time of its newest sample (every crossing sample, the first
        healthy one after a run, re-arming, baselines), when it decided something, or as the
        key's heartbeat every SAMPLE_HEARTBEAT_SECONDS. Returns what was recorded.
        `payload`: the envelope's payload already validated (the metrics reader's)."""
        if payload is None:
            parsed = parse_payload("metric.sample", envelope.payload)
            assert isinstance(parsed, MetricSample)
            payload = parsed
        self._cause, self._handed = envelope, []
        try:
            keep, decisions = self._judge(payload, now)
            if not keep and not decisions:
                return []
            out = [envelope] if self.record(envelope) is not False else []
            self._recorded_at[(payload.key, payload.metric)] = payload.observed_at
            emitted = self._act(decisions, now)
            if emitted:
                emitted += self._tick_tracker(now)
            for event in emitted:
                self.record(event)
            return [*out, *self._handed, *emitted]
        finally:
            self._cause, self._handed = None, []

    def refusal(self, envelope: Envelope) -> InputError | None:
        """An executor's stage report (or an inbound rollback.event stage) that the rollback's
        state refuses: unknown rollback, not commanded yet, out of order, a second copy of a
        stage, after verification. None when it may be taken, and for a redelivery of one
        already taken (handled as a no-op)."""
        body = envelope.payload
        if envelope.type != "rollback.stage_reported" and not (
                envelope.type == "rollback.event"
                and body.get("stage") in ("commanded", *EXECUTOR_STAGES)):
            return None
        rollback_id = str(body.get("rollback_id"))
        record = self.tracker.records.get(rollback_id)
        if record is not None and envelope.event_id in record.inputs:
            return None
        refused = stage_refusal(record, rollback_id, str(body.get("stage")),
                                step=body.get("step"), region=body.get("region"),
                                passed=body.get("passed"))
        return None if refused is None else InputError(refused.code, refused.message)

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
            if kind == "rollback.stage_reported":
                # replay: its rollback.event is in the ledger too, and folded from there
                return [] if replay else self._report(envelope, now)
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
        """A recorded sample (the permit service recorded it, or the ledger at start)."""
        if replay:
            self._recorded_at[(sample.key, sample.metric)] = sample.observed_at
        _, decisions = self._judge(sample, now)
        return [] if replay else self._act(decisions, now)

    def _judge(self, sample: MetricSample, now: datetime | None = None,
               ) -> tuple[bool, list[TriggerDecision]]:
        """Fold the sample into its windows: (should it be recorded, decisions)."""
        by_metric = self._watching.setdefault(sample.key, {})
        watching = by_metric.get(sample.metric)
        if watching is None:
            watching = tuple((t, state_key(sample.key, t.name))
                             for t in self.triggers(sample.key) if t.metric == sample.metric)
            by_metric[sample.metric] = watching
        if not watching:
            return False, []
        windows, at = self.windows, now or sample.observed_at
        changed, decisions = False, []
        for trigger, name in watching:  # rules.triggers.evaluate, inlined (the hot path)
            old = windows.get(name)
            new, fired = evaluate_one(old, sample, trigger, at, self.settings)
            if new is not old:
                windows[name] = new
                changed = changed or material(old, new)
            decisions += fired
        if changed:
            return True, decisions
        last = self._recorded_at.get((sample.key, sample.metric))
        due = last is None or \
            (sample.observed_at - last).total_seconds() >= SAMPLE_HEARTBEAT_SECONDS
        return due, decisions

    def _report(self, envelope: Envelope, now: datetime) -> list[Envelope]:
        """An executor's stage report (checked by `refusal` before it was recorded) -> the
        `rollback.event` stage the tracker folds. A redelivered report makes nothing new."""
        report = RollbackStageReported.model_validate(envelope.payload)
        record = self.tracker.records.get(report.rollback_id)
        if record is None or envelope.event_id in record.inputs:
            return []
        event = reported_event(record, envelope, now, self.producer)
        self.tracker = tracker_apply(self.tracker, event)
        return [event]

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
        commanded: list[Envelope] = []  # a handed-over rollback's command (folded already)
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
            approval = approval_needed(d, self.context(d.key), self.policy)
            taken, recorded = self.hand_over(d, approval, self._cause, now) \
                if self.hand_over else (False, [])
            self._handed += recorded  # recorded by the permit service; returned, not again
            if taken:  # a permit in execution: revoked, its `triggered` recorded; command it
                commanded = self._command_handed_over(now)
            else:
                out += decision_events(d, self.context(d.key), self.policy, now,
                                       self.producer)
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
        return commanded + out

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


# --- permits in execution (docs/rollback.md §6) --------------------------------------------------


def judges_sample(service: RollbackService, permits: Any, payload: Mapping[str, Any]) -> bool:
    """Does the rollback service judge this sample? Every key's but a permit's, and a permit's
    only while it is in execution and for metrics its running checks do not watch (error rate
    and p99 are the permit service's: one owner per breach). Taken with the permit state
    before the sample, so the ledger's replay decides alike."""
    permit = permits.permits.get(str(payload.get("key")))
    if permit is None:
        return True
    return permit.state in MONITORED_STATES and payload.get("metric") not in \
        service.permit_metrics


def permit_hand_over(permits: Any) -> HandOver:
    """A rollback decided here (an alert naming a trigger, or a metric the permit service does
    not watch) for a permit in execution. Automatic (no approval by the trigger, the plan's
    automation or the level's human gates): the permit service revokes it -- violation,
    `permit.revoked`, its `triggered` (`rb-<permit>-<trigger>`), incident if the reason asks --
    exactly as for its own running-check breaches; the rollback service then commands that
    rollback (taken). Waiting for a human: an executing permit is suspended (the work stops
    while they decide) and the rollback service triggers its own rollback, awaiting approval
    (not taken). Any other permit state: not taken, nothing moved.

    Uses the permit service's `revoke_for_breach` / `suspend_for_breach`: the same steps its
    own running checks take."""
    def hand_over(decision: TriggerDecision, approval: str, cause: Envelope | None,
                  now: datetime) -> tuple[bool, list[Envelope]]:
        permit = permits.permits.get(decision.key)
        if permit is None or permit.state not in MONITORED_STATES:
            return False, []
        evidence = decision.evidence_dict()
        if approval == "none":
            reason = PERMIT_TRIGGERS.get(decision.trigger) or (
                "safety_violation" if decision.severity == "critical" else "constraint_breach")
            return True, permits.revoke_for_breach(
                permit.permit_id, decision.trigger, reason, decision.reason, decision.severity,
                evidence, now, cause)
        if permit.state != "executing":
            return False, []
        return False, permits.suspend_for_breach(
            permit.permit_id, decision.trigger, decision.reason, decision.severity, evidence,
            now, cause, f"{decision.trigger}: {decision.reason}; rollback awaits {approval} "
                        f"approval", actor=PRODUCER)

    return hand_over


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:24]


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
