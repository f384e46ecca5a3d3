"""Signed approvals in embedded mode (real ledger on disk): every forged or invalid approval is
refused with its stable code, recorded as approval.refused, and changes nothing; quorums,
denials, all-must-approve and the CAB behave as the policy says."""

from __future__ import annotations

import pytest

from events.signing import canonical_approval, verify
from tests.approval_forgeries import (
    ARCH,
    CODES,
    DANA,
    MATRIX,
    PERMIT_HOURS,
    SAM,
    registrations,
)
from tests.test_permit_kit import (
    APPROVERS,
    T0,
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


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = tmp_path_factory.mktemp("approvals")
    runner = embedded_runner(path, Clock())
    register_all(runner.pipeline)
    for registration in registrations():
        runner.pipeline.record(registration)
    runner.path = path
    yield runner
    runner.close()


def new_permit(runner, level=3, **overrides):
    pipe = runner.pipeline
    overrides.setdefault("hours", PERMIT_HOURS)
    req = permit_request(pipe, certify(pipe, level), **overrides)
    assert pipe.handle_event(request_envelope(req), T0).refusal is None
    return pipe.permits.view(req.permit_id)


class Embedded:
    """The matrix's `side` in embedded mode."""

    def __init__(self, runner) -> None:
        self.runner = runner

    def new_permit(self):
        return new_permit(self.runner)


def send(runner, body, at=T0):
    return runner.pipeline.handle_event(approval_envelope(body, at), at)


@pytest.mark.parametrize(("steps", "code"), MATRIX)
def test_forged_or_invalid_approvals_are_refused_and_recorded(runner, steps, code):
    view = new_permit(runner)
    *accepted, (body, at) = steps(Embedded(runner), view)
    for earlier, when in accepted:
        assert send(runner, earlier, when).refusal is None
    outcome = send(runner, body, at)
    assert outcome.refusal is not None and outcome.refusal.code == code, outcome.refusal
    assert outcome.refusal.message
    assert [e.type for e in outcome.events] == ["approval.refused"]
    refused = outcome.events[0].payload
    assert refused["code"] == code and refused["permit_id"] == body["permit_id"]
    after = runner.pipeline.permits.view(view["permit_id"])
    assert after["state"] == "in_review"
    assert len(after["approvals"]) == len(accepted)  # the refused one is not counted


def test_a_redelivered_event_is_a_no_op_not_a_replay(runner):
    view = new_permit(runner)
    envelope = approval_envelope(DANA.sign(view))
    assert runner.pipeline.handle_event(envelope, T0).refusal is None
    again = runner.pipeline.handle_event(envelope, T0)  # at-least-once: the same event
    assert again.refusal is None and again.events == [] and again.result.duplicate


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
    assert codes >= CODES | {"approval.not_in_review", "approval.out_of_order"}


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
