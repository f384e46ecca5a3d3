"""Signed approvals in embedded mode (real ledger on disk): every forged or invalid approval is
refused with its stable code, recorded as approval.refused, and changes nothing; quorums,
denials, all-must-approve and the CAB behave as the policy says."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from events.signing import canonical_approval, verify
from tests.test_permit_kit import (
    APPROVERS,
    T0,
    Approver,
    Clock,
    approval_envelope,
    certify,
    embedded_runner,
    issued_permit,
    ledger_records,
    permit_request,
    register_all,
    request_envelope,
)

P = pytest.param
DANA, SAM, ARCH = (APPROVERS[r] for r in ("engineering_director", "security_lead",
                                          "architecture_lead"))
TOM = APPROVERS["tech_lead"]
MASTER = Approver("master-1", "engineering_director")  # the requester is also an approver
WORKER = Approver("worker-7", "security_lead")  # so is the permit's worker
EXPIRED = Approver("ex", "engineering_director")
FUTURE = Approver("fu", "engineering_director")
STRANGER = Approver("nobody", "engineering_director")  # never registered
ROGUE_KEY = Approver("dana", "engineering_director")  # dana's id, another key


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = tmp_path_factory.mktemp("approvals")
    runner = embedded_runner(path, Clock())
    register_all(runner.pipeline)
    for who in (MASTER, WORKER):
        runner.pipeline.record(who.registration())
    runner.pipeline.record(EXPIRED.registration(valid_until=T0 - timedelta(days=1)))
    runner.pipeline.record(FUTURE.registration(valid_from=T0 + timedelta(days=1)))
    runner.path = path
    yield runner
    runner.close()


def new_permit(runner, level=3, **overrides):
    pipe = runner.pipeline
    req = permit_request(pipe, certify(pipe, level), **overrides)
    assert pipe.handle_event(request_envelope(req), T0).refusal is None
    return pipe.permits.view(req.permit_id)


def send(runner, body, at=T0):
    return runner.pipeline.handle_event(approval_envelope(body, at), at)


def _tampered(body):
    return {**body, "decided_at": "2030-01-07T09:00:01.000000Z"}  # signed over another time


def _garbage(body):
    return {**body, "signature": base64.b64encode(b"x" * 64).decode()}


def _not_base64(body):
    return {**body, "signature": "!!not base64!!"}


def _other_permit(runner, view):
    other = new_permit(runner)
    return {**DANA.sign(other), "permit_id": view["permit_id"]}  # signed for another permit


CASES = [
    P(lambda r, v: {**DANA.sign(v), "signature": ""}, "approval.unsigned", id="unsigned"),
    P(lambda r, v: {**DANA.sign(v), "key_id": "", "signature": ""}, "approval.unsigned",
      id="no key id, no signature"),
    P(lambda r, v: _tampered(DANA.sign(v)), "approval.bad_signature", id="tampered field"),
    P(lambda r, v: _garbage(DANA.sign(v)), "approval.bad_signature", id="garbage signature"),
    P(lambda r, v: _not_base64(DANA.sign(v)), "approval.bad_signature", id="not base64"),
    P(lambda r, v: {**DANA.sign(v), "decision": "deny"}, "approval.bad_signature",
      id="approve signed, deny sent"),
    P(lambda r, v: {**DANA.sign(v), "approver_role": "security_lead"}, "approval.bad_signature",
      id="role relabelled"),
    P(lambda r, v: _other_permit(r, v), "approval.bad_signature", id="signed for another permit"),
    P(lambda r, v: STRANGER.sign(v), "approval.unknown_approver", id="unknown approver"),
    P(lambda r, v: ROGUE_KEY.sign(v), "approval.unknown_key", id="approver id with another key"),
    P(lambda r, v: EXPIRED.sign(v), "approval.approver_expired", id="expired approver"),
    P(lambda r, v: FUTURE.sign(v), "approval.approver_not_yet_valid", id="not yet valid"),
    P(lambda r, v: DANA.sign(v, role="cto"), "approval.role_not_held", id="role not held"),
    P(lambda r, v: TOM.sign(v), "approval.wrong_role", id="wrong role for the level"),
    P(lambda r, v: MASTER.sign(v), "approval.self_approval", id="requester approves own"),
    P(lambda r, v: WORKER.sign(v), "approval.self_approval", id="worker approves own permit"),
    P(lambda r, v: DANA.sign(v, sha="ab" * 32), "approval.request_changed",
      id="request changed (hash of another version)"),
    P(lambda r, v: DANA.sign(v, at=T0 + timedelta(hours=1)), "approval.future_dated",
      id="dated in the future"),
    P(lambda r, v: {**DANA.sign(v), "permit_id": "prm-none"}, "approval.unknown_permit",
      id="unknown permit"),
]


@pytest.mark.parametrize(("forge", "code"), CASES)
def test_forged_or_invalid_approvals_are_refused_and_recorded(runner, forge, code):
    view = new_permit(runner)
    body = forge(runner, view)
    outcome = send(runner, body)
    assert outcome.refusal is not None and outcome.refusal.code == code, outcome.refusal
    assert outcome.refusal.message
    assert [e.type for e in outcome.events] == ["approval.refused"]
    refused = outcome.events[0].payload
    assert refused["code"] == code and refused["permit_id"] == body["permit_id"]
    after = runner.pipeline.permits.view(view["permit_id"])
    assert after["state"] == "in_review" and after["approvals"] == []  # nothing counted


def test_the_same_approver_twice_is_refused(runner):
    view = new_permit(runner)
    assert send(runner, DANA.sign(view)).refusal is None
    again = DANA.sign(view, at=T0 - timedelta(seconds=1))  # a second, different signature
    assert send(runner, again).refusal.code == "approval.duplicate_approver"
    assert len(runner.pipeline.permits.view(view["permit_id"])["approvals"]) == 1


def test_a_replayed_approval_is_refused(runner):
    first = new_permit(runner)
    body = DANA.sign(first)
    assert send(runner, body).refusal is None
    outcome = send(runner, dict(body))  # the same signed approval, a new delivery
    assert outcome.refusal.code == "approval.replayed"


def test_a_redelivered_event_is_a_no_op_not_a_replay(runner):
    view = new_permit(runner)
    envelope = approval_envelope(DANA.sign(view))
    assert runner.pipeline.handle_event(envelope, T0).refusal is None
    again = runner.pipeline.handle_event(envelope, T0)  # at-least-once: the same event
    assert again.refusal is None and again.events == [] and again.result.duplicate


def test_approvals_after_the_deadline_are_refused(runner):
    view = new_permit(runner, hours=8)  # L3: 48 h SLA, but never after the window closes
    late = T0 + timedelta(hours=8, seconds=1)
    outcome = send(runner, DANA.sign(view, at=late), at=late)
    assert outcome.refusal.code == "approval.deadline_passed"


def test_approvals_for_a_permit_no_longer_in_review_are_refused(runner):
    view = issued_permit(runner.pipeline, 2)
    outcome = send(runner, APPROVERS["senior_engineer"].sign(view))
    assert outcome.refusal.code == "approval.not_in_review"


def test_a_denial_by_a_required_approver_denies(runner):
    view = new_permit(runner)
    assert send(runner, DANA.sign(view)).refusal is None
    outcome = send(runner, {**SAM.sign(view, decision="deny"), "comments": ""})
    assert outcome.refusal is None
    assert runner.pipeline.permits.view(view["permit_id"])["state"] == "denied"
    assert outcome.events[-1].type == "permit.denied"
    assert send(runner, ARCH.sign(view)).refusal.code == "approval.not_in_review"


def test_quorum_issues_the_permit_with_audit_and_retention(runner):
    view = new_permit(runner)
    assert send(runner, DANA.sign(view)).refusal is None
    assert runner.pipeline.permits.view(view["permit_id"])["state"] == "in_review"
    outcome = send(runner, ARCH.sign(view))
    assert [e.type for e in outcome.events] == ["approval.signed", "permit.approved",
                                                "permit.issued"]
    audit = outcome.events[-1].payload["details"]["audit"]
    assert audit["retention_class"] == "compliance-7y"
    assert audit["fields"]["approver_id"] == ["dana", "arch"]
    assert len(audit["fields"]["approval_timestamp"]) == 2


def test_destructive_permits_need_every_approver_in_order(runner):
    pipe = runner.pipeline
    decision = certify(pipe, 3, expect=4, task="Delete stale customer records",
                       operations=["data_deletion"])
    req = permit_request(pipe, decision, permit_type="destructive",
                         operations=["data_deletion"])
    assert pipe.handle_event(request_envelope(req), T0).refusal is None
    view = pipe.permits.view(req.permit_id)
    dora, exec_roles = APPROVERS["data_lead"], ("vp_engineering", "cto", "ciso")
    assert send(runner, SAM.sign(view)).refusal.code == "approval.out_of_order"
    for approver in (dora, SAM, DANA, *(APPROVERS[r] for r in exec_roles)):
        assert send(runner, approver.sign(view)).refusal is None
        assert pipe.permits.view(req.permit_id)["state"] == "in_review"  # CAB still missing
    assert pipe.permits.view(req.permit_id)["quorum"]["missing"] == ["change_advisory_board"]
    assert send(runner, APPROVERS["change_advisory_board"].sign(view)).refusal is None
    assert pipe.permits.view(req.permit_id)["state"] == "issued"


def test_level_4_needs_the_change_advisory_board(runner):
    view = new_permit(runner, level=4)
    for role in ("vp_engineering", "cto", "ciso", "coo"):
        assert send(runner, APPROVERS[role].sign(view)).refusal is None
    current = runner.pipeline.permits.view(view["permit_id"])
    assert current["state"] == "in_review"
    assert current["quorum"]["missing"] == ["change_advisory_board"]
    assert send(runner, APPROVERS["change_advisory_board"].sign(view)).refusal is None
    assert runner.pipeline.permits.view(view["permit_id"])["state"] == "issued"


def test_compliance_extra_approvers_are_required(runner):
    pipe = runner.pipeline
    decision = certify(pipe, 3, task="Migrate patient records schema (HIPAA)")
    req = permit_request(pipe, decision)
    assert pipe.handle_event(request_envelope(req), T0).refusal is None
    view = pipe.permits.view(req.permit_id)
    assert "compliance_officer" in view["quorum"]["required_roles"]
    for approver in (DANA, ARCH):
        assert send(runner, approver.sign(view)).refusal is None
    assert pipe.permits.view(req.permit_id)["state"] == "in_review"
    assert send(runner, APPROVERS["compliance_officer"].sign(view)).refusal is None
    assert pipe.permits.view(req.permit_id)["state"] == "issued"


def test_everything_refused_is_in_the_ledger_on_disk(runner):
    runner.ledger.checkpoint_now()
    records = ledger_records(runner.path)
    codes = {r["payload"]["code"] for r in records if r["type"] == "approval.refused"}
    assert codes >= {code for _, code in (c.values for c in CASES)}
    assert codes >= {"approval.duplicate_approver", "approval.replayed",
                     "approval.deadline_passed", "approval.not_in_review",
                     "approval.out_of_order"}


def test_canonical_approval_bytes_are_the_documented_ones():
    """The construction a browser reproduces with JSON.stringify (events/signing.py)."""
    message = canonical_approval(permit_id="prm-1", request_sha256="ab" * 32, decision="approve",
                                 decided_at=T0, approver_id="dana",
                                 approver_role="engineering_director")
    assert message == (
        b'{"approver_id":"dana","approver_role":"engineering_director",'
        b'"context":"worker-certification/approval/v1","decided_at":"2030-01-07T09:00:00.000000Z",'
        b'"decision":"approve","permit_id":"prm-1","request_sha256":"' + b"ab" * 32 + b'"}')
    assert canonical_approval(permit_id="p\u00e9\n\"", request_sha256="ab" * 32,
                              decision="deny", decided_at=T0, approver_id="a",
                              approver_role="r").count(b'"permit_id":"p\xc3\xa9\\n\\""') == 1
    body = DANA.sign({"permit_id": "prm-1", "request_sha256": "ab" * 32})
    assert verify(DANA.public_key, message, body["signature"])
    assert not verify(DANA.public_key, message.replace(b"approve", b"deny"), body["signature"])


@pytest.mark.parametrize("document", [
    {"b": [1, "x", None, True], "a": {"z": "é\n\u2028", "y": -(2**53) + 1}},
    {"float": 0.1, "astral": "\U0001f600", "k\U0001f600": 1, "\uffff": 2, "e": 1e21},
    {"\u00e9": 1, "e\u0301": 2, "z": "\u007f\u0000"},
], ids=["plain", "needs the reference encoder", "escapes and ordering"])
def test_canonical_json_matches_rfc8785(document):
    import rfc8785

    from events.signing import canonical_json

    assert canonical_json(document) == rfc8785.dumps(document)


def test_integers_beyond_2_53_have_no_canonical_form():
    from events.signing import SigningError, canonical_json

    with pytest.raises(SigningError):
        canonical_json({"big": 2**60})
