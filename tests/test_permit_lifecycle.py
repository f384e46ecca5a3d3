"""The permit state machine (every state x every event), requests, windows, renewals, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rules.permits import (
    EVENT_TYPES,
    Refusal,
    check_renewal,
    check_rollback_plan,
    lifecycle_events,
    transition,
)
from tests.test_permit_kit import (
    POLICY,
    PLAN,
    T0,
    certify,
    new_pipeline,
    permit_request,
    register_all,
    request_envelope,
)

P = pytest.param
LIFECYCLE = POLICY.governance.permit_lifecycle

# Written out by hand (not read from governance.toml): a change to the lifecycle data must be
# a deliberate change here too. (state, event) -> next state; everything else is refused.
ALLOWED = {
    ("requested", "submit"): "in_review",
    ("in_review", "approvals_complete"): "approved",
    ("in_review", "reject"): "denied",
    ("in_review", "request_changes"): "requested",
    ("approved", "issue"): "issued",
    ("issued", "start"): "executing",
    ("issued", "renew"): "issued",
    ("issued", "expire"): "expired",
    ("issued", "suspend"): "suspended",
    ("issued", "revoke"): "revoked",
    ("executing", "renew"): "executing",
    ("executing", "complete"): "validating",
    ("executing", "fail"): "validating",
    ("executing", "expire"): "expired",
    ("executing", "suspend"): "suspended",
    ("executing", "revoke"): "revoked",
    ("validating", "close"): "closed",
    ("validating", "revoke"): "revoked",
    ("suspended", "resume"): "issued",
    ("suspended", "expire"): "expired",
    ("suspended", "revoke"): "revoked",
}
STATES = ("requested", "in_review", "approved", "issued", "executing", "validating", "closed",
          "denied", "expired", "suspended", "revoked")
EVENTS = ("submit", "approvals_complete", "reject", "request_changes", "issue", "start",
          "renew", "expire", "suspend", "resume", "revoke", "complete", "fail", "close")
TERMINAL = {"closed", "denied", "expired", "revoked"}


def test_the_table_covers_the_policy_vocabulary():
    assert set(LIFECYCLE.states) == set(STATES)
    assert set(lifecycle_events(LIFECYCLE)) == set(EVENTS)
    assert set(EVENT_TYPES) == set(EVENTS)  # every move has a ledger event type


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("event", EVENTS)
def test_every_state_and_event(state, event):
    result = transition(LIFECYCLE, state, event)
    expected = ALLOWED.get((state, event))
    if expected is not None:
        assert result == expected
        return
    assert isinstance(result, Refusal)
    if state in TERMINAL:
        assert result.code == "permit.terminal"
        assert state in result.message
    else:
        assert result.code == "permit.transition_refused"
        assert f"'{event}'" in result.message and state in result.message
        allowed_here = [e for (s, e) in ALLOWED if s == state]
        assert all(e in result.message for e in allowed_here)  # says what would be allowed


@pytest.mark.parametrize(("state", "event", "code"), [
    P("nowhere", "submit", "permit.unknown_state", id="unknown state"),
    P("issued", "teleport", "permit.unknown_event", id="unknown event"),
])
def test_unknown_names_are_refused(state, event, code):
    result = transition(LIFECYCLE, state, event)
    assert isinstance(result, Refusal) and result.code == code


# --- requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("plan", "code"), [
    P(None, "permit.rollback_plan_missing", id="no plan"),
    P({}, "permit.rollback_plan_missing", id="empty plan"),
    P({"steps": ["undo"], "verification": ["ok"]}, "permit.rollback_plan_invalid",
      id="not the rollback schema"),
    P({k: v for k, v in PLAN.items() if k != "testing_evidence"}, "permit.rollback_plan_invalid",
      id="no testing evidence"),
    P({**PLAN, "rollback_procedure": {**PLAN["rollback_procedure"], "phases": []}},
      "permit.rollback_plan_invalid", id="no phases"),
    P(PLAN, None, id="a seed-schema plan valid at the level"),
])
def test_rollback_plan_needed_from_level_2(plan, code):
    refusal = check_rollback_plan(plan, 2, POLICY.governance)
    assert (refusal.code if refusal else None) == code
    assert check_rollback_plan(None, 1, POLICY.governance) is None  # read-only: no plan


def _refusal(task_level, /, **overrides):
    pipe, recorder = new_pipeline()
    register_all(pipe)
    req = permit_request(pipe, certify(pipe, task_level), **overrides)
    outcome = pipe.handle_event(request_envelope(req), T0)
    return outcome.refusal, recorder, req


@pytest.mark.parametrize(("level", "overrides", "code"), [
    P(2, {"rollback_plan": None}, "permit.rollback_plan_missing", id="L2 without plan"),
    P(2, {"decision_event_id": "nope"}, "permit.unknown_decision", id="unknown decision"),
    P(2, {"task_id": "another-task"}, "permit.decision_mismatch", id="decision of another task"),
    P(2, {"environment": "staging"}, "permit.environment_mismatch", id="other environment"),
    P(2, {"hours": 200}, "permit.window_too_long", id="longer than the type allows"),
    P(2, {"not_before": "2030-01-07T10:00:00Z", "not_after": "2030-01-07T09:30:00Z"},
      "permit.window_invalid", id="window backwards"),
    P(2, {"not_before": "2029-01-01T00:00:00Z", "not_after": "2029-01-01T01:00:00Z"},
      "permit.window_passed", id="window in the past"),
    P(2, {"justification": "  "}, "permit.justification_missing", id="no justification"),
    P(2, {"operations": [" "]}, "permit.scope_empty", id="no operations"),
    P(2, {"permit_type": "emergency", "level": 3}, "permit.emergency_via_override",
      id="emergency type by request"),
    P(2, {"permit_type": "warp_drive"}, "permit.unknown_type", id="unknown type"),
    P(3, {"permit_type": "standard_production", "level": 2}, "permit.type_too_weak",
      id="L3 task, L2 permit"),
    P(2, {"level": 3}, "permit.level_mismatch", id="level not the type's"),
    P(2, {"request_sha256": "f" * 64}, "permit.request_hash_mismatch", id="hash not of request"),
    P(2, {"constraints": {"max_error_rate": -1}}, "permit.bad_constraint", id="bad constraint"),
    P(1, {"hours": 721}, "permit.window_too_long", id="read-only beyond 720 h"),
])
def test_bad_requests_are_refused_and_recorded(level, overrides, code):
    refusal, recorder, req = _refusal(level, **overrides)
    assert refusal is not None and refusal.code == code, refusal
    refused = recorder.of_type("permit.request_refused")
    assert [e.payload["code"] for e in refused] == [code]
    assert refused[0].payload["request"]["permit_id"] == req.permit_id
    assert not recorder.of_type("permit.requested")  # nothing else was recorded


def test_a_stricter_type_is_allowed_and_deletions_need_destructive():
    refusal, _, _ = _refusal(2, permit_type="advanced_production", level=3)
    assert refusal is None
    pipe, _ = new_pipeline()
    decision = certify(pipe, 3, expect=4, task="Delete stale customer records",
                       operations=["data_deletion"])
    req = permit_request(pipe, decision, permit_type="master_production")
    assert pipe.handle_event(request_envelope(req)).refusal.code == "permit.type_too_weak"
    req = permit_request(pipe, decision)  # the default for a deletion: destructive
    assert req.permit_type == "master_production"  # (the kit names the gate's type) ...
    req = permit_request(pipe, decision, permit_type="destructive")
    assert req.level == 4
    assert pipe.handle_event(request_envelope(req)).refusal is None
    quorum = pipe.permits.view(req.permit_id)["quorum"]
    assert quorum["groups"][0] == {"count": 3, "roles": ["data_lead", "security_lead",
                                                         "engineering_director"],
                                   "all_must_approve": True, "sequential": True}
    assert quorum["groups"][1]["count"] == 3  # and the Level 4 executives
    assert "change_advisory_board" in quorum["required_roles"]


def test_a_request_starts_review_with_its_quorum_deadline_and_audit():
    pipe, recorder = new_pipeline()
    req = permit_request(pipe, certify(pipe, 3))
    assert pipe.handle_event(request_envelope(req)).refusal is None
    assert [e.type for e in recorder.events[-2:]] == ["permit.requested", "permit.review_started"]
    details = recorder.events[-1].payload["details"]
    assert details["quorum"]["groups"][0]["count"] == 2
    assert details["approval_deadline"].startswith("2030-01-07T11:00")  # window end < 48 h SLA
    audit = details["audit"]
    assert audit["retention_class"] == "compliance-7y" and audit["retention_days"] == 2555
    assert set(audit["fields"]) == set(POLICY.governance.audit_for(3).fields)
    assert audit["fields"]["certification_level"] == 3
    view = pipe.permits.view(req.permit_id)
    assert view["state"] == "in_review" and view["quorum"]["missing"]


def test_the_same_request_twice_is_one_permit_and_a_changed_one_conflicts():
    pipe, recorder = new_pipeline()
    req = permit_request(pipe, certify(pipe, 2))
    pipe.handle_event(request_envelope(req))
    again = pipe.handle_event(request_envelope(req))
    assert again.refusal is None and again.result.duplicate and not again.events
    changed = permit_request(pipe, req.decision_event_id, permit_id=req.permit_id,
                             justification="something else")
    assert pipe.handle_event(request_envelope(changed)).refusal.code == "permit.id_conflict"


# --- renewals ---------------------------------------------------------------------------------


def _issued(pipe, level, hours):
    from tests.test_permit_kit import issued_permit

    register_all(pipe)
    view = issued_permit(pipe, level, hours=hours)
    return pipe.permits.permit(view["permit_id"])


@pytest.mark.parametrize(("level", "hours", "at_hours", "ask", "expect"), [
    P(1, 168, 167, 24, "+24", id="read-only renews in the last 2 h"),
    P(1, 168, 100, 24, "permit.renewal_too_early", id="too early"),
    P(1, 168, 169, 24, "permit.expired", id="after the end"),
    P(1, 168, 167, 500, "+168", id="at most the default duration"),
    P(1, 719, 718, 24, "+1", id="capped by the 720 h lifetime"),
    P(2, 24, 23, 24, "+24", id="L2 in its last 2 h (then its quorum: test_permit_renewals)"),
    P(3, 8, 7, 24, "+8", id="L3 at most the default duration"),
    P(4, 4, 3, 4, "permit.not_renewable", id="master permits do not renew"),
])
def test_renewal_rules(level, hours, at_hours, ask, expect):
    pipe, _ = new_pipeline()
    permit = _issued(pipe, level, hours)
    ptype = POLICY.governance.permit_type(permit.permit_type)
    result = check_renewal(permit, ptype, LIFECYCLE, ask, T0 + timedelta(hours=at_hours))
    if expect.startswith("+"):
        assert result == permit.scope.not_after + timedelta(hours=int(expect[1:]))
    else:
        assert isinstance(result, Refusal) and result.code == expect


def test_renewals_are_counted_and_limited():
    from events import Envelope

    pipe, _ = new_pipeline()
    permit = _issued(pipe, 1, 100)
    now = T0
    for n in range(5):
        now = permit.scope.not_after - timedelta(hours=1)
        body = {"permit_id": permit.permit_id, "requested_by": "master-1",
                "extension_hours": 100, "justification": "still reading"}
        outcome = pipe.handle_event(Envelope(type="permit.renewal_requested", occurred_at=now,
                                             producer="m", subject=permit.permit_id,
                                             payload=body), now)
        assert outcome.refusal is None, (n, outcome.refusal)
        permit = pipe.permits.permit(permit.permit_id)
        assert permit.renewals == n + 1
    assert permit.scope.not_after - permit.scope.not_before <= timedelta(hours=720)
    result = check_renewal(permit, POLICY.governance.permit_type("read_only"), LIFECYCLE, 10,
                           permit.scope.not_after - timedelta(hours=1))
    assert isinstance(result, Refusal) and result.code == "permit.renewals_exhausted"
