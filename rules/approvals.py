"""Approvers, signed approvals and quorums, pure.

An approval counts only if it is signed (Ed25519 over `events.signing.canonical_approval`) by a
key registered to that approver, valid at the time we receive it, in a role the approver holds
and the permit needs, for the request exactly as it stands, before the approval deadline, and
by someone other than the requester who has not already decided on this permit. Each refusal
has a stable code (the `approval.*` codes below, never renamed).

Quorum (governance permit types): `approvers_required` distinct approvers from the type's
roles (all of them, in order, when `all_must_approve` and `sequential`); where the task is
certified above the type's level (a Level 4 deletion gets the Level 3 destructive type), also
the quorum of the task's level; plus one approval from each role the decision adds (compliance
and operation extra approvers) and from the change advisory board (role
`change_advisory_board`) where the type or the task's level needs the CAB.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.payloads import ApprovalSigned, ApproverRegistered
from events.signing import SigningError, canonical_approval, key_id_for, verify
from rules.governance import Governance, PermitType
from rules.permits import LIVE_STATES, DecisionInfo, Permit, Refusal, transition

CAB_ROLE = "change_advisory_board"
MAX_CLOCK_SKEW = timedelta(minutes=5)  # an approval may not be dated further ahead than this
# Roles that may resume a suspended permit besides its own approvers.
RESUME_ROLES = frozenset({"security_lead", "incident_commander"})


# --- the approver registry -----------------------------------------------------------------


@dataclass(frozen=True)
class ApproverKey:
    approver_id: str
    key_id: str
    public_key: str
    roles: frozenset[str]
    valid_from: datetime
    valid_until: datetime | None


Registry = Mapping[str, Mapping[str, ApproverKey]]  # approver id -> key id -> key


def registered_key(payload: ApproverRegistered) -> ApproverKey:
    """One registration = one key of one approver (re-registering a key replaces it, which is
    how a key is retired: register it again with valid_until)."""
    return ApproverKey(approver_id=payload.approver_id, key_id=key_id_for(payload.public_key),
                       public_key=payload.public_key, roles=frozenset(payload.roles),
                       valid_from=payload.valid_from, valid_until=payload.valid_until)


def verify_signed(registry: Registry, *, approver_id: str, role: str, key_id: str,
                  signature: str, message: bytes | None, now: datetime,
                  seen_signatures: Collection[str]) -> ApproverKey | Refusal:
    """Who signed, and may they act now in this role? (No permit-specific rules here.)"""
    if not signature or not key_id:
        return Refusal("approval.unsigned", "the approval carries no signature (signature and "
                       "key_id are required)")
    keys = registry.get(approver_id)
    if not keys:
        return Refusal("approval.unknown_approver", f"{approver_id!r} is not a registered approver")
    key = keys.get(key_id)
    if key is None:
        return Refusal("approval.unknown_key",
                       f"key {key_id!r} is not registered to approver {approver_id!r}")
    if message is None or not verify(key.public_key, message, signature):
        return Refusal("approval.bad_signature",
                       "the signature does not verify over the canonical approval")
    if signature in seen_signatures:
        return Refusal("approval.replayed", "this signed approval has been received before")
    if now < key.valid_from:
        return Refusal("approval.approver_not_yet_valid",
                       f"approver {approver_id!r} (key {key_id}) is valid only from "
                       f"{key.valid_from.isoformat()}")
    if key.valid_until is not None and now >= key.valid_until:
        return Refusal("approval.approver_expired",
                       f"approver {approver_id!r} (key {key_id}) expired at "
                       f"{key.valid_until.isoformat()}")
    if role not in key.roles:
        return Refusal("approval.role_not_held",
                       f"{approver_id!r} is not registered as {role!r} "
                       f"(holds {', '.join(sorted(key.roles))})")
    return key


def approval_message(a: ApprovalSigned) -> bytes | None:
    try:
        return canonical_approval(permit_id=a.permit_id, request_sha256=a.request_sha256,
                                  decision=a.decision, decided_at=a.decided_at,
                                  approver_id=a.approver_id, approver_role=a.approver_role)
    except SigningError:
        return None


# --- quorums -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleGroup:
    count: int  # distinct approvers needed from `roles`
    roles: tuple[str, ...]  # in the order a sequential group approves
    all_must_approve: bool = False
    sequential: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"count": self.count, "roles": list(self.roles),
                "all_must_approve": self.all_must_approve, "sequential": self.sequential}


@dataclass(frozen=True)
class QuorumSpec:
    groups: tuple[RoleGroup, ...]  # every group must be satisfied
    required_roles: tuple[str, ...]  # one approval each (compliance extras, CAB)

    @property
    def eligible(self) -> frozenset[str]:
        return frozenset(r for g in self.groups for r in g.roles) | frozenset(self.required_roles)

    def to_dict(self) -> dict[str, object]:
        return {"groups": [g.to_dict() for g in self.groups],
                "required_roles": list(self.required_roles)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> QuorumSpec:
        groups = data["groups"]
        assert isinstance(groups, list)
        return cls(groups=tuple(RoleGroup(count=g["count"], roles=tuple(g["roles"]),
                                          all_must_approve=g["all_must_approve"],
                                          sequential=g["sequential"]) for g in groups),
                   required_roles=tuple(data["required_roles"]))  # type: ignore[arg-type]


def quorum_for(ptype: PermitType, decision: DecisionInfo | None, governance: Governance
               ) -> QuorumSpec:
    """The permit type's approvers; where the task is certified above the type's level (a
    deletion at Level 4 gets the destructive type), also the quorum of the task's level."""
    groups = [RoleGroup(count=len(ptype.approver_roles) if ptype.all_must_approve
                        else ptype.approvers_required, roles=tuple(ptype.approver_roles),
                        all_must_approve=ptype.all_must_approve, sequential=ptype.sequential)]
    required: list[str] = []
    cab = ptype.change_advisory_board
    if decision is not None:
        gate = governance.gate(decision.level)
        if decision.level > ptype.level and gate.approvers_required:
            groups.append(RoleGroup(count=gate.approvers_required,
                                    roles=tuple(gate.approver_roles)))
            cab = cab or gate.change_advisory_board
        base = {r for g in groups for r in g.roles}
        required += [r for r in decision.approver_roles
                     if r not in gate.approver_roles and r not in base]
        for name in decision.compliance_frameworks:
            framework = governance.compliance.get(name)
            required += list(framework.extra_approver_roles) if framework else []
        if max(ptype.level, decision.level) >= 2:
            for rule in sorted(decision.minimum_rules):
                if rule.startswith("minimum.operation."):
                    op = rule.removeprefix("minimum.operation.")
                    required += list(governance.operation_extra_approvers.get(op, ()))
    if cab:
        required.append(CAB_ROLE)
    return QuorumSpec(groups=tuple(groups), required_roles=tuple(dict.fromkeys(required)))


def missing_approvals(spec: QuorumSpec, approvals: Collection[tuple[str, str]]) -> list[str]:
    """What is still missing, in words; empty when the quorum is met.

    `approvals` = (approver id, role) of the accepted approve decisions."""
    missing: list[str] = []
    roles = {role for _, role in approvals}
    for group in spec.groups:
        if group.all_must_approve:
            missing += [r for r in group.roles if r not in roles]
        else:
            have = len({who for who, role in approvals if role in group.roles})
            if have < group.count:
                missing.append(f"{group.count - have} more of {', '.join(group.roles)}")
    missing += [r for r in spec.required_roles if r not in roles]
    return missing


def next_sequential_role(group: RoleGroup, approvals: Collection[tuple[str, str]]
                         ) -> str | None:
    roles = {role for _, role in approvals}
    return next((r for r in group.roles if r not in roles), None)


# --- one approval against one permit ---------------------------------------------------------


def revocation_roles(governance: Governance) -> frozenset[str]:
    """Roles that may revoke any permit by hand (governance revocation_reasons authorized_by)."""
    return frozenset(role for reason in governance.revocation_reasons
                     for role in reason.authorized_by if role != "original_approvers")


def check_approval(a: ApprovalSigned, permit: Permit | None, registry: Registry,
                   governance: Governance, now: datetime, seen_signatures: Collection[str]
                   ) -> Refusal | None:
    """None if the signed decision may be applied to the permit now; else why not."""
    if permit is None:
        return Refusal("approval.unknown_permit", f"no permit {a.permit_id!r}")
    signed = verify_signed(registry, approver_id=a.approver_id, role=a.approver_role,
                           key_id=a.key_id, signature=a.signature, message=approval_message(a),
                           now=now, seen_signatures=seen_signatures)
    if isinstance(signed, Refusal):
        return signed
    if a.decided_at > now + MAX_CLOCK_SKEW:
        return Refusal("approval.future_dated", "decided_at lies in the future")
    renewal = permit.pending_renewal
    if renewal is not None and a.request_sha256 == renewal.request_sha256 and \
            a.decision in ("approve", "deny"):
        return _check_renewal_decision(a, permit, governance, now)
    if a.request_sha256 != permit.request_sha256:
        return Refusal("approval.request_changed",
                       "the approval is for another version of the request (request_sha256 "
                       "does not match the permit)")
    if a.approver_id in (permit.requested_by, permit.worker_id) and a.decision != "revoke":
        # (revoking only takes rights away: the roles below decide who may)
        return Refusal("approval.self_approval",
                       f"{a.approver_id!r} requested (or works under) this permit and cannot "
                       "decide on it")
    if a.decision in ("approve", "deny"):
        return _check_review_decision(a, permit, now)
    if a.decision == "revoke":
        if permit.state not in LIVE_STATES:
            return Refusal("approval.not_revocable",
                           f"a {permit.state} permit cannot be revoked")
        if a.approver_role not in revocation_roles(governance) and \
                a.approver_id not in permit.approvers:
            return Refusal("approval.wrong_role",
                           f"{a.approver_role!r} may not revoke permits (only the permit's "
                           "approvers and the roles in governance revocation_reasons)")
        return None
    # resume
    if permit.state != "suspended":
        return Refusal("approval.not_suspended", f"the permit is {permit.state}, not suspended")
    if a.approver_role not in RESUME_ROLES and a.approver_id not in permit.approvers:
        return Refusal("approval.wrong_role",
                       f"{a.approver_role!r} may not resume permits (only the permit's "
                       f"approvers, {', '.join(sorted(RESUME_ROLES))})")
    return None


def _check_review_decision(a: ApprovalSigned, permit: Permit, now: datetime) -> Refusal | None:
    spec = permit.quorum
    if spec is None or a.approver_role not in spec.eligible:
        roles = ", ".join(sorted(spec.eligible)) if spec else "none"
        return Refusal("approval.wrong_role",
                       f"{a.approver_role!r} cannot decide on a {permit.permit_type} permit "
                       f"(roles: {roles})")
    if permit.approval_deadline is not None and now > permit.approval_deadline:
        return Refusal("approval.deadline_passed",
                       f"the approval deadline passed at {permit.approval_deadline.isoformat()}")
    if permit.state != "in_review":
        return Refusal("approval.not_in_review", f"the permit is {permit.state}, not in review")
    if a.approver_id in {x.approver_id for x in permit.approvals}:
        return Refusal("approval.duplicate_approver",
                       f"{a.approver_id!r} has already decided on this permit")
    if a.decision == "approve":
        given = [(x.approver_id, x.role) for x in permit.approvals if x.decision == "approve"]
        for group in spec.groups:
            if group.sequential and group.all_must_approve and a.approver_role in group.roles:
                expected = next_sequential_role(group, given)
                if expected is not None and a.approver_role != expected:
                    return Refusal("approval.out_of_order",
                                   f"{permit.permit_type} approvals are sequential: "
                                   f"{expected} next")
    return None


def _check_renewal_decision(a: ApprovalSigned, permit: Permit, governance: Governance,
                            now: datetime) -> Refusal | None:
    """An approve/deny signed over the pending renewal's hash (facts §9.2: renewals of
    standard and advanced permits need approval). The permit's own quorum decides; with
    `renewal_approvers = "original"` only those who approved the permit may sign; the
    approvals count until the permit's current end."""
    renewal = permit.pending_renewal
    assert renewal is not None
    if a.approver_id in (permit.requested_by, permit.worker_id, renewal.requested_by):
        return Refusal("approval.self_approval",
                       f"{a.approver_id!r} requested (or works under) this permit and cannot "
                       "decide on its renewal")
    spec = permit.quorum
    if spec is None or a.approver_role not in spec.eligible:
        roles = ", ".join(sorted(spec.eligible)) if spec else "none"
        return Refusal("approval.wrong_role",
                       f"{a.approver_role!r} cannot decide on a {permit.permit_type} renewal "
                       f"(roles: {roles})")
    if now >= permit.scope.not_after:
        return Refusal("approval.deadline_passed",
                       "renewal approvals count until the permit's end, "
                       f"{permit.scope.not_after.isoformat()}")
    if isinstance(transition(governance.permit_lifecycle, permit.state, "renew"), Refusal):
        return Refusal("approval.not_in_review",
                       f"the permit is {permit.state}: its renewal cannot be decided now")
    if a.approver_id in {x.approver_id for x in renewal.approvals}:
        return Refusal("approval.duplicate_approver",
                       f"{a.approver_id!r} has already decided on renewal {renewal.number}")
    ptype = governance.permit_type(permit.permit_type)
    if ptype.renewal_approvers == "original" and a.approver_id not in permit.approvers:
        return Refusal("approval.not_original_approver",
                       f"{permit.permit_type} renewals are approved by the permit's own "
                       f"approvers ({', '.join(permit.approvers) or 'none'})")
    return None
