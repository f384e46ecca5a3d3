"""Renewals per permit type (facts §9.2; governance.toml permit_types): read-only renews at once;
standard and advanced renewals go through the permit's signed-approval quorum again, over the
hash of the renewal request, before permit.renewed (advanced: only the permit's own
approvers); master and destructive permits never renew, emergency ones only by a new override.
Refused renewals and refused renewal approvals are recorded with their code."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from events import Envelope
from rules.permits import renewal_sha256
from streams.handlers import Pipeline
from tests.test_permit_kit import (
    APPROVERS,
    POLICY,
    T0,
    Approver,
    Recorder,
    approval_envelope,
    certify,
    issued_permit,
    new_pipeline,
    permit_request,
    register_all,
)

P = pytest.param
AT = T0 + timedelta(hours=1)  # within the last 2 h of a 2 h permit: renewal is open
END = T0 + timedelta(hours=2)
TOM, SID, TARA = APPROVERS["tech_lead"], APPROVERS["senior_engineer"], APPROVERS["team_lead"]
DANA, SAM, ARCH = (APPROVERS[r] for r in ("engineering_director", "security_lead",
                                          "architecture_lead"))
MASTER = Approver("master-1", "tech_lead")  # the requester is also an approver
WORKER = Approver("worker-7", "tech_lead")  # so is the permit's worker


@pytest.fixture
def pipe():
    pipe, recorder = new_pipeline()
    register_all(pipe)
    for who in (MASTER, WORKER):
        pipe.record(who.registration())
    pipe.recorder = recorder
    return pipe


def renew(pipe, permit_id, at=AT, hours=4, who="master-1", why="needs longer"):
    body = {"permit_id": permit_id, "requested_by": who, "extension_hours": hours,
            "justification": why}
    return pipe.handle_event(Envelope(type="permit.renewal_requested", occurred_at=at,
                                      producer=who, subject=permit_id, payload=body), at)


def sign_renewal(approver, view, at=AT, decision="approve", role=None):
    pending = view["pending_renewal"]
    return approver.sign({"permit_id": view["permit_id"],
                          "request_sha256": pending["request_sha256"]}, decision=decision,
                         at=at, role=role)


def send(pipe, body, at=AT):
    return pipe.handle_event(approval_envelope(body, at), at)


def view_of(pipe, permit_id):
    return pipe.permits.view(permit_id)


# --- per permit type ---------------------------------------------------------------------------


def _permit(pipe, kind):
    if kind == "destructive":
        decision = certify(pipe, 3, expect=4, task="Delete stale customer records",
                           operations=["data_deletion"])
        req = permit_request(pipe, decision, permit_type="destructive",
                             operations=["data_deletion"])
        from tests.test_permit_kit import request_envelope

        assert pipe.handle_event(request_envelope(req), T0).refusal is None
        view = view_of(pipe, req.permit_id)
        for role in ("data_lead", "security_lead", "engineering_director", "vp_engineering",
                     "cto", "ciso", "change_advisory_board"):
            assert send(pipe, APPROVERS[role].sign(view), T0).refusal is None
        return view_of(pipe, req.permit_id)
    if kind == "emergency":
        body = APPROVERS["incident_commander"].override("worker-9")
        from tests.test_permit_kit import envelope

        assert pipe.handle_event(envelope("override.requested", body["override_id"], body),
                                 T0).refusal is None
        return view_of(pipe, body["override_id"])
    return issued_permit(pipe, {"read_only": 1, "standard_production": 2,
                                "advanced_production": 3, "master_production": 4}[kind],
                         hours=2)


# type -> the renewal's signers (in order) -> what each signature does, then the outcome
TYPES = [
    P("read_only", [], "renewed", "+4", id="read_only: automatic"),
    P("standard_production", [TOM], "renewed", "+4",
      id="standard: one approver again, the same one acceptable"),
    P("standard_production", [SID], "renewed", "+4", id="standard: another eligible approver"),
    P("advanced_production", [DANA, SAM], "renewed", "+4",
      id="advanced: the same two approvers"),
    P("advanced_production", [DANA], "pending", "+0", id="advanced: one of two is not enough"),
    P("master_production", None, "permit.not_renewable", "+0", id="master: new permit"),
    P("destructive", None, "permit.not_renewable", "+0", id="destructive: single use"),
    P("emergency", None, "permit.renew_by_new_override", "+0",
      id="emergency: a new override (C-18)"),
]


@pytest.mark.parametrize(("kind", "signers", "outcome", "moved"), TYPES)
def test_renewal_per_permit_type(pipe, kind, signers, outcome, moved):
    view = _permit(pipe, kind)
    pid, end = view["permit_id"], view["scope"]["not_after"]
    at = AT if kind != "emergency" else T0 + timedelta(minutes=30)
    requested = renew(pipe, pid, at=at, who=view["requested_by"])
    if signers is None:
        assert requested.refusal is not None and requested.refusal.code == outcome
        assert [e.type for e in requested.events] == ["permit.request_refused"]
        assert view_of(pipe, pid)["scope"]["not_after"] == end
        return
    assert requested.refusal is None, requested.refusal
    pending = view_of(pipe, pid)["pending_renewal"]
    if not signers:  # automatic
        assert [e.type for e in requested.events] == ["permit.renewal_requested",
                                                      "permit.renewed"]
        assert pending is None
    else:
        assert [e.type for e in requested.events] == ["permit.renewal_requested"]
        assert pending["renewal"] == 1 and pending["missing"]
        # what the approvers sign is the hash of the document the server shows
        assert renewal_sha256(pending["document"]) == pending["request_sha256"]
        assert view_of(pipe, pid)["scope"]["not_after"] == end  # not before the quorum
    for signer in signers:
        assert send(pipe, sign_renewal(signer, view_of(pipe, pid), at=at), at).refusal is None
    after = view_of(pipe, pid)
    hours = int(moved[1:])
    assert after["scope"]["not_after"] == _plus(end, hours)
    assert after["renewals"] == (1 if outcome == "renewed" else 0)
    assert (after["pending_renewal"] is None) == (outcome == "renewed")
    if outcome == "renewed" and signers:
        renewed = pipe.recorder.of_type("permit.renewed")[-1].payload
        assert renewed["details"]["approval"] == "quorum"
        assert renewed["details"]["approvers"] == [s.id for s in signers]
        assert after["approvals"] == view["approvals"]  # the permit's own approvals stay


def _plus(stamp, hours):
    from datetime import datetime

    from events import format_time

    return format_time(datetime.fromisoformat(stamp) + timedelta(hours=hours))


def test_the_policy_says_which_renewals_need_approval():
    kinds = {t.id: (t.renewable, t.renewal_requires_approval, t.renewal_approvers)
             for t in POLICY.governance.permit_types}
    assert kinds["read_only"][:2] == (True, False)
    assert kinds["standard_production"] == (True, True, "any")
    assert kinds["advanced_production"] == (True, True, "original")
    assert not kinds["master_production"][0] and not kinds["destructive"][0]


# --- signed renewal approvals: the refusal matrix ------------------------------------------------


def _tampered(body):
    return {**body, "decided_at": "2030-01-07T10:00:01.000000Z"}


def _garbage(body):
    return {**body, "signature": base64.b64encode(b"x" * 64).decode()}


# (level, forge(pipe, view) -> body, code)
REFUSED = [
    P(2, lambda pipe, v: {**sign_renewal(TOM, v), "signature": ""}, "approval.unsigned",
      id="unsigned"),
    P(2, lambda pipe, v: _tampered(sign_renewal(TOM, v)), "approval.bad_signature",
      id="tampered"),
    P(2, lambda pipe, v: _garbage(sign_renewal(TOM, v)), "approval.bad_signature",
      id="garbage signature"),
    P(2, lambda pipe, v: sign_renewal(Approver("nobody", "tech_lead"), v),
      "approval.unknown_approver", id="unknown approver"),
    P(2, lambda pipe, v: sign_renewal(TARA, v), "approval.wrong_role", id="wrong role"),
    P(2, lambda pipe, v: sign_renewal(MASTER, v), "approval.self_approval",
      id="the requester approves its own renewal"),
    P(2, lambda pipe, v: sign_renewal(WORKER, v), "approval.self_approval",
      id="the worker approves its own renewal"),
    P(2, lambda pipe, v: TOM.sign(v, at=AT), "approval.not_in_review",
      id="signed over the permit's request, not the renewal"),
    P(2, lambda pipe, v: TOM.sign(v, at=AT, sha=renewal_sha256(
        {**v["pending_renewal"]["document"], "extension_hours": 24})),
      "approval.request_changed", id="signed over another renewal document"),
    P(3, lambda pipe, v: sign_renewal(ARCH, v), "approval.not_original_approver",
      id="advanced: an eligible approver who did not approve the permit"),
    P(3, lambda pipe, v: (send(pipe, sign_renewal(DANA, v)),
                          sign_renewal(DANA, v, at=AT - timedelta(seconds=1)))[1],
      "approval.duplicate_approver", id="the same approver twice"),
    P(3, lambda pipe, v: (send(pipe, body := sign_renewal(DANA, v)), body)[1],
      "approval.replayed", id="replayed"),
    P(2, lambda pipe, v: sign_renewal(TOM, v, at=END), "approval.deadline_passed",
      id="after the permit's end"),
]


@pytest.mark.parametrize(("level", "forge", "code"), REFUSED)
def test_forged_or_invalid_renewal_approvals_are_refused_and_recorded(pipe, level, forge, code):
    view = issued_permit(pipe, level, hours=2)
    pid = view["permit_id"]
    assert renew(pipe, pid).refusal is None
    before = view_of(pipe, pid)
    body = forge(pipe, before)
    at = END if code == "approval.deadline_passed" else AT
    outcome = send(pipe, body, at)
    assert outcome.refusal is not None and outcome.refusal.code == code, outcome.refusal
    assert [e.type for e in outcome.events] == ["approval.refused"]
    assert outcome.events[0].payload["code"] == code
    after = view_of(pipe, pid)
    assert after["renewals"] == 0 and after["scope"] == before["scope"]
    assert len(after["pending_renewal"]["approvals"]) == len(
        before["pending_renewal"]["approvals"]) + (1 if code in (
            "approval.duplicate_approver", "approval.replayed") else 0)


def test_a_denial_ends_the_renewal_and_the_permit_runs_to_its_end(pipe):
    view = issued_permit(pipe, 3, hours=2)
    pid = view["permit_id"]
    assert renew(pipe, pid).refusal is None
    assert send(pipe, sign_renewal(DANA, view_of(pipe, pid))).refusal is None
    denied = send(pipe, sign_renewal(SAM, view_of(pipe, pid), decision="deny"))
    assert denied.refusal is None
    assert [e.type for e in denied.events] == ["approval.signed", "permit.request_refused"]
    assert denied.events[1].payload["code"] == "permit.renewal_denied"
    after = view_of(pipe, pid)
    assert after["state"] == "issued" and after["pending_renewal"] is None
    assert after["scope"]["not_after"] == view["scope"]["not_after"]
    # a new renewal request may follow; it is another document, with its own hash
    again = renew(pipe, pid, at=AT + timedelta(minutes=1))
    assert again.refusal is None
    assert view_of(pipe, pid)["pending_renewal"]["request_sha256"] != \
        denied.events[1].payload["request"]["request_sha256"]


def test_one_renewal_at_a_time(pipe):
    pid = issued_permit(pipe, 2, hours=2)["permit_id"]
    assert renew(pipe, pid).refusal is None
    assert renew(pipe, pid, at=AT + timedelta(minutes=1)).refusal.code == \
        "permit.renewal_pending"


def test_an_unapproved_renewal_lapses_at_the_end_and_the_permit_expires(pipe):
    pid = issued_permit(pipe, 2, hours=2)["permit_id"]
    assert renew(pipe, pid).refusal is None
    events = pipe.tick(END)
    kinds = [(e.type, e.payload.get("code")) for e in events]
    assert ("permit.request_refused", "permit.renewal_lapsed") in kinds
    assert ("permit.expired", None) in kinds
    assert view_of(pipe, pid)["pending_renewal"] is None
    assert pipe.tick(END + timedelta(minutes=1)) == []  # once


def test_a_pending_renewal_survives_a_restart(pipe):
    view = issued_permit(pipe, 3, hours=2)
    pid = view["permit_id"]
    assert renew(pipe, pid).refusal is None
    assert send(pipe, sign_renewal(DANA, view_of(pipe, pid))).refusal is None
    rebuilt = Pipeline(POLICY, pipe.recorder, now_fn=lambda: AT)
    rebuilt.load(list(pipe.recorder.events))
    assert rebuilt.permits.view(pid) == view_of(pipe, pid)
    assert rebuilt.permits.timers() == pipe.permits.timers()
    outcome = send(rebuilt, sign_renewal(SAM, rebuilt.permits.view(pid)))
    assert [e.type for e in outcome.events] == ["approval.signed", "permit.renewed"]
    assert rebuilt.permits.view(pid)["renewals"] == 1
    assert isinstance(pipe.recorder, Recorder)


def test_a_renewal_over_http_waits_for_its_signed_approval(pipe):
    from tests.test_permit_kit import LiveServer

    view = issued_permit(pipe, 2, hours=2)  # the server's clock is T0: the last 2 h already
    pid = view["permit_id"]
    server = LiveServer(pipe)
    try:
        status, _, body = server.call("POST", f"/v1/permits/{pid}/renewals", {
            "requested_by": "master-1", "extension_hours": 3, "justification": "slow rollout"})
        assert status == 200, body
        pending = body["permit"]["pending_renewal"]
        assert pending["missing"] == ["1 more of engineering_manager, tech_lead, "
                                      "senior_engineer"]
        assert body["permit"]["scope"]["not_after"] == view["scope"]["not_after"]
        status, _, again = server.call("POST", f"/v1/permits/{pid}/renewals", {
            "requested_by": "master-1", "extension_hours": 3, "justification": "again"})
        assert (status, again["error"]["code"]) == (409, "permit.renewal_pending")
        wrong = TARA.sign({"permit_id": pid, "request_sha256": pending["request_sha256"]})
        status, _, refused = server.call("POST", f"/v1/permits/{pid}/approvals", wrong)
        assert (status, refused["error"]["code"]) == (422, "approval.wrong_role")
        signed = TOM.sign({"permit_id": pid, "request_sha256": pending["request_sha256"]})
        status, _, renewed = server.call("POST", f"/v1/permits/{pid}/approvals", signed)
        assert status == 200, renewed
        assert renewed["permit"]["renewals"] == 1
        assert renewed["permit"]["scope"]["not_after"] == _plus(view["scope"]["not_after"], 3)
    finally:
        server.stop()
