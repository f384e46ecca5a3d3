"""A generated history for the report, metrics and dashboard tests (no tests in this module).

Everything goes through the real embedded runner (ledger on disk, DuckDB projections) and the
real permit service; the exceptions that the service would refuse (self-approval, a permit
without a rollback plan, a decision below a framework's minimum) are planted by appending
valid, correctly signed events, as a faulty or compromised producer would. `History.expected`
says which exceptions each change must show, per framework.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events import Envelope
from events.payloads import PermitTransition
from events.signing import request_sha256
from tests.test_permit_kit import (
    APPROVERS,
    PLAN,
    TASKS,
    Approver,
    Clock,
    approval_envelope,
    embedded_runner,
    envelope,
    permit_request,
    register_all,
    request_envelope,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday
PERIOD = (datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))
AS_OF = datetime(2030, 2, 3, tzinfo=UTC)
PLAN_TESTED = PLAN  # permit requests must carry a valid plan, and valid plans carry test results
MASTER = Approver("master-1", "tech_lead")  # a requester who is also a registered approver
ROLES = {1: ["team_lead"], 2: ["tech_lead"],
         3: ["engineering_director", "security_lead", "compliance_officer"],
         4: ["vp_engineering", "cto", "ciso", "change_advisory_board", "compliance_officer"]}


@dataclass
class History:
    path: Path
    clock: Clock = field(default_factory=lambda: Clock(T0))
    expected: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # label -> change id
    forged_approval: str = ""

    def __post_init__(self) -> None:
        self.runner = embedded_runner(self.path, self.clock)
        self.pipe = self.runner.pipeline

    # --- steps ---------------------------------------------------------------------------------

    def later(self, minutes: float = 7) -> datetime:
        return self.clock.advance(minutes=minutes)

    def certify(self, level: int, **extra: Any) -> str:
        task = {**TASKS[level], "task_id": f"task-{uuid.uuid4().hex[:8]}", **extra}
        outcome = self.pipe.handle_raw(json.dumps(task).encode(), "test", self.clock())
        assert outcome.decision is not None, outcome
        self.later(1)
        return outcome.events[1].event_id

    def request(self, decision_id: str, **overrides: Any) -> dict[str, Any]:
        overrides.setdefault("rollback_plan", PLAN_TESTED)
        req = permit_request(self.pipe, decision_id, at=self.clock(), hours=24, **overrides)
        result = self.pipe.handle_event(request_envelope(req, self.clock()), self.clock())
        assert result.refusal is None, result.refusal
        self.later()
        view = self.pipe.permits.view(req.permit_id)
        assert view is not None
        return view

    def approve(self, view: dict[str, Any], roles: list[str] | None = None) -> dict[str, Any]:
        for role in roles or ROLES[view["level"]]:
            if self.pipe.permits.view(view["permit_id"])["state"] != "in_review":
                break
            body = APPROVERS[role].sign(view, at=self.clock())
            out = self.pipe.handle_event(approval_envelope(body, self.clock()), self.clock())
            assert out.refusal is None or out.refusal.code == "approval.wrong_role", out.refusal
            self.later(3)
        view = self.pipe.permits.view(view["permit_id"])
        assert view["state"] == "issued", view
        return view

    def authorize(self, view: dict[str, Any], operation: str = "deploy",
                  service: str = "api") -> dict[str, Any]:
        result = self.pipe.authorize(
            {"worker": {"id": view["worker_id"] or "worker-7",
                        "certification_level": max(view["level"], 2)},
             "permit_id": view["permit_id"],
             "operation": {"type": operation, "environment": "production", "service": service}},
            self.clock())
        self.later(2)
        assert result.verdict is not None
        return result.verdict.to_dict()

    def execute(self, permit_id: str | None, status: str = "completed",
                outcome: dict[str, Any] | None = None, task_id: str | None = None,
                execution_id: str | None = None) -> str:
        execution_id = execution_id or f"exe-{uuid.uuid4().hex[:8]}"
        payload = {"execution_id": execution_id, "permit_id": permit_id, "task_id": task_id,
                   "worker_id": "worker-7", "status": status, "operations": ["deploy"],
                   "outcome": outcome if outcome is not None else {"services_touched": ["api"]}}
        event = envelope("execution.reported", permit_id or execution_id, payload,
                         self.clock(), producer="worker-7")
        self.pipe.handle_event(event, self.clock())
        self.later(3)
        return execution_id

    def record(self, kind: str, subject: str, payload: dict[str, Any]) -> Envelope:
        event = envelope(kind, subject, payload, self.clock(), producer="planted")
        assert self.pipe.record(event)
        self.later(1)
        return event

    def planted_issue(self, **request: Any) -> str:
        """A Level 2 permit the service would refuse, recorded as history and taken to
        `issued` by a tech lead's signed approval; returns its id (already authorized once)."""
        req = permit_request(self.pipe, self.certify(2), at=self.clock(), hours=24, **request)
        req = req.model_copy(update={"request_sha256": request_sha256(req)})
        self.record("permit.requested", req.permit_id, req.model_dump(mode="json"))
        self.move(req.permit_id, "permit.review_started", "requested", "in_review", "master-1")
        view = self.pipe.permits.view(req.permit_id)
        self.record("approval.signed", req.permit_id,
                    APPROVERS["tech_lead"].sign(view, at=self.clock()))
        self.move(req.permit_id, "permit.approved", "in_review", "approved", "quorum")
        self.move(req.permit_id, "permit.issued", "approved", "issued", "system")
        assert self.authorize(self.pipe.permits.view(req.permit_id))["allowed"]
        return req.permit_id

    def move(self, permit_id: str, kind: str, frm: str, to: str, actor: str) -> None:
        self.record(kind, permit_id, PermitTransition(
            permit_id=permit_id, from_state=frm, to_state=to, actor=actor,
            reason="planted").model_dump(mode="json"))

    def expect(self, label: str, change_id: str, **codes: set[str]) -> None:
        self.names[label] = change_id
        for fw, wanted in codes.items():
            self.expected.setdefault(fw, {})[change_id] = set(wanted)

    def clean(self, level: int, label: str, frameworks: tuple[str, ...] = (),
              data: tuple[str, ...] = (), also: tuple[tuple[str, str], ...] = (),
              **task: Any) -> dict[str, Any]:
        extra = dict(task)
        if frameworks:
            extra["compliance"] = list(frameworks)
        if data:
            extra["data_classes"] = list(data)
        view = self.request(self.certify(level, **extra),
                            **({"data_classes": list(data)} if data else {}))
        view = self.approve(view)
        op = "query" if level == 1 else "deploy"
        assert self.authorize(view, op)["allowed"]
        for operation, service in also:  # more operations while it runs
            assert self.authorize(view, operation, service)["allowed"]
        self.execute(view["permit_id"], outcome={"services_touched": ["api"]})
        return view

    def checkpoint(self) -> None:
        self.runner.ledger.checkpoint_now()
        self.runner.projector.catch_up()

    def close(self) -> None:
        self.runner.close()


def build_history(path: Path) -> History:
    """The history every report test reads: clean changes of each kind, and one planted
    exception of each kind, all in January 2030."""
    h = History(path)
    register_all(h.pipe)
    h.pipe.record(MASTER.registration())

    # --- clean changes ----------------------------------------------------------------------
    c1 = h.clean(2, "clean L2")
    c2 = h.clean(3, "clean HIPAA", frameworks=("HIPAA",), data=("phi",),
                 also=(("query", "orders"),))  # a second access to PHI
    c3 = h.clean(1, "clean L1")
    c5 = h.clean(4, "clean SOX", frameworks=("SOX",))
    g1 = h.clean(3, "clean GDPR", frameworks=("GDPR",), data=("pii",))
    p1 = h.clean(3, "clean PCI", frameworks=("PCI_DSS",))
    ivy = APPROVERS["incident_commander"]
    c4 = ivy.override("worker-9", at=h.clock(), override_id="ovr-reviewed", ticket="INC-7")
    h.pipe.handle_event(envelope("override.requested", c4["override_id"], c4, h.clock()),
                        h.clock())
    h.later(30)
    h.pipe.handle_event(envelope("override.review_submitted", "ovr-reviewed", {
        "override_id": "ovr-reviewed", "reviewer_id": "dana",
        "report": {"actions": ["restarted api"], "lessons": ["alert earlier"]}}, h.clock()),
        h.clock())
    h.later()
    # A denied permit (never deployed) and a refused approval: controls working, no exception.
    denied = h.request(h.certify(2))
    wrong = APPROVERS["cto"].sign(denied, at=h.clock())
    assert h.pipe.handle_event(approval_envelope(wrong, h.clock()), h.clock()).refusal
    deny = APPROVERS["tech_lead"].sign(denied, decision="deny", at=h.clock())
    assert h.pipe.handle_event(approval_envelope(deny, h.clock()), h.clock()).refusal is None
    h.later()
    for label, view in (("clean L2", c1), ("clean HIPAA", c2), ("clean L1", c3),
                        ("clean SOX", c5), ("clean GDPR", g1), ("clean PCI", p1),
                        ("denied", denied)):
        h.expect(label, view["permit_id"], soc2=set())
    h.expect("clean override", "ovr-reviewed", soc2=set(), sox=set(), hipaa=set(), pci=set(),
             gdpr=set())
    h.expect("clean SOX", c5["permit_id"], soc2=set(), sox=set())
    h.expect("clean HIPAA", c2["permit_id"], soc2=set(), hipaa=set())
    h.expect("clean GDPR", g1["permit_id"], soc2=set(), gdpr=set())
    h.expect("clean PCI", p1["permit_id"], soc2=set(), pci=set())

    # --- X1: deployed, never approved --------------------------------------------------------
    x1 = h.request(h.certify(2))
    h.execute(x1["permit_id"], status="started")
    h.expect("X1", x1["permit_id"], soc2={"no_approval"})

    # --- X2: deployed, then approved ---------------------------------------------------------
    x2 = h.request(h.certify(2))
    h.execute(x2["permit_id"], status="started")
    x2 = h.approve(x2)
    assert h.authorize(x2)["allowed"]
    h.execute(x2["permit_id"])
    h.expect("X2", x2["permit_id"], soc2={"late_approval"})

    # --- X3: approved by its own requester (planted: the service refuses it) ------------------
    x3 = h.request(h.certify(2))
    body = MASTER.sign(x3, at=h.clock())
    h.record("approval.signed", x3["permit_id"], body)
    h.move(x3["permit_id"], "permit.approved", "in_review", "approved", "quorum")
    h.move(x3["permit_id"], "permit.issued", "approved", "issued", "system")
    assert h.authorize(h.pipe.permits.view(x3["permit_id"]))["allowed"]
    h.execute(x3["permit_id"])
    h.expect("X3", x3["permit_id"], soc2={"self_approval"})

    # --- X4: a SOX change certified at Level 2 (planted decision) ----------------------------
    decided = h.pipe.permits.decisions[h.certify(2)]
    source = next(e for e in _decisions(h) if e["event_id"] == decided.event_id)
    task_id = f"task-sox-{uuid.uuid4().hex[:6]}"
    h.record("task.submitted", task_id, {"task_id": task_id, "master_id": "master-1",
                                         "task": {**TASKS[2], "compliance": ["SOX"]}})
    planted = h.record("certification.decided", task_id, {
        **source["payload"], "task_id": task_id, "compliance_frameworks": ["SOX"],
        "retention_days": 2555, "retention_class": "compliance-7y"})
    x4 = h.approve(h.request(planted.event_id))
    assert h.authorize(x4)["allowed"]
    h.execute(x4["permit_id"])
    h.expect("X4", x4["permit_id"], soc2=set(), sox={"level_below_minimum"})

    # --- X5: a Level 2 permit without a rollback plan (planted request) ----------------------
    x5 = h.planted_issue(rollback_plan=None)
    h.execute(x5, outcome={"test_results": {"smoke": "passed"}})
    h.expect("X5", x5, soc2={"missing_rollback_plan"})

    # --- X6: no test evidence anywhere (planted request: the service refuses a plan without
    # test results, but history recorded elsewhere may lack them) -----------------------------
    untested = {**PLAN, "testing_evidence": {"staging_test_date": "2030-01-05T10:00:00Z"}}
    x6 = h.planted_issue(rollback_plan=untested)
    h.execute(x6)
    h.expect("X6", x6, soc2={"missing_test_evidence"})

    # --- X7: a violation (an operation outside the permit's scope) ---------------------------
    x7 = h.approve(h.request(h.certify(2)))
    assert h.authorize(x7)["allowed"]
    assert not h.authorize(x7, "deploy", service="billing")["allowed"]
    h.expect("X7", x7["permit_id"], soc2={"violation"})

    # --- X8: an emergency override nobody reviewed -------------------------------------------
    x8 = ivy.override("worker-9", at=h.clock(), override_id="ovr-unreviewed", ticket="INC-8")
    h.pipe.handle_event(envelope("override.requested", "ovr-unreviewed", x8, h.clock()),
                        h.clock())
    h.later()
    h.expect("X8", "ovr-unreviewed", soc2={"emergency_without_review"},
             sox={"emergency_without_review"}, hipaa={"emergency_without_review"},
             pci={"emergency_without_review"}, gdpr={"emergency_without_review"})

    # --- X9: a Level 2 task executed with no permit at all -----------------------------------
    d9 = h.pipe.permits.decisions[h.certify(2)]
    e9 = h.execute(None, task_id=d9.task_id)
    h.expect("X9", f"exec:{e9}", soc2={"no_approval"})

    # --- X10: approved with a signature that does not verify (planted; only a report made
    # with verify_signatures finds it: the service never records such an approval) --------
    x10 = h.request(h.certify(2))
    forged = Approver("tom", "tech_lead").sign(x10, at=h.clock())  # tom's id, another key
    forged["key_id"] = APPROVERS["tech_lead"].sign(x10, at=h.clock())["key_id"]
    h.record("approval.signed", x10["permit_id"], forged)
    h.move(x10["permit_id"], "permit.approved", "in_review", "approved", "quorum")
    h.move(x10["permit_id"], "permit.issued", "approved", "issued", "system")
    assert h.authorize(h.pipe.permits.view(x10["permit_id"]))["allowed"]
    h.execute(x10["permit_id"])
    h.expect("X10", x10["permit_id"], soc2=set())
    h.forged_approval = x10["permit_id"]

    # --- reviews (metrics) and an erasure (GDPR) ---------------------------------------------
    for task, assigned, appropriate in (("t-a", 2, 2), ("t-b", 3, 2), ("t-c", 2, 3),
                                        ("t-d", 1, 1)):
        h.pipe.handle_event(envelope("review.post_execution", task, {
            "task_id": task, "assigned_level": assigned, "appropriate_level": appropriate,
            "reviewer": "rita"}, h.clock()), h.clock())
    h.record("subject.erased", "subject-1", {"data_subject": "jane@example.org",
                                             "requested_by": "dpo", "legal_basis": "GDPR Art. 17"})
    h.checkpoint()
    return h


def _decisions(h: History) -> list[dict[str, Any]]:
    from tests.test_permit_kit import ledger_records

    return [r for r in ledger_records(h.path) if r["type"] == "certification.decided"]


def add_clean_change(h: History) -> str:
    """One more clean change (for the second report of a consistency test)."""
    view = h.clean(2, "later")
    h.checkpoint()
    return view["permit_id"]



# --- an independent verifier (no code of ours: RFC 9162, C2SP signed notes, Ed25519) ---------


def _node(left: bytes, right: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(b"\x01" + left + right).digest()


def check_note(note: str, vkey: str) -> tuple[int, bytes]:
    """(size, root) of a checkpoint note whose signature by `vkey` verifies; AssertionError
    otherwise. vkey = name+hex key id+base64(0x01 || Ed25519 public key)."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, key_id, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33
    cut = note.rindex("\n\n")
    text, lines = note[:cut + 1], note[cut + 2:].splitlines()
    verified = False
    for line in lines:
        signer, blob = line.removeprefix("\u2014 ").split(" ")
        sig = base64.b64decode(blob)
        if signer == name and sig[:4].hex() == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            verified = True
    assert verified, "no signature by the trusted key"
    _, size, root = text.split("\n")[:3]
    return int(size), base64.b64decode(root)


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2."""
    assert 0 <= index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn > 0, "proof too long"
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            r = _node(r, p)
        fn //= 2
        sn //= 2
    assert sn == 0, "proof too short"
    return r


def root_from_multiproof(size: int, leaves: dict[int, bytes], nodes: list[bytes]) -> bytes:
    """The root of a tree of `size` leaves (RFC 9162 2.1.1: MTH splits at the largest power
    of two below n) from some of its leaves and the hashes of every maximal subtree holding
    none of them, given left to right as a depth-first walk meets them."""
    wanted = sorted(leaves)
    assert wanted and 0 <= wanted[0] and wanted[-1] < size
    queue = list(nodes)

    def mth(lo: int, hi: int) -> bytes:
        inside = [i for i in wanted if lo <= i < hi]
        if not inside:
            assert queue, "multiproof too short"
            return queue.pop(0)
        if hi - lo == 1:
            return leaves[lo]
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        left = mth(lo, lo + k)
        return _node(left, mth(lo + k, hi))

    top = mth(0, size)
    assert not queue, "multiproof too long"
    return top


def consistent(size1: int, size2: int, root1: bytes, root2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2."""
    if size1 == size2:
        return not path and root1 == root2
    if not 0 < size1 < size2 or not path:
        return False
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            sr = _node(sr, c)
        fn //= 2
        sn //= 2
    return sn == 0 and fr == root1 and sr == root2
