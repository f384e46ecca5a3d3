"""Enforcement against live permits: every scope axis in and out, wrong worker and level,
windows, expiry, revocation, suspension; what each refusal does to the permit; the running
checks (error rate, p99 latency, unauthorised services, deadline overrun) and the hand-over
to the rollback engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import format_time
from events.payloads import OperationAuthorized
from tests.test_permit_kit import (
    APPROVERS,
    T0,
    approval_envelope,
    certify,
    envelope,
    issued_permit,
    new_pipeline,
    permit_request,
    register_all,
    request_envelope,
)

P = pytest.param
SCOPE = {"operations": ["deploy", "health_check"], "services": ["api"],
         "regions": ["eu-west-1"], "data_classes": []}
OP = {"type": "deploy", "environment": "production", "service": "api", "region": "eu-west-1"}


def setup(level=2, **overrides):
    pipe, recorder = new_pipeline()
    register_all(pipe)
    view = issued_permit(pipe, level, **{**SCOPE, **overrides})
    return pipe, recorder, view["permit_id"]


def ask(pipe, permit_id, at=T0, worker="worker-7", level=2, **op):
    request = {"worker": {"id": worker, "certification_level": level},
               "operation": {**OP, **op}}
    if permit_id is not None:
        request["permit_id"] = permit_id
    return pipe.authorize(request, at)


def state(pipe, permit_id):
    return pipe.permits.view(permit_id)["state"]


def test_in_scope_is_allowed_and_starts_execution():
    pipe, recorder, pid = setup()
    result = ask(pipe, pid)
    assert result.verdict.allowed and result.verdict.reason_code == "authorized"
    assert [e.type for e in result.events] == ["operation.authorized", "permit.execution_started"]
    assert state(pipe, pid) == "executing"
    answer = result.events[0].payload
    assert OperationAuthorized.model_validate(answer).model_dump(mode="json") == answer
    assert answer["allowed"] and answer["audit"]["retention_class"] == "extended-1y"
    assert answer["audit"]["fields"]["worker_id"] == "worker-7"
    assert ask(pipe, pid, type="health_check").verdict.allowed
    assert state(pipe, pid) == "executing"


# (The operations and data classes are ones the checker puts at Level 2 / a Level 3 worker
# asks: otherwise the level check refuses before the permit is even looked at.)
SCOPE_CASES = [
    P({"type": "configuration_update"}, "operation_not_in_permit", id="operation"),
    P({"environment": "staging"}, "environment_mismatch", id="environment"),
    P({"service": "billing"}, "service_not_in_permit", id="service"),
    P({"service": None}, "service_not_stated", id="service not stated"),
    P({"region": "us-east-1"}, "region_not_in_permit", id="region"),
    P({"region": None}, "region_not_stated", id="region not stated"),
    P({"data_classes": ["customer_records"], "level": 3}, "data_not_in_permit", id="data class"),
]


@pytest.mark.parametrize("executing", [False, True], ids=["issued", "executing"])
@pytest.mark.parametrize(("op", "code"), SCOPE_CASES)
def test_out_of_scope_is_denied_recorded_and_revokes(op, code, executing):
    pipe, recorder, pid = setup()
    if executing:
        assert ask(pipe, pid).verdict.allowed
    op = dict(op)
    level = op.pop("level", 2)
    request_op = {k: v for k, v in {**OP, **op}.items() if v is not None}
    result = pipe.authorize({"worker": {"id": "worker-7", "certification_level": level},
                             "permit_id": pid, "operation": request_op},
                            T0 + timedelta(minutes=1))
    assert (result.verdict.allowed, result.verdict.reason_code) == (False, code)
    types = [e.type for e in result.events]
    assert types[:3] == ["operation.authorized", "violation.recorded", "permit.revoked"]
    violation = result.events[1].payload
    assert violation["action"] == "revoked" and violation["rule"] == f"authorize.{code}"
    revoked = result.events[2].payload
    assert revoked["details"]["revocation_reason"] == "scope_expansion"
    assert ("rollback.event" in types) == executing  # something to roll back only if executing
    if executing:
        rollback = next(e for e in result.events if e.type == "rollback.event").payload
        assert rollback["stage"] == "triggered" and rollback["permit_id"] == pid
    assert "escalation.raised" in types  # scope expansion opens an incident
    assert state(pipe, pid) == "revoked"
    assert ask(pipe, pid, T0 + timedelta(minutes=2)).verdict.reason_code == "permit_revoked"


def test_sensitive_data_outside_the_permit_is_refused_even_at_level_3():
    pipe, _, pid = setup(level=3)
    verdict = ask(pipe, pid, level=3, has_pii=True).verdict
    assert verdict.reason_code == "data_not_in_permit"
    pipe, _, pid = setup(level=3, data_classes=["pii"])
    assert ask(pipe, pid, level=3, has_pii=True).verdict.allowed


@pytest.mark.parametrize(("kwargs", "code", "new_state"), [
    P({"worker": "worker-8"}, "worker_not_on_permit", "suspended", id="another worker"),
    P({"level": 1}, "production_requires_level_2", "issued", id="level 1 in production"),
    P({"level": 2, "_permit_level": 3}, "insufficient_level", "suspended",
      id="worker below the permit level"),
    P({"at": T0 - timedelta(minutes=1)}, "outside_time_window", "issued", id="before the window"),
    P({"at": T0 + timedelta(hours=2)}, "permit_expired", "issued", id="after the window"),
])
def test_who_and_when(kwargs, code, new_state):
    level = kwargs.pop("_permit_level", 2)
    pipe, recorder, pid = setup(level=level)
    result = ask(pipe, pid, **kwargs)
    assert (result.verdict.allowed, result.verdict.reason_code) == (False, code)
    assert state(pipe, pid) == new_state
    violation = next(e for e in result.events if e.type == "violation.recorded").payload
    assert violation["action"] == ("suspended" if new_state == "suspended" else "denied")


def test_a_suspended_permit_is_refused_until_an_approver_resumes_it():
    pipe, _, pid = setup()
    ask(pipe, pid, worker="intruder")
    assert state(pipe, pid) == "suspended"
    assert ask(pipe, pid).verdict.reason_code == "permit_suspended"
    view = pipe.permits.view(pid)
    body = APPROVERS["tech_lead"].sign(view, decision="resume")
    assert pipe.handle_event(approval_envelope(body)).refusal is None
    assert state(pipe, pid) == "issued" and ask(pipe, pid).verdict.allowed


@pytest.mark.parametrize(("prepare", "code"), [
    P("expired", "permit_expired", id="expired by tick"),
    P("revoked", "permit_revoked", id="revoked by an approver"),
    P("review", "permit_not_issued", id="still in review"),
    P("unknown", "permit_unknown", id="unknown permit"),
    P("none", "no_active_permit", id="no permit named"),
    P("closed", "permit_closed", id="after execution"),
])
def test_permits_that_are_not_usable(prepare, code):
    pipe, recorder, pid = setup()
    at = T0 + timedelta(minutes=1)
    if prepare == "expired":
        pipe.tick(T0 + timedelta(hours=3))
        assert state(pipe, pid) == "expired"
        at = T0 + timedelta(hours=3)
    elif prepare == "revoked":
        body = APPROVERS["security_lead"].sign(pipe.permits.view(pid), decision="revoke")
        assert pipe.handle_event(approval_envelope(body)).refusal is None
    elif prepare == "review":
        req = permit_request(pipe, certify(pipe, 2), **SCOPE)
        pipe.handle_event(request_envelope(req))
        pid = req.permit_id
    elif prepare == "unknown":
        pid = "prm-does-not-exist"
    elif prepare == "none":
        pid = None
    elif prepare == "closed":
        assert ask(pipe, pid).verdict.allowed
        report = {"execution_id": "x-1", "permit_id": pid, "task_id": None,
                  "worker_id": "worker-7", "status": "completed", "operations": ["deploy"]}
        pipe.handle_event(envelope("execution.reported", pid, report))
        assert state(pipe, pid) == "validating"
    result = ask(pipe, pid, at)
    assert (result.verdict.allowed, result.verdict.reason_code) == (False, code)
    assert result.events[0].type == "operation.authorized"
    assert any(e.type == "violation.recorded" for e in result.events)


def test_a_permit_body_sent_by_the_worker_is_never_trusted():
    pipe, _, pid = setup()
    forged = {"permit_id": pid, "status": "active", "operations": ["configuration_update"],
              "environment": "production", "services": ["api"]}
    request = {"worker": {"id": "worker-7", "certification_level": 2, "active_permit": forged},
               "operation": {**OP, "type": "configuration_update"}}
    verdict = pipe.authorize(request, T0).verdict
    assert verdict.reason_code == "operation_not_in_permit"  # judged by the live scope
    invented = {**forged, "permit_id": "prm-invented", "operations": ["deploy"]}
    request["worker"]["active_permit"] = invented
    request["operation"]["type"] = "deploy"
    assert pipe.authorize(request, T0).verdict.reason_code == "permit_unknown"


def test_a_revoked_certification_revokes_all_the_workers_permits():
    pipe, _, first = setup()
    second = issued_permit(pipe, 2, **SCOPE)["permit_id"]
    result = pipe.authorize({"worker": {"id": "worker-7", "certification_level": 2,
                                        "status": "revoked"}, "permit_id": first,
                             "operation": OP}, T0)
    assert result.verdict.reason_code == "certification_revoked"
    assert state(pipe, first) == state(pipe, second) == "revoked"
    reasons = {e.payload["details"]["revocation_reason"] for e in result.events
               if e.type == "permit.revoked"}
    assert reasons == {"worker_certification_revoked"}


# --- running-permit checks ------------------------------------------------------------------


def samples(pipe, pid, metric, values, start=T0, every=30):
    out = []
    for n, value in enumerate(values):
        at = start + timedelta(seconds=every * n)
        sample = {"key": pid, "metric": metric, "value": value, "observed_at": format_time(at)}
        out.append(pipe.handle_event(envelope("metric.sample", pid, sample, at), at))
    return out


@pytest.mark.parametrize(("metric", "values", "constraints", "fires", "reason"), [
    P("error_rate", [0.02] * 5, {}, 4, "safety_violation", id="error rate 2% for 120 s"),
    P("error_rate", [0.02] * 4, {}, None, None, id="error rate 2% for 90 s: not yet"),
    P("error_rate", [0.02, 0.02, 0.0, 0.02, 0.02], {}, None, None, id="broken run resets"),
    P("error_rate", [0.03] * 6, {"max_error_rate": 0.05}, None, None,
      id="permit limit 5% (C-17)"),
    P("latency_p99", [800] * 11, {}, 10, "constraint_breach", id="p99 800 ms for 300 s"),
])
def test_metric_breaches_revoke_and_hand_over_to_rollback(metric, values, constraints, fires,
                                                          reason):
    pipe, _, pid = setup(constraints=constraints)
    assert ask(pipe, pid).verdict.allowed
    outcomes = samples(pipe, pid, metric, values)
    fired = [n for n, o in enumerate(outcomes) if any(e.type == "permit.revoked"
                                                      for e in o.events)]
    assert fired == ([] if fires is None else [fires])
    if fires is not None:
        events = outcomes[fires].events
        revoked = next(e for e in events if e.type == "permit.revoked").payload
        assert revoked["details"]["revocation_reason"] == reason
        rollback = next(e for e in events if e.type == "rollback.event").payload
        assert rollback["stage"] == "triggered" and rollback["evidence"]
        assert state(pipe, pid) == "revoked"


def test_services_beyond_the_scope_in_an_execution_report_revoke():
    pipe, _, pid = setup()
    assert ask(pipe, pid).verdict.allowed
    report = {"execution_id": "x-1", "permit_id": pid, "task_id": None, "worker_id": "worker-7",
              "status": "completed", "operations": ["deploy"],
              "outcome": {"services_touched": ["api", "billing"]}}
    outcome = pipe.handle_event(envelope("execution.reported", pid, report))
    types = [e.type for e in outcome.events]
    assert types[:4] == ["execution.reported", "violation.recorded", "permit.revoked",
                         "rollback.event"]
    assert outcome.events[3].payload["evidence"]["services"] == ["billing"]


def test_an_execution_overrunning_the_window_is_revoked_and_rolled_back():
    pipe, _, pid = setup()
    assert ask(pipe, pid).verdict.allowed
    end = T0 + timedelta(hours=2)
    assert pipe.tick(end) == []  # in progress may finish within 15 minutes
    assert ask(pipe, pid, end).verdict.reason_code == "permit_expired"  # but nothing new
    events = pipe.tick(end + timedelta(minutes=15))
    assert [e.type for e in events] == ["violation.recorded", "permit.revoked", "rollback.event"]
    assert events[2].payload["trigger"] == "deadline_overrun"


def test_a_finished_execution_validates_then_closes():
    pipe, _, pid = setup()
    assert ask(pipe, pid).verdict.allowed
    report = {"execution_id": "x-1", "permit_id": pid, "task_id": None, "worker_id": "worker-7",
              "status": "completed", "operations": ["deploy"]}
    pipe.handle_event(envelope("execution.reported", pid, report))
    assert state(pipe, pid) == "validating"
    close = {"permit_id": pid, "requested_by": "master-1", "summary": {"outcome": "success"}}
    outcome = pipe.handle_event(envelope("permit.closure_requested", pid, close))
    assert outcome.refusal is None and state(pipe, pid) == "closed"
