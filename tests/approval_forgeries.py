"""The forged-approval matrix, defined once (no tests here): tests/test_approval_matrix.py drives
it through the embedded runner, tests/test_kafka_approvals.py through the real broker.

Each scenario is `steps(side, view) -> [(body, at), ...]`: every step but the last must be
accepted; the last is refused with the scenario's code, recorded as approval.refused, and
nothing is counted. `view` is the Level 3 permit in review (its `permit_id` and
`request_sha256` are all a signer needs); `side` is the mode under test, which can make
another permit in review (`side.new_permit()`), as a forger would copy one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

import pytest

from events import Envelope
from tests.test_permit_kit import APPROVERS, T0, Approver

DANA, SAM, ARCH = (APPROVERS[r] for r in ("engineering_director", "security_lead",
                                          "architecture_lead"))
TOM = APPROVERS["tech_lead"]
MASTER = Approver("master-1", "engineering_director")  # the requester is also an approver
WORKER = Approver("worker-7", "security_lead")  # so is the permit's worker
EXPIRED = Approver("ex", "engineering_director")
FUTURE = Approver("fu", "engineering_director")
STRANGER = Approver("nobody", "engineering_director")  # never registered
ROGUE_KEY = Approver("dana", "engineering_director")  # dana's id, another key
VALID_QUORUM = (DANA, ARCH)  # a Level 3 quorum: 2 of engineering_director, security_lead,
# architecture_lead
PERMIT_HOURS = 2  # the matrix's permits: requested at T0, window T0 .. T0 + 2 h
DEADLINE = T0 + timedelta(hours=PERMIT_HOURS)  # approvals count up to the window's end


class Side(Protocol):
    def new_permit(self) -> dict[str, Any]: ...


Steps = Callable[[Side, dict[str, Any]], list[tuple[dict[str, Any], Any]]]


def registrations() -> list[Envelope]:
    """The matrix's approvers beyond tests.test_permit_kit.APPROVERS (an operator's action on
    the ledger: approver.registered is not an inbound type)."""
    return [MASTER.registration(), WORKER.registration(),
            EXPIRED.registration(valid_until=T0 - timedelta(days=1)),
            FUTURE.registration(valid_from=T0 + timedelta(days=1))]


def _tampered(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "decided_at": "2030-01-07T09:00:01.000000Z"}  # signed over another time


def _garbage(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "signature": base64.b64encode(b"x" * 64).decode()}


def _not_base64(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "signature": "!!not base64!!"}


def _other_permit(side: Side, view: dict[str, Any]) -> dict[str, Any]:
    other = side.new_permit()
    return {**DANA.sign(other), "permit_id": view["permit_id"]}  # signed for another permit


def one(forge: Callable[[Side, dict[str, Any]], dict[str, Any]]) -> Steps:
    """A scenario of one forged approval, received at T0."""
    return lambda side, view: [(forge(side, view), T0)]


def _twice(side: Side, view: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    # a second, different signature by the same approver
    return [(DANA.sign(view), T0), (DANA.sign(view, at=T0 - timedelta(seconds=1)), T0)]


def _replay(side: Side, view: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    body = DANA.sign(view)
    return [(body, T0), (dict(body), T0)]  # the same signed approval, a new delivery


def _late(side: Side, view: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    late = DEADLINE + timedelta(seconds=1)
    return [(DANA.sign(view, at=late), late)]


P = pytest.param
MATRIX = [
    P(one(lambda s, v: {**DANA.sign(v), "signature": ""}), "approval.unsigned", id="unsigned"),
    P(one(lambda s, v: {**DANA.sign(v), "key_id": "", "signature": ""}), "approval.unsigned",
      id="no key id, no signature"),
    P(one(lambda s, v: _tampered(DANA.sign(v))), "approval.bad_signature",
      id="tampered field"),
    P(one(lambda s, v: _garbage(DANA.sign(v))), "approval.bad_signature",
      id="garbage signature"),
    P(one(lambda s, v: _not_base64(DANA.sign(v))), "approval.bad_signature", id="not base64"),
    P(one(lambda s, v: {**DANA.sign(v), "decision": "deny"}), "approval.bad_signature",
      id="approve signed, deny sent"),
    P(one(lambda s, v: {**DANA.sign(v), "approver_role": "security_lead"}),
      "approval.bad_signature", id="role relabelled"),
    P(one(_other_permit), "approval.bad_signature", id="signed for another permit"),
    P(one(lambda s, v: STRANGER.sign(v)), "approval.unknown_approver", id="unknown approver"),
    P(one(lambda s, v: ROGUE_KEY.sign(v)), "approval.unknown_key",
      id="approver id with another key"),
    P(one(lambda s, v: EXPIRED.sign(v)), "approval.approver_expired", id="expired approver"),
    P(one(lambda s, v: FUTURE.sign(v)), "approval.approver_not_yet_valid", id="not yet valid"),
    P(one(lambda s, v: DANA.sign(v, role="cto")), "approval.role_not_held",
      id="role not held"),
    P(one(lambda s, v: TOM.sign(v)), "approval.wrong_role", id="wrong role for the level"),
    P(one(lambda s, v: MASTER.sign(v)), "approval.self_approval", id="requester approves own"),
    P(one(lambda s, v: WORKER.sign(v)), "approval.self_approval",
      id="worker approves own permit"),
    P(one(lambda s, v: DANA.sign(v, sha="ab" * 32)), "approval.request_changed",
      id="request changed (hash of another version)"),
    P(one(lambda s, v: DANA.sign(v, at=T0 + timedelta(hours=1))), "approval.future_dated",
      id="dated in the future"),
    P(one(lambda s, v: {**DANA.sign(v), "permit_id": "prm-none"}), "approval.unknown_permit",
      id="unknown permit"),
    P(_twice, "approval.duplicate_approver", id="the same approver twice"),
    P(_replay, "approval.replayed", id="replayed"),
    P(_late, "approval.deadline_passed", id="after the approval deadline (window end)"),
]
CODES = frozenset(p.values[1] for p in MATRIX)
