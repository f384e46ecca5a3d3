"""Enforcement, pure: may this worker do this operation under this live permit now?

Checks, in order (facts §9.4 plus ours): the permit exists and is issued or executing; now is
inside its window; the worker is the permit's worker; the worker's level is at least the
permit's; the operation, environment, service, data classes and region are inside the scope.
An axis the permit constrains (services, regions) must be named by the operation: what we
cannot check, we do not allow.

What a refusal does to the permit (our reading of the revocation triggers, facts §9.5):

| refusal                        | severity | permit action | rollback (if executing) |
|--------------------------------|----------|---------------|-------------------------|
| outside the scope (any axis)   | high     | revoke (scope_expansion) | yes          |
| another worker's permit        | critical | suspend       | no                      |
| worker below the permit level  | high     | suspend       | no                      |
| certification revoked          | critical | revoke all the worker's permits | no          |
| permit unusable (unknown, not issued, denied, suspended, revoked, expired, closed) or
  before its window              | medium-high | none (not usable anyway) | no              |

Running-permit checks (facts §9.4 monitoring): error rate over the limit (sustained, C-17) ->
revoke (safety_violation) + rollback; p99 latency over the limit (sustained) -> revoke
(constraint_breach) + rollback; services or operations reported beyond the scope -> revoke
(scope_expansion) + rollback; still executing past the end + the in-progress allowance ->
revoke (time_exceeded) + rollback trigger. The rollback itself belongs to the rollback engine:
we emit `rollback.event` stage "triggered" and stop there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime, timedelta
from typing import Any, Literal

from events.payloads import MetricSample
from rules.governance import Governance, RollbackTrigger
from rules.permits import Permit, env_name
from rules.scoring_model import normalise_name
from rules.triggers import EngineSettings, WindowState, apply_overrides, evaluate

Action = Literal["denied", "suspended", "revoked"]
Severity = Literal["low", "medium", "high", "critical"]

STATE_REFUSALS = {
    "requested": ("permit_not_issued", "Permit not active: not yet approved"),
    "in_review": ("permit_not_issued", "Permit not active: still in review"),
    "approved": ("permit_not_issued", "Permit not active: approved but not issued"),
    "denied": ("permit_denied", "Permit was denied"),
    "suspended": ("permit_suspended", "Permit is suspended"),
    "revoked": ("permit_revoked", "Permit was revoked"),
    "expired": ("permit_expired", "Permit expired"),
    "validating": ("permit_closed", "Permit execution has finished"),
    "closed": ("permit_closed", "Permit is closed"),
}
SCOPE_CODES = frozenset({"operation_not_in_permit", "environment_mismatch",
                         "service_not_in_permit", "service_not_stated", "data_not_in_permit",
                         "region_not_in_permit", "region_not_stated"})


@dataclass(frozen=True)
class Response:
    severity: Severity
    action: Action
    revocation_reason: str | None = None  # governance revocation_reasons id
    rollback: bool = False


_RESPONSES: dict[str, Response] = {
    **{code: Response("high", "revoked", "scope_expansion", rollback=True)
       for code in SCOPE_CODES},
    "worker_not_on_permit": Response("critical", "suspended"),
    "insufficient_level": Response("high", "suspended"),
    "certification_revoked": Response("critical", "revoked", "worker_certification_revoked"),
    "permit_unknown": Response("high", "denied"),
    "permit_not_issued": Response("medium", "denied"),
    "permit_denied": Response("high", "denied"),
    "permit_suspended": Response("high", "denied"),
    "permit_revoked": Response("high", "denied"),
    "permit_expired": Response("medium", "denied"),
    "permit_closed": Response("medium", "denied"),
    "outside_time_window": Response("medium", "denied"),
}
_DEFAULT = Response("high", "denied")
_name = lru_cache(maxsize=100_000)(normalise_name)  # the same few names, asked again and again


def response_for(code: str) -> Response:
    """What a refusal with this code does (the table in the module docstring)."""
    return _RESPONSES.get(code, _DEFAULT)


@dataclass(frozen=True)
class OperationFacts:
    """The operation as the worker states it, normalised for set lookups."""

    type: str
    environment: str
    service: str | None = None
    data_classes: frozenset[str] = frozenset()
    region: str | None = None

    @classmethod
    def of(cls, operation: Mapping[str, Any]) -> OperationFacts:
        data = {name for flag, name in (
            ("has_pii", "pii"), ("has_phi", "phi"), ("has_financial", "financial"),
            ("has_credentials", "credentials")) if operation.get(flag) is True}
        classes = operation.get("data_classes") or operation.get("data_types") or []
        if isinstance(classes, str):
            classes = [classes]
        data |= {_name(c) for c in classes if isinstance(c, str) and c.strip()}
        service, region = operation.get("service"), operation.get("region")
        return cls(type=_name(str(operation.get("type", ""))),
                   environment=env_name(str(operation.get("environment", ""))),
                   service=_name(service) if isinstance(service, str) and service.strip()
                   else None, data_classes=frozenset(data - {"public"}),
                   region=_name(region) if isinstance(region, str) and region.strip()
                   else None)


@dataclass(frozen=True)
class Check:
    allowed: bool
    code: str
    message: str


ALLOWED = "authorized"


def check_operation(permit: Permit | None, worker_id: str, worker_level: int,
                    op: OperationFacts, now: datetime) -> Check:
    """The live-permit half of "may I do this now?" (the level half is rules.authorize)."""
    if permit is None:
        return Check(False, "permit_unknown", "No such permit")
    refused = STATE_REFUSALS.get(permit.state)
    if refused is not None:
        return Check(False, *refused)
    scope = permit.scope
    if now < scope.not_before:
        return Check(False, "outside_time_window", "Outside permitted time window (not yet)")
    if now >= scope.not_after:
        return Check(False, "permit_expired", "Permit expired")
    if permit.worker_id is not None and worker_id != permit.worker_id:
        return Check(False, "worker_not_on_permit",
                     f"Permit {permit.permit_id} is held by another worker")
    if worker_level < permit.level:
        return Check(False, "insufficient_level",
                     f"Insufficient worker certification: permit is Level {permit.level}, "
                     f"worker holds Level {worker_level}")
    return check_scope(permit, op) or Check(True, ALLOWED,
                                            f"Authorized under permit {permit.permit_id}")


def check_scope(permit: Permit, op: OperationFacts) -> Check | None:
    scope = permit.scope
    if op.type not in scope.operations:
        return Check(False, "operation_not_in_permit", "Operation not authorized by permit")
    if op.environment != scope.environment:
        return Check(False, "environment_mismatch", "Environment mismatch")
    if scope.services:
        if op.service is None:
            return Check(False, "service_not_stated",
                         "The permit names its services: the operation must say which")
        if op.service not in scope.services:
            return Check(False, "service_not_in_permit", "Service not authorized by permit")
    extra = op.data_classes - scope.data_classes
    if extra:
        return Check(False, "data_not_in_permit",
                     f"Data classes not authorized by permit: {', '.join(sorted(extra))}")
    if scope.regions:
        if op.region is None:
            return Check(False, "region_not_stated",
                         "The permit names its regions: the operation must say which")
        if op.region not in scope.regions:
            return Check(False, "region_not_in_permit", "Region not authorized by permit")
    return None


# --- running-permit checks -----------------------------------------------------------------

MONITORED_STATES = frozenset({"executing", "validating"})
# The fact sheet's running-permit metrics: rollback trigger -> revocation reason (facts §9.4).
PERMIT_TRIGGERS = {"error_rate_threshold": "safety_violation",
                   "latency_p99_threshold": "constraint_breach"}


@dataclass(frozen=True)
class Breach:
    trigger: str
    revocation_reason: str
    message: str
    evidence: dict[str, Any]


def permit_triggers(permit: Permit, governance: Governance) -> tuple[RollbackTrigger, ...]:
    """The error-rate and p99 triggers with the permit's own limits (C-17: thresholds only)."""
    policy = governance.rollback
    base = tuple(policy.trigger(name) for name in PERMIT_TRIGGERS)
    triggers, _ = apply_overrides(base, permit.constraints, policy)  # refused at request time
    return triggers


def metric_check(permit: Permit, states: Mapping[str, WindowState], sample: MetricSample,
                 governance: Governance) -> tuple[dict[str, WindowState], Breach | None]:
    """Fold one sample of a monitored permit into its trigger windows (rules.triggers: the
    same sustained-window semantics as the rollback engine); a breach if one fired."""
    if permit.state not in MONITORED_STATES:
        return {}, None
    updated, decisions = evaluate(states, sample, permit_triggers(permit, governance),
                                  sample.observed_at, EngineSettings.from_policy(
                                      governance.rollback))
    fired = next((d for d in decisions if d.kind == "rollback"), None)
    if fired is None:
        return updated, None
    return updated, Breach(trigger=fired.trigger,
                           revocation_reason=PERMIT_TRIGGERS[fired.trigger],
                           message=fired.reason, evidence=fired.evidence_dict())


def execution_check(permit: Permit, operations: Iterable[str], services: Iterable[str]
                    ) -> Breach | None:
    """Operations or services a worker reports that the permit never covered."""
    ops = {normalise_name(o) for o in operations if isinstance(o, str) and o.strip()}
    touched = {normalise_name(s) for s in services if isinstance(s, str) and s.strip()}
    extra_ops = sorted(ops - permit.scope.operations)
    extra_services = sorted(touched - permit.scope.services) if permit.scope.services else []
    if not extra_ops and not extra_services:
        return None
    return Breach(trigger="scope_expansion", revocation_reason="scope_expansion",
                  message="execution went beyond the permit: "
                  + "; ".join(part for part in (
                      f"operations {', '.join(extra_ops)}" if extra_ops else "",
                      f"services {', '.join(extra_services)}" if extra_services else "") if part),
                  evidence={"operations": extra_ops, "services": extra_services})


def overrun_due(permit: Permit, governance: Governance) -> datetime:
    """When an executing permit's work counts as overrunning its deadline."""
    allowance = governance.permit_lifecycle.in_progress_finish_minutes
    return permit.scope.not_after + timedelta(minutes=allowance)
