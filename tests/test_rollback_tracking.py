"""Rollback tracking with a controlled clock: SLA start and deadline per level and operation
type, breach escalation, failure and verification escalation paths, approvals, replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events import Envelope
from events.payloads import RollbackEvent
from rules.policy import default_policy
from rules.rollback_plans import load_template, parse_plan
from rules.rollback_tracking import (
    KeyContext,
    RollbackTracker,
    command_event,
    decision_events,
    effective_sla,
    fold,
    tick,
)
from rules.triggers import Evidence, TriggerDecision

P = pytest.param
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = default_policy().governance.rollback
RID = "rb-1"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(stage: str, minute: float, rid: str = RID, key: str = "deploy-1", **fields) -> Envelope:
    payload = RollbackEvent(rollback_id=rid, permit_id=None, stage=stage, key=key, **fields)
    return Envelope(event_id=f"{rid}:{stage}:{minute}:{fields.get('region')}",
                    type="rollback.event", occurred_at=at(minute), producer="test", subject=key,
                    payload=payload.model_dump(mode="json"))


def codes(events: list[Envelope]) -> list[str]:
    return [e.payload["code"] for e in events]


def run_ticks(tracker: RollbackTracker, minutes: list[float]) -> dict[float, list[Envelope]]:
    out = {}
    for m in minutes:
        tracker, emitted = tick(tracker, at(m), POLICY)
        out[m] = emitted
    return out


# --- SLA: when the clock starts and how long it runs ----------------------------------------

SLA_CASES = [
    # level, operation, events, expected deadline (minutes after T0)
    P(2, "application_deployment", [("triggered", 0, {"approval": "none"}), ("commanded", 0, {})],
      10, id="L2 app deployment: stricter 10 (C-15)"),
    P(2, None, [("triggered", 0, {"approval": "none"}), ("commanded", 0, {})], 30,
      id="L2 any operation: 30"),
    P(3, "infrastructure_change", [("triggered", 0, {"approval": "none"}),
                                   ("commanded", 0, {})], 15, id="L3 infrastructure: 15"),
    P(3, "configuration_change", [("triggered", 0, {"approval": "none"}),
                                  ("commanded", 0, {})], 5, id="L3 configuration: 5"),
    P(2, None, [("triggered", 0, {"approval": "manual"}), ("commanded", 8, {})], 38,
      id="L2 excludes decision and approval: from the command"),
    P(3, None, [("triggered", 0, {"approval": "manual"}),
                ("commanded", 8, {"decided_at": at(3)})], 18,
      id="L3 excludes decision only: from the decision"),
    P(3, None, [("triggered", 0, {"approval": "none"}), ("commanded", 0.5, {})], 15,
      id="L3 automatic trigger decides at once"),
    P(4, None, [("triggered", 0, {"approval": "manual"}), ("commanded", 4, {})], 10,
      id="L4 excludes nothing: from the trigger"),
]


@pytest.mark.parametrize(("level", "operation", "stages", "deadline"), SLA_CASES)
def test_sla_deadline(level, operation, stages, deadline):
    sla = POLICY.effective_sla_minutes(level, operation)
    tracker = fold(ev(stage, m, level=level, operation_type=operation, sla_minutes=sla, **f)
                   for stage, m, f in stages)
    assert tracker.records[RID].deadline(POLICY) == at(deadline)


def test_no_deadline_while_an_l2_rollback_waits_for_approval():
    tracker = fold([ev("triggered", 0, level=2, approval="manual")])
    assert tracker.records[RID].deadline(POLICY) is None


@pytest.mark.parametrize(("level", "severity", "consequence"), [
    P(2, "medium", "warning_issued", id="L2"),
    P(3, "high", "incident_review", id="L3"),
    P(4, "critical", "executive_review", id="L4"),
])
def test_sla_breach_is_raised_once_just_after_the_deadline(level, severity, consequence):
    sla = POLICY.effective_sla_minutes(level)
    tracker = fold([ev("triggered", 0, level=level, approval="none", sla_minutes=sla),
                    ev("commanded", 0), ev("started", 0.5), ev("completed", 4)])
    emitted = run_ticks(tracker, [sla - 0.01, sla + 0.01])  # verification never came
    assert emitted[sla - 0.01] == []
    (breach,) = emitted[sla + 0.01]
    assert breach.payload["code"] == "rollback.sla_breach"
    assert breach.payload["severity"] == severity
    assert consequence in breach.payload["actions"]
    assert breach.payload["escalate_to"] == ["incident_commander"]
    tracker = fold([breach], tracker)
    assert "rollback.sla_breach" not in codes(tick(tracker, at(sla + 5), POLICY)[1])


def test_verified_in_time_is_no_breach_and_reports_the_buffer():
    tracker = fold([ev("triggered", 0, level=2, approval="none", sla_minutes=10),
                    ev("commanded", 0), ev("started", 0.5), ev("step", 2, step="rollback"),
                    ev("completed", 4), ev("verified", 6, passed=True)])
    assert run_ticks(tracker, [11, 60])[60] == []
    report = tracker.records[RID].report(POLICY)
    assert (report["sla_met_boolean"], report["rollback_time_seconds"],
            report["sla_buffer_seconds"]) == (True, 360.0, 240.0)
    assert report["rollback_phases_executed"] == ["rollback"]


def test_verified_late_is_a_breach_even_if_nobody_ticked_in_between():
    tracker = fold([ev("triggered", 0, level=2, approval="none", sla_minutes=10),
                    ev("commanded", 0), ev("completed", 9), ev("verified", 12, passed=True)])
    _, emitted = tick(tracker, at(13), POLICY)
    assert codes(emitted) == ["rollback.sla_breach"]
    assert tracker.records[RID].report(POLICY)["sla_met_boolean"] is False


def test_second_breach_for_the_same_key_within_30_days_escalates():
    tracker = RollbackTracker()
    found = []
    for n, start in enumerate([0, 60 * 24 * 10, 60 * 24 * 50]):  # day 0, day 10, day 50
        rid = f"rb-{n}"
        tracker = fold([ev("triggered", start, rid=rid, level=2, approval="none",
                           sla_minutes=10), ev("commanded", start, rid=rid)], tracker)
        tracker, emitted = tick(tracker, at(start + 11), POLICY)
        found.append([c for c in codes(emitted) if "sla_breach" in c])
    assert found == [["rollback.sla_breach"],
                     ["rollback.sla_breach", "rollback.repeated_sla_breach"],
                     ["rollback.sla_breach"]]


def test_l4_waits_for_every_region():
    tracker = fold([ev("triggered", 0, level=4, approval="none", sla_minutes=10),
                    ev("commanded", 0, regions=["eu", "us"]),
                    ev("verified", 4, region="eu", passed=True)])
    assert tracker.records[RID].verified_at is None
    assert codes(tick(tracker, at(10.5), POLICY)[1]) == ["rollback.sla_breach"]
    tracker = fold([ev("verified", 6, region="us", passed=True)], tracker)
    assert tracker.records[RID].verified_at == at(6)
    assert tick(tracker, at(10.5), POLICY)[1] == []


# --- failure and verification escalation -----------------------------------------------------


def failed_tracker() -> RollbackTracker:
    return fold([ev("triggered", 0, level=3, approval="none", sla_minutes=15),
                 ev("commanded", 0), ev("started", 0), ev("failed", 1, reason="timeout")])


def test_failure_escalation_path_stage_by_stage():
    emitted = {}
    tracker = failed_tracker()
    for m in [1, 3, 6, 10, 16, 29, 31, 90]:
        tracker, out = tick(tracker, at(m), POLICY)
        emitted[m] = [(e.payload["details"].get("stage"), tuple(e.payload["escalate_to"]))
                      for e in out if e.payload["code"] == "rollback.failure_escalation"]
    assert emitted == {
        1: [(1, ("incident_commander",))], 3: [],
        6: [(2, ("senior_sre", "engineering_director"))], 10: [],
        16: [(3, ("cto", "vp_engineering"))], 29: [],
        31: [(4, ("incident_commander",))], 90: []}


def test_a_late_tick_raises_every_stage_that_is_due():
    _, out = tick(failed_tracker(), at(20), POLICY)
    stages = [e.payload["details"]["stage"] for e in out
              if e.payload["code"] == "rollback.failure_escalation"]
    assert stages == [1, 2, 3]


def test_a_successful_retry_ends_the_failure_path():
    tracker, _ = tick(failed_tracker(), at(2), POLICY)
    tracker = fold([ev("started", 3), ev("completed", 5)], tracker)
    _, out = tick(tracker, at(20), POLICY)
    assert "rollback.failure_escalation" not in codes(out)


def test_execution_timeout_counts_as_a_failure():
    tracker = fold([ev("triggered", 0, level=2, approval="none", sla_minutes=30),
                    ev("commanded", 0), ev("started", 0)])
    out = run_ticks(tracker, [14, 15])
    assert out[14] == []
    assert codes(out[15]) == ["rollback.execution_timeout", "rollback.failure_escalation"]


def test_verification_failure_escalates_with_cumulative_timeouts():
    tracker = fold([ev("triggered", 0, level=2, approval="none", sla_minutes=30),
                    ev("commanded", 0), ev("completed", 3), ev("verified", 4, passed=False)])
    seen = {}
    for m in [4, 8.9, 9, 18.9, 19, 60]:
        tracker, out = tick(tracker, at(m), POLICY)
        seen[m] = [e.payload["escalate_to"][0] for e in out
                   if e.payload["code"] == "rollback.verification_failed"]
    assert seen == {4: ["engineer_on_call"], 8.9: [], 9: ["senior_sre"], 18.9: [],
                    19: ["engineering_director"], 60: []}


def test_passing_verification_ends_the_verification_path():
    tracker = fold([ev("triggered", 0, level=2, approval="none", sla_minutes=30),
                    ev("commanded", 0), ev("completed", 3), ev("verified", 4, passed=False)])
    tracker, _ = tick(tracker, at(4), POLICY)
    tracker = fold([ev("verified", 6, passed=True)], tracker)
    assert tick(tracker, at(30), POLICY)[1] == []


# --- approvals, replays --------------------------------------------------------------------


@pytest.mark.parametrize(("approval", "roles"), [
    P("manual", ["incident_commander"], id="manual"),
    P("executive", ["engineering_director", "cto"], id="executive"),
])
def test_waiting_rollback_asks_for_approval_once(approval, roles):
    tracker = fold([ev("triggered", 0, level=3, approval=approval)])
    tracker, out = tick(tracker, at(0), POLICY)
    assert codes(out) == ["rollback.approval_required"]
    assert out[0].payload["escalate_to"] == roles
    assert tick(tracker, at(1), POLICY)[1] == []


def test_replaying_the_ledger_raises_nothing_twice():
    events = [*failed_tracker_events()]
    tracker = fold(events)
    tracker, first = tick(tracker, at(20), POLICY)
    replayed = fold(events + first)
    assert tick(replayed, at(20), POLICY)[1] == []
    assert len({e.event_id for e in first}) == len(first)


def failed_tracker_events() -> list[Envelope]:
    return [ev("triggered", 0, level=3, approval="none", sla_minutes=15), ev("commanded", 0),
            ev("failed", 1)]


def test_tracker_state_is_json():
    tracker, _ = tick(fold(failed_tracker_events()), at(20), POLICY)
    assert RollbackTracker.model_validate_json(tracker.model_dump_json()) == tracker


# --- from a decision to events -------------------------------------------------------------


def decision(trigger: str, approval: str = "none") -> TriggerDecision:
    t = POLICY.trigger(trigger)
    return TriggerDecision(
        kind="rollback", trigger=trigger, key="permit-7", metric=t.metric, at=T0, decided_at=T0,
        severity=t.severity, automatic=approval == "none", approval=approval,
        security_incident=False, reason="test",
        evidence=Evidence(metric=t.metric, comparison=t.comparison,
                          threshold_type=t.threshold_type, threshold=t.threshold,
                          effective_threshold=t.threshold))


def context(template: str, level: int) -> KeyContext:
    plan, problems = parse_plan(load_template(template), level, POLICY)
    assert not problems
    return KeyContext(key="permit-7", permit_id="permit-7", level=level, plan=plan,
                      operation_type=plan.operation_summary.operation_type)


def test_fully_automated_plan_commands_at_once_with_its_phases():
    events = decision_events(decision("error_rate_threshold"),
                             context("kubernetes_deployment", 2), POLICY, T0)
    stages = [e.payload["stage"] for e in events]
    assert stages == ["triggered", "commanded"]
    command = events[1].payload
    assert (command["scope"], command["sla_minutes"]) == ("full", 10)
    assert command["phases"] == ["rollback_deployment", "verify_rollout", "verify_health"]
    assert events[0].payload["evidence"]["threshold"] == 0.01


def test_semi_automated_plan_waits_for_a_human():
    events = decision_events(decision("data_inconsistency_detected"),
                             context("database_migration", 3), POLICY, T0)
    assert [e.payload["stage"] for e in events] == ["triggered"]
    assert events[0].payload["approval"] == "manual"


def test_trigger_approval_is_kept():
    events = decision_events(decision("revenue_impact", "executive"),
                             context("kubernetes_deployment", 2), POLICY, T0)
    assert events[0].payload["approval"] == "executive"


def test_level_four_human_gates_wait_for_a_human():
    ctx = KeyContext(key="permit-7", permit_id="permit-7", level=4)
    events = decision_events(decision("error_rate_threshold"), ctx, POLICY, T0)
    assert [e.payload["approval"] for e in events] == ["manual"]


def test_partial_scope_from_the_plan():
    ctx = context("database_migration", 3)
    event = command_event("rb-9", ctx, "data_inconsistency_detected", T0, POLICY, actor="ic")
    assert event.payload["scope"] == "database_only"
    ctx = context("terraform_infrastructure", 3)
    event = command_event("rb-9", ctx, None, T0, POLICY, scope="regional", actor="ic")
    assert event.payload["phases"] == ["plan_rollback", "apply_rollback",
                                       "verify_infrastructure"]


def test_effective_sla_is_the_strictest_of_level_operation_and_plan():
    assert effective_sla(context("terraform_infrastructure", 3), POLICY) == 15
    assert effective_sla(context("n8n_workflow", 2), POLICY) == 5
    assert effective_sla(KeyContext(key="k"), POLICY) is None


def test_same_decision_same_rollback_id():
    a = decision_events(decision("error_rate_threshold"), KeyContext(key="permit-7"), POLICY, T0)
    b = decision_events(decision("error_rate_threshold"), KeyContext(key="permit-7"), POLICY,
                        at(5))
    assert [e.event_id for e in a] == [e.event_id for e in b]
