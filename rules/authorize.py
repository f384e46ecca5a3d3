"""The worker's pre-execution check: "may I do this now?" (QUICK_REFERENCE `can_execute`,
README "For Workers", checker v2 `validateWorkerForTask`).

Order: certification status, production needs L2+, sensitive data needs L3+, the level the
operation itself requires, then the permit (C-23: needed whenever the operation requires L1+).
Until live permits exist (permit issue), the permit is judged from what the worker presents,
and a permit we cannot inspect is refused: a wrong allow is an incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events import InputError, describe_validation_error
from rules.checker import decide
from rules.policy import Policy
from rules.scoring_model import normalise_name

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


class PresentedPermit(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    permit_id: str = Field(min_length=1)
    status: str = "active"
    operations: list[str] = Field(min_length=1)
    environment: str
    services: list[str] = []
    level: int | None = Field(default=None, ge=0, le=4)
    not_before: datetime | None = None
    not_after: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason_code: str
    message: str
    required_level: int

    def to_dict(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "reason_code": self.reason_code,
                "message": self.message, "required_level": self.required_level}


def _model(model: type[BaseModel], value: Any, where: str) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise InputError("input.schema", describe_validation_error(error, f"{where}.")) from None


def _operation_task(op: Operation) -> dict[str, Any]:
    data = [name for flag, name in (("has_pii", "pii"), ("has_phi", "phi"),
                                    ("has_financial", "financial"),
                                    ("has_credentials", "credentials")) if getattr(op, flag)]
    task: dict[str, Any] = {"task": op.description or op.type, "environment": op.environment,
                            "operations": [op.type], "data_types": data}
    if op.service:
        task["services"] = [op.service]
    return task


def _permit_verdict(permit_value: Any, op_type: str, environment: str, service: str | None,
                    level: int, required: int, now: datetime) -> Verdict:
    def deny(code: str, message: str) -> Verdict:
        return Verdict(False, code, message, required)

    if permit_value in (None, False, ""):
        return deny("no_active_permit", "No active permit")
    if not isinstance(permit_value, dict):
        return deny("permit_not_inspectable",
                    "The permit must be presented with its scope (permit_id, status, operations, "
                    "environment, not_before, not_after) so it can be checked")
    permit = _model(PresentedPermit, permit_value, "worker.active_permit")
    if permit.status != "active":
        return deny("permit_not_active", f"Permit not active (status {permit.status})")
    if permit.not_before and now < permit.not_before:
        return deny("outside_time_window", "Outside permitted time window")
    if permit.not_after and now > permit.not_after:
        return deny("permit_expired", "Permit expired")
    if normalise_name(op_type) not in {normalise_name(o) for o in permit.operations}:
        return deny("operation_not_in_permit", "Operation not authorized by permit")
    if normalise_name(environment) != normalise_name(permit.environment):
        return deny("environment_mismatch", "Environment mismatch")
    if service and permit.services and service not in permit.services:
        return deny("service_not_in_permit", "Service not authorized by permit")
    if permit.level is not None and level < permit.level:
        return deny("insufficient_level", "Insufficient worker certification")
    return Verdict(True, "authorized", f"Authorized under permit {permit.permit_id}", required)


def authorize(request: Any, policy: Policy, now: datetime) -> Verdict:
    if not isinstance(request, dict):
        raise InputError("input.schema", "input: expected a JSON object with worker and operation")
    if "worker" not in request:
        raise InputError("input.schema", "worker: field required")
    worker = _model(Worker, request["worker"], "worker")
    if "operation" in request:
        op = _model(Operation, request["operation"], "operation")
        decision = decide(_operation_task(op), policy)
        op_type, environment, service = op.type, op.environment, op.service
        sensitive = op.has_pii or op.has_phi or op.has_financial or op.has_credentials
    elif "task" in request:
        decision = decide(request["task"], policy)
        facts = decision.facts
        op_type = facts.operations[0] if facts.operations else "task"
        environment = decision.decided.environment
        service = facts.services[0] if facts.services else None
        sensitive = any(c in decision.findings.data for c in ("pii", "phi", "financial",
                                                                 "credentials"))
    else:
        raise InputError("input.schema", "operation: field required (or give a task)")

    required = decision.decided.level
    level = worker.certification_level
    production = decision.decided.environment == "production"
    if worker.status.lower() in BLOCKED_STATUSES:
        return Verdict(False, f"certification_{worker.status.lower()}",
                       f"Worker certification is {worker.status.lower()}", required)
    if production and level < 1:
        return Verdict(False, "production_requires_union",
                       "Non-union workers cannot access production", required)
    if production and level < 2 and required >= 2:  # read-only production is L1 work (C-1)
        return Verdict(False, "production_requires_level_2",
                       "Production access requires Level 2+ certification", required)
    if sensitive and level < 3:
        return Verdict(False, "sensitive_data_requires_level_3",
                       "Sensitive data requires Level 3+ certification", required)
    if level < required:
        return Verdict(False, "insufficient_level",
                       f"Insufficient worker certification: Level {required} required, "
                       f"worker holds Level {level}", required)
    if required >= 1:
        return _permit_verdict(worker.active_permit, op_type, environment, service, level,
                               required, now)
    return Verdict(True, "authorized", "Authorized", required)
