"""The HTTP API against the running server (aiohttp on a free loopback port, real HTTP, the
embedded ledger on disk): the happy paths of masters, approvers, workers and incident
commanders, and every error as JSON with a stable code and the right status."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from events import MAX_EVENT_BYTES
from streams.client import Client, ClientError
from tests.test_permit_kit import (
    APPROVERS,
    PLAN,
    T0,
    TASKS,
    Clock,
    LiveServer,
    embedded_runner,
    ledger_records,
    register_all,
)

P = pytest.param
TOM, IVY = APPROVERS["tech_lead"], APPROVERS["incident_commander"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = tmp_path_factory.mktemp("web")
    clock = Clock()
    runner = embedded_runner(path, clock)
    register_all(runner.pipeline)
    server = LiveServer(runner.pipeline)
    server.runner, server.path, server.clock = runner, path, clock
    yield server
    server.stop()
    runner.close()


def new_task(live, level=2, **extra):
    task = {**TASKS[level], **extra}
    status, _, decision = live.call("POST", "/v1/tasks", task)
    assert status == 200, decision
    return decision


def request_permit(live, task_id, **extra):
    body = {"task_id": task_id, "requested_by": "master-1", "worker_id": "worker-7",
            "scope": {"operations": ["deploy"], "services": ["api"],
                      "environment": "production"},
            "justification": "release 2.1", "rollback_plan": PLAN, **extra}
    return live.call("POST", "/v1/permits", body)


def test_master_approver_and_worker_over_http(live):
    decision = new_task(live, task_id="web-task-1")
    assert decision["certification_decision"]["certification_level_required"] == 2
    assert decision["decision_event_id"] and decision["task_event_id"]
    status, _, again = live.call("GET", "/v1/decisions/web-task-1")
    assert status == 200 and again["risk_score"] == decision["risk_score"]

    status, _, created = request_permit(live, "web-task-1")
    assert status == 201, created
    permit = created["permit"]
    assert permit["state"] == "in_review" and permit["level"] == 2
    assert permit["scope"]["not_after"] == "2030-01-08T09:00:00.000000Z"  # default 24 h
    status, _, pending = live.call("GET", "/v1/permits?state=pending")
    assert permit["permit_id"] in [p["permit_id"] for p in pending["permits"]]

    client = Client(live.url)  # the masters' client: fetches, checks the hash, signs locally
    issued = client.approve(permit["permit_id"], TOM.key, approver_id="tom", role="tech_lead",
                            decided_at=T0)
    assert issued["state"] == "issued"

    ask = {"worker": {"id": "worker-7", "certification_level": 2},
           "permit_id": permit["permit_id"],
           "operation": {"type": "deploy", "environment": "production", "service": "api"}}
    status, _, verdict = live.call("POST", "/v1/authorize", ask)
    assert status == 200 and verdict["allowed"] and verdict["reason_code"] == "authorized"
    outside = {**ask, "operation": {**ask["operation"], "service": "billing"}}
    verdict = client.authorize(outside)
    assert (verdict["allowed"], verdict["reason_code"]) == (False, "service_not_in_permit")
    assert client.permit(permit["permit_id"])["state"] == "revoked"

    live.runner.ledger.checkpoint_now()
    types = {r["type"] for r in ledger_records(live.path)}
    assert types >= {"task.submitted", "certification.decided", "permit.requested",
                     "permit.review_started", "approval.signed", "permit.issued",
                     "operation.authorized", "violation.recorded", "permit.revoked",
                     "rollback.event"}


def test_the_same_task_twice_is_the_same_decision(live):
    first, second = new_task(live, task_id="twice"), new_task(live, task_id="twice")
    assert first["decision_event_id"] == second["decision_event_id"]


def test_an_emergency_override_over_http(live):
    client = Client(live.url)
    permit = client.override(IVY.key, commander_id="ivy", role="incident_commander",
                             worker_id="worker-9", incident_ticket="INC-42",
                             trigger="production_outage", reason="checkout down",
                             scope={"operations": ["deploy"], "services": ["api"],
                                    "environment": "production"}, requested_at=T0)
    assert permit["emergency"] and permit["state"] == "issued" and permit["level"] == 3
    reviewed = client.review_override(permit["permit_id"], "dana",
                                      {"actions": ["restarted"], "lessons": ["more alerts"]})
    assert reviewed["permit_id"] == permit["permit_id"]
    with pytest.raises(ClientError) as refused:
        client.override(IVY.key, commander_id="ivy", role="incident_commander",
                        worker_id="worker-9", incident_ticket="INC-43", trigger="boredom",
                        reason="x", scope={"operations": ["deploy"], "environment": "production"},
                        requested_at=T0)
    assert (refused.value.status, refused.value.code) == (422, "override.unknown_trigger")


def test_renew_and_close_over_http(live):
    new_task(live, 1, task_id="read-1")
    status, _, created = live.call("POST", "/v1/permits", {
        "task_id": "read-1", "requested_by": "master-1",
        "scope": {"operations": ["query"], "environment": "production",
                  "not_before": "2030-01-07T09:00:00Z", "not_after": "2030-01-07T10:00:00Z"},
        "justification": "dashboards"})
    assert status == 201, created
    pid = created["permit"]["permit_id"]
    renewal = {"requested_by": "master-1", "extension_hours": 2, "justification": "more"}
    status, _, renewed = live.call("POST", f"/v1/permits/{pid}/renewals", renewal)
    assert (status, renewed["error"]["code"]) == (409, "permit.transition_refused")  # in review
    approval = APPROVERS["team_lead"].sign(created["permit"])
    assert live.call("POST", f"/v1/permits/{pid}/approvals", approval)[0] == 200
    status, _, renewed = live.call("POST", f"/v1/permits/{pid}/renewals", renewal)
    assert status == 200, renewed
    assert renewed["permit"]["scope"]["not_after"] == "2030-01-07T12:00:00.000000Z"
    assert renewed["permit"]["renewals"] == 1
    status, _, closed = live.call("POST", f"/v1/permits/{pid}/closure",
                                  {"requested_by": "master-1"})
    assert (status, closed["error"]["code"]) == (409, "permit.transition_refused")  # not run


ERRORS = [
    P("POST", "/v1/tasks", b'{"task": "x", ', 400, "input.malformed_json", id="malformed JSON"),
    P("POST", "/v1/tasks", b"\xff\xfe", 400, "input.undecodable", id="not UTF-8"),
    P("POST", "/v1/permits", b"[1, 2]", 400, "input.schema", id="not an object"),
    P("POST", "/v1/permits", {"task_id": "web-task-1"}, 400, "input.schema",
      id="permit request without scope"),
    P("POST", "/v1/authorize", {"operation": {"type": "deploy"}}, 400, "input.schema",
      id="authorize without worker"),
    P("POST", "/v1/tasks", {"type": "approval.signed", "payload": {}}, 400, "input.schema",
      id="another event type on /v1/tasks"),
    P("POST", "/v1/tasks", b"x" * (MAX_EVENT_BYTES + 1), 413, "input.oversize", id="oversize"),
    P("GET", "/v1/authorize", None, 405, "http.method_not_allowed", id="GET on a POST route"),
    P("DELETE", "/v1/permits/prm-1", None, 405, "http.method_not_allowed", id="DELETE"),
    P("PUT", "/v1/permits", b"{}", 405, "http.method_not_allowed", id="PUT"),
    P("GET", "/v2/nothing", None, 404, "http.not_found", id="unknown route"),
    P("GET", "/v1/permits/prm-missing", None, 404, "permit.unknown", id="unknown permit"),
    P("GET", "/v1/decisions/no-such-task", None, 404, "decision.unknown", id="unknown decision"),
    P("GET", "/v1/permits?state=sleeping", None, 400, "input.schema", id="unknown state"),
    P("GET", "/v1/permits?limit=0", None, 400, "input.schema", id="bad limit"),
    P("POST", "/v1/permits/prm-missing/approvals",
      {"request_sha256": "ab" * 32, "decision": "approve", "approver_id": "tom",
       "approver_role": "tech_lead", "decided_at": "2030-01-07T09:00:00Z"}, 404,
      "approval.unknown_permit", id="approval for an unknown permit"),
    P("POST", "/v1/permits/prm-1/approvals", {"decision": "launch"}, 400, "input.schema",
      id="unknown decision word"),
    P("POST", "/v1/permits/prm-1/approvals", {"permit_id": "prm-2", "decision": "approve"}, 400,
      "input.schema", id="permit id differs from the URL"),
    P("POST", "/v1/permits", {"task_id": "web-task-1", "requested_by": "m",
                              "scope": {"operations": ["deploy"], "environment": "production"},
                              "justification": "x",
                              "rollback_plan": {"steps": [2**60], "verification": ["ok"]}},
      400, "input.schema", id="a number JSON cannot canonicalise"),
    P("POST", "/v1/permits", {"task_id": "never-submitted", "requested_by": "m",
                              "scope": {"operations": ["deploy"], "environment": "production"},
                              "justification": "x"}, 422, "permit.unknown_decision",
      id="permit for a task never certified"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), ERRORS)
def test_errors_are_json_with_a_stable_code(live, method, path, body, status, code):
    new_task(live, task_id="web-task-1")  # (the same bytes again: one decision)
    got, headers, document = live.call(method, path, body)
    assert got == status, document
    assert isinstance(document, dict) and set(document) == {"error"}, document
    assert document["error"]["code"] == code and document["error"]["message"]
    assert "Traceback" not in json.dumps(document)
    if status == 405:
        assert headers.get("Allow")


def test_bad_bodies_are_recorded_as_rejections(live):
    live.call("POST", "/v1/authorize", b'{"worker": ')
    live.runner.ledger.checkpoint_now()
    rejected = [r["payload"] for r in ledger_records(live.path) if r["type"] == "input.rejected"]
    assert any(r["source"] == "http:/v1/authorize" and r["code"] == "input.malformed_json"
               for r in rejected)


def test_refused_approvals_are_422_or_409(live):
    new_task(live, task_id="web-task-2")
    _, _, created = request_permit(live, "web-task-2")
    view = created["permit"]
    pid = view["permit_id"]
    unsigned = {k: v for k, v in TOM.sign(view).items() if k not in ("signature", "key_id")}
    status, _, body = live.call("POST", f"/v1/permits/{pid}/approvals", unsigned)
    assert (status, body["error"]["code"]) == (422, "approval.unsigned")
    status, _, body = live.call("POST", f"/v1/permits/{pid}/approvals",
                                APPROVERS["cto"].sign(view))
    assert (status, body["error"]["code"]) == (422, "approval.wrong_role")
    assert live.call("POST", f"/v1/permits/{pid}/approvals", TOM.sign(view))[0] == 200
    status, _, body = live.call("POST", f"/v1/permits/{pid}/approvals",
                                APPROVERS["senior_engineer"].sign(view))
    assert (status, body["error"]["code"]) == (409, "approval.not_in_review")
    status, _, body = live.call("POST", f"/v1/permits/{pid}/revocations",
                                TOM.sign(view, decision="revoke"))
    assert status == 200 and body["permit"]["state"] == "revoked"
    status, _, body = live.call("POST", f"/v1/permits/{pid}/revocations",
                                TOM.sign(view, decision="revoke", at=T0 + timedelta(seconds=1)))
    assert (status, body["error"]["code"]) == (409, "approval.not_revocable")


def test_an_internal_error_is_a_500_without_a_trace(live, monkeypatch):
    def broken(*_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(live.runner.pipeline.permits, "view", broken)
    status, _, body = live.call("GET", "/v1/permits/prm-anything")
    assert status == 500 and body == {"error": {"code": "internal",
                                                "message": "internal error (see the server log)"}}


def test_healthz(live):
    status, _, body = live.call("GET", "/healthz")
    assert status == 200 and body["status"] == "ok" and body["policy"]["sha256"]


def test_the_client_reports_an_unreachable_server():
    with pytest.raises(ClientError) as error:
        Client("http://127.0.0.1:9", timeout=2).health()
    assert error.value.code == "client.unreachable"
