"""Emergency overrides: temporary Level 3 for 60 minutes with an incident ticket and a signed
incident commander (or on-call lead); revoked by tick at 60 minutes, also after a restart that
rebuilds the service from the ledger; a post-incident review is opened and chased."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.test_permit_kit import (
    APPROVERS,
    POLICY,
    T0,
    Clock,
    embedded_runner,
    envelope,
    ledger_records,
    new_pipeline,
    register_all,
)

P = pytest.param
IVY, OLGA = APPROVERS["incident_commander"], APPROVERS["on_call_lead"]
TOM = APPROVERS["tech_lead"]
DEPLOY = {"worker": {"id": "worker-9", "certification_level": 3},
          "operation": {"type": "deploy", "environment": "production", "service": "api"}}


def grant(pipe, body, at=T0):
    return pipe.handle_event(envelope("override.requested", body["override_id"], body, at), at)


def authorize(pipe, permit_id, at):
    return pipe.authorize({**DEPLOY, "permit_id": permit_id}, at).verdict


@pytest.fixture
def pipe():
    pipe, _ = new_pipeline()
    register_all(pipe)
    return pipe


def test_an_override_grants_level_3_for_60_minutes_then_revokes_itself(pipe):
    body = IVY.override("worker-9")
    outcome = grant(pipe, body)
    assert outcome.refusal is None
    assert [e.type for e in outcome.events] == ["override.requested", "override.event",
                                                "override.event"]
    granted, opened = (e.payload for e in outcome.events[1:])
    assert granted["stage"] == "granted" and opened["stage"] == "review_opened"
    assert granted["expires_at"].startswith("2030-01-07T10:00:00")
    assert granted["audit"]["retention_days"] == POLICY.governance.emergency_audit.retention_days
    assert granted["audit"]["fields"]["incident_id"] == "INC-1"
    assert granted["audit"]["fields"]["authorized_by"] == "ivy"
    permit_id = body["override_id"]
    view = pipe.permits.view(permit_id)
    assert (view["state"], view["level"], view["emergency"]) == ("issued", 3, True)

    assert authorize(pipe, permit_id, T0 + timedelta(minutes=5)).allowed
    warned = pipe.tick(T0 + timedelta(minutes=59, seconds=59))  # a late tick: one warning
    assert [(e.type, e.payload["minutes_left"]) for e in warned] == [
        ("permit.expiry_warning", 5)]
    assert pipe.tick(T0 + timedelta(minutes=59, seconds=59)) == []
    events = pipe.tick(T0 + timedelta(minutes=60))
    assert [e.type for e in events] == ["permit.revoked", "override.event"]
    assert events[1].payload["stage"] == "revoked"
    assert pipe.permits.view(permit_id)["state"] == "revoked"
    verdict = authorize(pipe, permit_id, T0 + timedelta(minutes=61))
    assert (verdict.allowed, verdict.reason_code) == (False, "permit_revoked")
    assert pipe.tick(T0 + timedelta(minutes=90)) == []  # once only


def test_the_override_revokes_itself_after_a_restart(tmp_path):
    clock = Clock()
    runner = embedded_runner(tmp_path, clock)
    register_all(runner.pipeline)
    body = IVY.override("worker-9")
    assert grant(runner.pipeline, body).refusal is None
    clock.advance(minutes=10)
    assert authorize(runner.pipeline, body["override_id"], clock()).allowed  # -> executing
    timers_before = runner.pipeline.permits.timers()
    runner.close()

    clock.advance(minutes=55)  # the process was down across the end of the override
    runner = embedded_runner(tmp_path, clock)
    try:
        permits = runner.pipeline.permits
        assert permits.timers() == timers_before
        assert permits.view(body["override_id"])["state"] == "executing"
        events = runner.tick()
        assert [e.type for e in events] == ["permit.revoked", "override.event"]
        assert permits.view(body["override_id"])["state"] == "revoked"
        assert not authorize(runner.pipeline, body["override_id"], clock()).allowed
    finally:
        runner.close()
    stages = [r["payload"]["stage"] for r in ledger_records(tmp_path)
              if r["type"] == "override.event"]
    assert stages == ["granted", "review_opened", "revoked"]


def test_an_on_call_lead_may_grant_and_scope_still_binds(pipe):
    body = OLGA.override("worker-9", operations=("deploy",))
    assert grant(pipe, body).refusal is None
    verdict = pipe.authorize({**DEPLOY, "permit_id": body["override_id"],
                              "operation": {**DEPLOY["operation"], "type": "restart"}},
                             T0 + timedelta(minutes=1)).verdict
    assert verdict.reason_code == "operation_not_in_permit"
    assert pipe.permits.view(body["override_id"])["state"] == "revoked"


@pytest.mark.parametrize(("make", "code"), [
    P(lambda: {**IVY.override("worker-9"), "incident_ticket": " "}, "approval.request_changed",
      id="ticket changed after signing"),
    P(lambda: IVY.override("worker-9", ticket=" "), "override.incident_ticket_missing",
      id="no incident ticket"),
    P(lambda: TOM.override("worker-9"), "approval.wrong_role", id="tech lead is no commander"),
    P(lambda: IVY.override("worker-9", role="on_call_lead"), "approval.role_not_held",
      id="role not held"),
    P(lambda: IVY.override("worker-9", trigger="boredom"), "override.unknown_trigger",
      id="not an emergency trigger"),
    P(lambda: IVY.override("worker-9", operations=("deploy", "drop")),
      "override.destructive_not_allowed", id="destructive operations never"),
    P(lambda: IVY.override("ivy"), "approval.self_approval", id="commander grants to self"),
    P(lambda: IVY.override("worker-9", at=T0 - timedelta(minutes=16)), "approval.deadline_passed",
      id="signed more than 15 minutes ago"),
    P(lambda: {**IVY.override("worker-9"), "signature": ""}, "approval.unsigned", id="unsigned"),
    P(lambda: {**IVY.override("worker-9"), "reason": "changed"}, "approval.request_changed",
      id="reason changed after signing"),
])
def test_bad_overrides_are_refused_and_recorded(pipe, make, code):
    body = make()
    outcome = grant(pipe, body)
    assert outcome.refusal is not None and outcome.refusal.code == code, outcome.refusal
    assert [e.type for e in outcome.events] == ["approval.refused"]
    assert pipe.permits.view(body["override_id"]) is None


def test_overrides_renew_three_times_by_a_commander_then_stop(pipe):
    at = T0
    first = OLGA.override("worker-9", ticket="INC-9", at=at)
    assert grant(pipe, first, at).refusal is None
    renew_by_on_call = OLGA.override("worker-9", ticket="INC-9", at=at)
    assert grant(pipe, renew_by_on_call, at).refusal.code == "approval.wrong_role"
    for _ in range(3):
        at += timedelta(minutes=60)
        pipe.tick(at)
        assert grant(pipe, IVY.override("worker-9", ticket="INC-9", at=at), at).refusal is None
    at += timedelta(minutes=60)
    pipe.tick(at)
    refusal = grant(pipe, IVY.override("worker-9", ticket="INC-9", at=at), at).refusal
    assert refusal.code == "override.renewals_exhausted"


def test_more_than_five_overrides_a_day_raise_a_high_alert(pipe):
    outcomes = [grant(pipe, IVY.override("worker-9", ticket=f"INC-{n}", at=T0), T0)
                for n in range(6)]
    alerts = [e for o in outcomes for e in o.events if e.type == "escalation.raised"]
    assert len(alerts) == 1 and alerts[0].payload["severity"] == "high"
    assert alerts[0].payload["code"] == "override.daily_threshold"


def test_the_post_incident_review_is_chased_when_overdue(pipe):
    late, reviewed = IVY.override("worker-9", ticket="INC-A"), IVY.override("w-2", ticket="INC-B")
    grant(pipe, late)
    grant(pipe, reviewed)
    review = envelope("override.review_submitted", reviewed["override_id"],
                      {"override_id": reviewed["override_id"], "reviewer_id": "dana",
                       "report": {"actions": ["rolled forward"], "lessons": ["alerting"]}})
    outcome = pipe.handle_event(review, T0 + timedelta(hours=2))
    assert outcome.refusal is None and outcome.events[-1].payload["stage"] == "review_completed"
    due = T0 + timedelta(minutes=60) + timedelta(
        hours=POLICY.governance.emergency.post_incident_review_due_hours)
    assert [e for e in pipe.tick(due - timedelta(seconds=1))
            if e.type == "escalation.raised"] == []
    chased = [e for e in pipe.tick(due) if e.type == "escalation.raised"]
    assert [e.subject for e in chased] == [late["override_id"]]
    assert chased[0].payload["code"] == "override.review_overdue"
    assert [e for e in pipe.tick(due + timedelta(days=1)) if e.type == "escalation.raised"] == []


def test_the_commander_may_end_the_override_early(pipe):
    body = IVY.override("worker-9")
    grant(pipe, body)
    view = pipe.permits.view(body["override_id"])
    revoke = IVY.sign(view, decision="revoke", at=T0 + timedelta(minutes=20))
    outcome = pipe.handle_event(envelope("approval.signed", body["override_id"], revoke),
                                T0 + timedelta(minutes=20))
    assert outcome.refusal is None
    assert [e.type for e in outcome.events] == ["approval.signed", "permit.revoked",
                                                "override.event"]
    assert pipe.tick(T0 + timedelta(minutes=60)) == []  # nothing left to end
