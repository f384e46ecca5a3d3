"""The worker's pre-execution check: "may I do this now?" (QUICK_REFERENCE `can_execute`,
README "For Workers", checker v2 `validateWorkerForTask`).

Order: certification status, production needs L2+, sensitive data needs L3+, the level the
operation itself requires, then the permit (C-23: needed whenever the operation requires L1+).

The permit is looked up live (issue 5): the worker names it (`permit_id`, or
`worker.active_permit` as an id or an object with `permit_id`) and `permits` finds it in the
permit service's state; rules.enforcement checks state, window, worker, level and scope. A
permit body sent by the worker is never trusted; without a live lookup (`permits=None`) a
presented permit cannot be checked and the answer is no.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events import InputError, describe_validation_error
from events.envelope import MAX_ID_LENGTH
from rules.checker import decide
from rules.enforcement import OperationFacts, check_operation
from rules.permits import Permit
from rules.policy import Policy

PermitLookup = Callable[[str], Permit | None]

BLOCKED_STATUSES = ("revoked", "expired", "suspended")


class Worker(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    id: str = Field(min_length=1)
    certification_level: int = Field(ge=0, le=4)
    status: str = "active"
    active_permit: Any = None


class Operation(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(min_length=1)
    environment: str = Field(min_length=1)
    has_pii: bool = False
    has_phi: bool = False
    has_financial: bool = False
    has_credentials: bool = False
    service: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason_code: str
    message: str
    required_level: int
    permit_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"allowed": self.allowed, "reason_code": self.reason_code,
               "message": self.message, "required_level": self.required_level}
        if self.permit_id is not None:
            out["permit_id"] = self.permit_id
        return out


@dataclass(frozen=True)
class Assessment:
    """The verdict and what it was about (for the service to record and act on)."""

    verdict: Verdict
    worker: Worker
    operation: dict[str, Any]
    permit_id: str | None


# The level an operation requires is a pure function of (policy, operation): remembered, so
# that "may I?" costs a dict lookup once an operation shape has been certified.
REQUIRED_CACHE_SIZE = 50_000
_required_cache: OrderedDict[tuple[Any, ...], tuple[int, str]] = OrderedDict()


def _required(op: Operation, facts: OperationFacts, policy: Policy) -> tuple[int, str]:
    """(level required, certified environment) of one operation."""
    key = (policy.sha256, op.type, op.environment, op.service, op.description,
           facts.data_classes, facts.region)
    found = _required_cache.get(key)
    if found is None:
        decided = decide(_operation_task(op, facts), policy).decided
        found = (decided.level, decided.environment)
        _required_cache[key] = found
        if len(_required_cache) > REQUIRED_CACHE_SIZE:
            _required_cache.popitem(last=False)
    return found


def _model(model: type[BaseModel], value: Any, where: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise InputError("input.schema", describe_validation_error(error, f"{where}.")) from None


SENSITIVE = frozenset({"pii", "phi", "financial", "credentials"})


def _operation_task(op: Operation, facts: OperationFacts) -> dict[str, Any]:
    task: dict[str, Any] = {"task": op.description or op.type, "environment": op.environment,
                            "operations": [op.type], "data_types": sorted(facts.data_classes)}
    if op.service:
        task["services"] = [op.service]
    if facts.region:
        task["regions"] = [facts.region]
    return task


def presented_permit_id(request: dict[str, Any], worker: Worker) -> str | None:
    """Only the id of a presented permit is used; a permit body is never trusted."""
    given = request.get("permit_id")
    if given is None:
        given = worker.active_permit
        if isinstance(given, dict):
            given = given.get("permit_id")
    if given in (None, False, ""):
        return None
    if not isinstance(given, str) or len(given) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"permit_id: expected an id of at most {MAX_ID_LENGTH} "
                         "characters")
    return given


def authorize(request: Any, policy: Policy, now: datetime,
              permits: PermitLookup | None = None) -> Verdict:
    return assess(request, policy, now, permits).verdict


def assess(request: Any, policy: Policy, now: datetime, permits: PermitLookup | None = None
           ) -> Assessment:
    if not isinstance(request, dict):
        raise InputError("input.schema", "input: expected a JSON object with worker and operation")
    if "worker" not in request:
        raise InputError("input.schema", "worker: field required")
    worker = _model(Worker, request["worker"], "worker")
    if len(worker.id) > MAX_ID_LENGTH:
        raise InputError("input.schema", f"worker.id: at most {MAX_ID_LENGTH} characters")
    if "operation" in request and request["operation"] is not None:
        op = _model(Operation, request["operation"], "operation")
        operation = op.model_dump(exclude_none=True)
        facts = OperationFacts.of(operation)
        required, environment = _required(op, facts, policy)
        sensitive = bool(facts.data_classes & SENSITIVE)
    elif "task" in request and request["task"] is not None:
        decision = decide(request["task"], policy)
        required, environment = decision.decided.level, decision.decided.environment
        task = decision.facts
        sensitive = any(c in decision.findings.data for c in SENSITIVE)
        operation = {"type": task.operations[0] if task.operations else "task",
                     "environment": decision.decided.environment,
                     "data_classes": sorted(decision.findings.data)}
        if task.services:
            operation["service"] = task.services[0]
        if task.regions:
            operation["region"] = task.regions[0]
        facts = OperationFacts.of(operation)
    else:
        raise InputError("input.schema", "operation: field required (or give a task)")
    permit_id = presented_permit_id(request, worker)

    def verdict(allowed: bool, code: str, message: str) -> Assessment:
        return Assessment(Verdict(allowed, code, message, required, permit_id), worker,
                          operation, permit_id)

    level = worker.certification_level
    production = environment == "production"
    if worker.status.lower() in BLOCKED_STATUSES:
        return verdict(False, f"certification_{worker.status.lower()}",
                       f"Worker certification is {worker.status.lower()}")
    if production and level < 1:
        return verdict(False, "production_requires_union",
                       "Non-union workers cannot access production")
    if production and level < 2 and required >= 2:  # read-only production is L1 work (C-1)
        return verdict(False, "production_requires_level_2",
                       "Production access requires Level 2+ certification")
    if sensitive and level < 3:
        return verdict(False, "sensitive_data_requires_level_3",
                       "Sensitive data requires Level 3+ certification")
    if level < required:
        return verdict(False, "insufficient_level",
                       f"Insufficient worker certification: Level {required} required, "
                       f"worker holds Level {level}")
    if required < 1:
        return verdict(True, "authorized", "Authorized")
    if permit_id is None:
        return verdict(False, "no_active_permit", "No active permit")
    if permits is None:
        return verdict(False, "permit_not_verifiable",
                       "Permits are checked against the live permit store only: ask the "
                       "certification service (POST /v1/authorize)")
    check = check_operation(permits(permit_id), worker.id, level, facts, now)
    return verdict(check.allowed, check.code, check.message)
