"""Rollback plans: the seed's `rollback_plan_schema` as pydantic models, plus what each level
requires of a plan, with every problem listed as `path: message`.

`validate_plan(plan, level)` answers "may a permit at this level rely on this plan?" (empty list
= yes). Sections are validated one by one, so one bad section does not hide another's problems;
the level checks (C-14 automation, C-15 SLA, C-16 testing evidence, documentation sections,
trigger names and permit threshold bounds, partial scenarios) then run on what parsed.

Shapes the seed leaves open (ours, docs/rollback.md): list items may be texts or objects;
`operation_summary.operation_type` (optional) names an operation-type SLA; phases carry
`phase` and `time_estimate_seconds`; automatic triggers are policy trigger names, or objects
`{"name": ..., "threshold": ...}` (a threshold override, bounded like a permit's), or whole
custom triggers `{"name", "metric", "comparison", "threshold", ...}`; partial scenarios name
their `scope` and the procedure `phases` they run. Level 4 adds two sections:
`multi_region_coordination` and `business_continuity`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from rules.governance import RollbackPolicy, RollbackTrigger
from rules.triggers import override_problem

TEMPLATE_DIR = Path(__file__).parent / "policy" / "rollback_templates"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Texts = Annotated[list[Text], Field(min_length=1)]
Items = Annotated[list[Text | dict[str, Any]], Field(min_length=1)]
Scope = Literal["application_only", "database_only", "single_service", "configuration_only",
                "regional"]
AutomationLevel = Literal["fully_automated", "semi_automated", "manual"]
AUTOMATION_RANK = {"manual": 0, "semi_automated": 1, "fully_automated": 2}


@dataclass(frozen=True)
class PlanProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _Section(BaseModel):
    # Sections keep fields we do not know (the seed's examples carry scripts, notes, ...).
    model_config = ConfigDict(frozen=True, extra="allow")


class Metadata(_Section):
    operation_id: Text
    permit_id: Text
    created_at: AwareDatetime
    last_updated: AwareDatetime
    owner: Text
    certification_level: Annotated[int, Field(ge=2, le=4, strict=True)]
    version: Text

    @model_validator(mode="after")
    def _order(self) -> Metadata:
        if self.last_updated < self.created_at:
            raise ValueError("last_updated is before created_at")
        return self


class OperationSummary(_Section):
    description: Text
    services_affected: Texts
    risk_level: Literal["low", "medium", "high", "critical"]
    estimated_duration_minutes: Annotated[int, Field(gt=0)]
    operation_type: Text | None = None  # an operation-type SLA name (C-15)


class PreRollbackState(_Section):
    state_items: Items
    capture_commands: Items
    backup_locations: Items


class PlanTrigger(_Section):
    """An object in automatic_triggers: a policy trigger (maybe with a tighter threshold) or a
    custom trigger defined by the plan."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    threshold: float | str | None = None


class DecisionCriteria(_Section):
    # Entries are checked one by one (names, objects) by _trigger_problems, so one bad entry
    # does not hide the problems of the others.
    automatic_triggers: Annotated[list[Any], Field(min_length=1)]
    manual_triggers: Texts
    point_of_no_return: Text
    alternative_if_past_ponr: Text


class Phase(_Section):
    phase: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    time_estimate_seconds: Annotated[int, Field(gt=0)]
    command: Text | None = None
    requires_review: bool = False


class Procedure(_Section):
    phases: Annotated[list[Phase], Field(min_length=1)]
    total_time_estimate_minutes: Annotated[int, Field(gt=0)]
    sla_minutes: Annotated[int, Field(gt=0)]
    automation_level: AutomationLevel

    @model_validator(mode="after")
    def _unique_phases(self) -> Procedure:
        names = [p.phase for p in self.phases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"phase names must be unique, repeated: {dupes}")
        return self

    def seconds(self, phases: list[str] | None = None) -> int:
        return sum(p.time_estimate_seconds for p in self.phases
                   if phases is None or p.phase in phases)


class Verification(_Section):
    automated_checks: Items
    manual_checks: Items
    success_criteria: Items


class TestingEvidence(_Section):
    staging_test_date: AwareDatetime
    production_like_test_date: AwareDatetime | None = None  # required from L3 (C-16)
    rehearsal_date: AwareDatetime | None = None  # required at L4 (C-16)
    test_results: dict[str, Any]


class PartialScenario(_Section):
    scope: Scope
    phases: Texts  # names of rollback_procedure phases this scenario runs
    description: Text | None = None
    excluded_components: list[Text] = Field(default_factory=list)
    triggers: list[Text] = Field(default_factory=list)  # triggers that choose this scenario


class MultiRegion(_Section):
    regions: Texts
    parallel: bool


NonEmptyObject = Annotated[dict[str, Any], Field(min_length=1)]


class RollbackPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata: Metadata
    operation_summary: OperationSummary
    pre_rollback_state: PreRollbackState
    rollback_decision_criteria: DecisionCriteria
    rollback_procedure: Procedure
    verification_procedure: Verification
    testing_evidence: TestingEvidence
    partial_rollback_scenarios: list[PartialScenario] | None = None
    escalation_procedures: Items | None = None
    communication_plan: NonEmptyObject | None = None
    compliance_requirements: Items | None = None
    multi_region_coordination: MultiRegion | None = None
    business_continuity: NonEmptyObject | None = None

    def scenario(self, scope: str) -> PartialScenario | None:
        for s in self.partial_rollback_scenarios or ():
            if s.scope == scope:
                return s
        return None


REQUIRED_SECTIONS = tuple(name for name, f in RollbackPlan.model_fields.items()
                          if f.is_required())
OPTIONAL_SECTIONS = tuple(name for name in RollbackPlan.model_fields
                          if name not in REQUIRED_SECTIONS)

# Policy documentation items -> the plan section that carries them. Items met by the required
# sections map to None; an item not listed here needs a section of its own name.
DOCUMENTATION_SECTIONS: dict[str, str | None] = {
    "rollback_procedure": None, "verification_checklist": None, "rollback_time_estimate": None,
    "comprehensive_rollback_plan": None, "enterprise_rollback_plan": None,
    "point_of_no_return_definition": None,
    "partial_rollback_scenarios": "partial_rollback_scenarios",
    "escalation_procedures": "escalation_procedures",
    "communication_plan": "communication_plan",
    "multi_region_coordination_plan": "multi_region_coordination",
    "business_continuity_integration": "business_continuity",
}
# Policy testing items -> the evidence that shows them ("test_results.x" = a key of results).
TESTING_EVIDENCE: dict[str, str] = {
    "staging_environment_test": "staging_test_date",
    "production_like_environment_test": "production_like_test_date",
    "rollback_rehearsal": "rehearsal_date",
    "rollback_rehearsal_with_stakeholders": "rehearsal_date",
    "rollback_time_measurement": "test_results.rollback_time_seconds",
    "multi_region_rollback_coordination_test": "test_results.multi_region_coordination_test",
}


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return str(error["msg"])


def _problems(error: ValidationError, prefix: str) -> list[PlanProblem]:
    out = []
    for e in error.errors(include_url=False):
        loc = [str(part) for part in e["loc"]]
        # A union of text | object reports both branches: name the branch once, not twice.
        loc = [part for part in loc if part not in ("str", "PlanTrigger", "dict[str,any]")
               and not part.startswith("constrained-str")]
        out.append(PlanProblem(".".join([prefix, *loc]), _message(e)))
    return _dedupe(out)


def _dedupe(problems: list[PlanProblem]) -> list[PlanProblem]:
    seen: dict[str, PlanProblem] = {}
    for p in problems:
        seen.setdefault(p.path, p)  # one problem per path: the first is the most specific
    return list(seen.values())


def _default_rollback_policy() -> RollbackPolicy:
    from rules.policy import default_policy  # the shipped policy, loaded once

    return default_policy().governance.rollback


def plan_required(level: int, policy: RollbackPolicy | None = None) -> bool:
    """Does a permit at this level need a rollback plan? (governance plan_required_from_level)"""
    policy = policy or _default_rollback_policy()
    return level >= policy.plan_required_from_level


def parse_plan(plan: Any, level: int, policy: RollbackPolicy | None = None,
               now: datetime | None = None) -> tuple[RollbackPlan | None, list[PlanProblem]]:
    """The plan as a model when it is valid for `level`, and every problem found."""
    policy = policy or _default_rollback_policy()
    if not isinstance(plan, Mapping):
        return None, [PlanProblem("plan", "a rollback plan must be a JSON object")]
    problems: list[PlanProblem] = []
    sections: dict[str, Any] = {}
    for name in plan:
        if name not in RollbackPlan.model_fields:
            problems.append(PlanProblem(str(name), "unknown section (optional sections: "
                                        f"{', '.join(OPTIONAL_SECTIONS)})"))
    for name, info in RollbackPlan.model_fields.items():
        if name not in plan:
            if info.is_required():
                problems.append(PlanProblem(name, "required section is missing"))
            continue
        try:
            sections[name] = _section_adapter(name).validate_python(plan[name])
        except ValidationError as error:
            problems.extend(_problems(error, name))
    problems.extend(_level_problems(sections, level, policy, now))
    if problems:
        return None, _dedupe(problems)
    return RollbackPlan.model_validate(sections), []


def validate_plan(plan: Any, level: int, *, policy: RollbackPolicy | None = None,
                  now: datetime | None = None) -> list[PlanProblem]:
    """Every problem of `plan` for an operation at `level` (empty = valid). With `now`, test
    dates in the future are problems too."""
    return parse_plan(plan, level, policy, now)[1]


@lru_cache(maxsize=None)
def _section_adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(RollbackPlan.model_fields[name].annotation)


# --- the level's requirements ------------------------------------------------------------------


def _level_problems(s: dict[str, Any], level: int, policy: RollbackPolicy,
                    now: datetime | None) -> list[PlanProblem]:
    problems: list[PlanProblem] = []
    meta: Metadata | None = s.get("metadata")
    effective = level
    if meta is not None:
        if meta.certification_level < level:
            problems.append(PlanProblem(
                "metadata.certification_level",
                f"the plan is written for level {meta.certification_level}; this operation "
                f"needs level {level}"))
        effective = max(level, meta.certification_level)
    if effective < 2:
        return problems  # only the schema applies below level 2 (no plan is required there)
    requirements = policy.level(min(effective, 4))
    summary: OperationSummary | None = s.get("operation_summary")
    procedure: Procedure | None = s.get("rollback_procedure")
    operation = summary.operation_type if summary else None
    op_sla = next((o for o in policy.operation_slas if o.operation == operation), None)
    if operation is not None and op_sla is None:
        known = ", ".join(o.operation for o in policy.operation_slas)
        problems.append(PlanProblem("operation_summary.operation_type",
                                    f"unknown operation type {operation!r} (known: {known})"))
    if procedure is not None:
        problems.extend(_procedure_problems(procedure, requirements.level, requirements,
                                            policy, operation, op_sla))
    # Requirements accumulate: a level-4 plan also documents what level 3 asks for.
    lower = [policy.level(n) for n in range(2, requirements.level + 1)]
    testing = tuple(dict.fromkeys(t for r in lower for t in r.testing))
    documentation = tuple(dict.fromkeys(d for r in lower for d in r.documentation))
    problems.extend(_evidence_problems(s.get("testing_evidence"), testing,
                                       requirements.required_evidence, procedure, now))
    for item in documentation:
        section = DOCUMENTATION_SECTIONS.get(item, item)
        if section is not None and section not in s and not any(
                p.path.startswith(section) for p in problems):
            problems.append(PlanProblem(section, f"required at level {requirements.level} "
                                        f"(documentation: {item})"))
    criteria: DecisionCriteria | None = s.get("rollback_decision_criteria")
    if criteria is not None:
        problems.extend(_trigger_problems(criteria, procedure, policy))
    scenarios: list[PartialScenario] | None = s.get("partial_rollback_scenarios")
    if scenarios:
        problems.extend(_scenario_problems(scenarios, procedure, criteria, policy))
    return problems


def _procedure_problems(procedure: Procedure, level: int, requirements: Any,
                        policy: RollbackPolicy, operation: str | None, op_sla: Any,
                        ) -> list[PlanProblem]:
    problems = []
    where = "rollback_procedure"
    if procedure.automation_level not in requirements.automation_accepted:
        problems.append(PlanProblem(
            f"{where}.automation_level",
            f"{procedure.automation_level} is not accepted at level {level} (accepted: "
            f"{', '.join(requirements.automation_accepted)}; C-14)"))
    if op_sla is not None and AUTOMATION_RANK[procedure.automation_level] < \
            AUTOMATION_RANK[op_sla.automation]:
        problems.append(PlanProblem(
            f"{where}.automation_level",
            f"{operation} rollbacks must be {op_sla.automation}, not "
            f"{procedure.automation_level}"))
    sla = policy.effective_sla_minutes(level, operation)
    if sla is not None and procedure.sla_minutes > sla:
        basis = f"level {level}" + (f" and {operation}" if op_sla else "")
        problems.append(PlanProblem(
            f"{where}.sla_minutes",
            f"{procedure.sla_minutes} exceeds the effective SLA of {sla:g} minutes "
            f"(the stricter of {basis}, C-15)"))
    if procedure.total_time_estimate_minutes > procedure.sla_minutes:
        problems.append(PlanProblem(
            f"{where}.total_time_estimate_minutes",
            f"{procedure.total_time_estimate_minutes} exceeds the plan's own sla_minutes "
            f"{procedure.sla_minutes}"))
    phase_minutes = procedure.seconds() / 60
    if phase_minutes > procedure.total_time_estimate_minutes:
        problems.append(PlanProblem(
            f"{where}.phases",
            f"the phases add up to {phase_minutes:.1f} minutes, more than "
            f"total_time_estimate_minutes {procedure.total_time_estimate_minutes}"))
    return problems


def _evidence_problems(evidence: TestingEvidence | None, testing: tuple[str, ...],
                       required: tuple[str, ...], procedure: Procedure | None,
                       now: datetime | None) -> list[PlanProblem]:
    if evidence is None:
        return []  # missing or broken: already reported
    problems = []
    needed = list(required) + [TESTING_EVIDENCE.get(t, f"test_results.{t}") for t in testing]
    for item in dict.fromkeys(needed):
        path = f"testing_evidence.{item}"
        if item.startswith("test_results."):
            value = evidence.test_results.get(item.split(".", 1)[1])
        else:
            value = getattr(evidence, item, None)
        if value is None or value == "" or value is False:
            why = "C-16" if item in required else "testing"
            problems.append(PlanProblem(path, f"required at this level ({why})"))
    measured = evidence.test_results.get("rollback_time_seconds")
    if measured is not None:
        path = "testing_evidence.test_results.rollback_time_seconds"
        if isinstance(measured, bool) or not isinstance(measured, int | float) or measured <= 0:
            problems.append(PlanProblem(path, "must be a number of seconds greater than 0"))
        elif procedure is not None and measured > procedure.sla_minutes * 60:
            problems.append(PlanProblem(
                path, f"the measured {measured:g} s exceeds the plan's SLA of "
                f"{procedure.sla_minutes} minutes"))
    if now is not None:
        for name in ("staging_test_date", "production_like_test_date", "rehearsal_date"):
            moment = getattr(evidence, name)
            if moment is not None and moment > now:
                problems.append(PlanProblem(f"testing_evidence.{name}",
                                            "is in the future: a test not yet run is no evidence"))
    return problems


def _trigger_problems(criteria: DecisionCriteria, procedure: Procedure | None,
                      policy: RollbackPolicy) -> list[PlanProblem]:
    problems = []
    where = "rollback_decision_criteria.automatic_triggers"
    triggers = []
    for i, raw in enumerate(criteria.automatic_triggers):
        path = f"{where}.{i}"
        if isinstance(raw, str):
            try:
                triggers.append(policy.trigger(raw))
            except KeyError:
                problems.append(PlanProblem(path, f"unknown trigger {raw!r}: name a policy "
                                            "trigger or define it (name, metric, comparison, "
                                            "threshold, window)"))
            continue
        if not isinstance(raw, dict):
            problems.append(PlanProblem(path, "must be a trigger name or a trigger object"))
            continue
        try:
            entry = PlanTrigger.model_validate(raw)
        except ValidationError as error:
            problems.extend(_problems(error, path))
            continue
        trigger, found = custom_trigger(entry, policy)
        for sub, message in found:
            problems.append(PlanProblem(f"{path}.{sub}" if sub else path, message))
        if trigger is not None:
            triggers.append(trigger)
    if procedure is not None and procedure.automation_level == "fully_automated" and \
            triggers and not any(t.automatic for t in triggers):
        problems.append(PlanProblem(where, "a fully_automated plan needs at least one "
                                    "automatic trigger"))
    return problems


def custom_trigger(entry: PlanTrigger, policy: RollbackPolicy,
                   ) -> tuple[RollbackTrigger | None, list[tuple[str, str]]]:
    """An object in automatic_triggers -> the trigger it means, or (path, message) problems."""
    fields = {k: v for k, v in entry.model_dump().items() if v is not None}
    try:
        base = policy.trigger(entry.name)
    except KeyError:
        base = None
    if base is not None:
        extra = sorted(set(fields) - {"name", "threshold"})
        if extra:
            return None, [(extra[0], f"{entry.name} is a policy trigger: a plan may only "
                           "tighten its threshold, never change its metric or window (C-17)")]
        if entry.threshold is None:
            return base, []
        constraint = policy.override_constraint(base.name)
        problem = override_problem(base, entry.threshold, policy, constraint)
        if problem:
            return None, [("threshold", problem)]
        return base.model_copy(update={"threshold": float(entry.threshold)}), []
    comparison = fields.get("comparison")
    defaults = {"group": "metric", "severity": "high", "automatic": True, "alert_only": False,
                "approval": "none", "security_incident": False,
                "threshold_type": "state" if comparison == "equals" else "absolute"}
    document = {**defaults, **fields}
    if document.get("automatic") is False and document.get("approval") == "none" and \
            not document.get("alert_only"):
        document["approval"] = "manual"
    try:
        return RollbackTrigger.model_validate(document), []
    except ValidationError as error:
        return None, [(p.path.lstrip("."), p.message) for p in _problems(error, "")]


def _scenario_problems(scenarios: list[PartialScenario], procedure: Procedure | None,
                       criteria: DecisionCriteria | None, policy: RollbackPolicy,
                       ) -> list[PlanProblem]:
    problems = []
    phases = {p.phase for p in procedure.phases} if procedure else None
    named = {t if isinstance(t, str) else str(t.get("name"))
             for t in (criteria.automatic_triggers if criteria else ())
             if isinstance(t, str | dict)}
    named |= {t.name for t in policy.triggers}
    scopes = [s.scope for s in scenarios]
    for i, scenario in enumerate(scenarios):
        path = f"partial_rollback_scenarios.{i}"
        if scopes.count(scenario.scope) > 1:
            problems.append(PlanProblem(f"{path}.scope", f"{scenario.scope} is listed twice"))
        for j, phase in enumerate(scenario.phases):
            if phases is not None and phase not in phases:
                problems.append(PlanProblem(f"{path}.phases.{j}",
                                            f"{phase!r} is not a phase of rollback_procedure"))
        for j, trigger in enumerate(scenario.triggers):
            if trigger not in named:
                problems.append(PlanProblem(f"{path}.triggers.{j}",
                                            f"unknown trigger {trigger!r}"))
    return problems


# --- what other parts read from a valid plan -------------------------------------------------


def plan_triggers(plan: RollbackPlan, policy: RollbackPolicy) -> tuple[RollbackTrigger, ...]:
    """The triggers watching a key under this plan: every policy trigger, with the plan's
    tighter thresholds, plus the plan's own custom triggers."""
    by_name = {t.name: t for t in policy.triggers}
    for raw in plan.rollback_decision_criteria.automatic_triggers:
        if not isinstance(raw, dict):
            continue
        trigger, problems = custom_trigger(PlanTrigger.model_validate(raw), policy)
        if trigger is not None and not problems:
            by_name[trigger.name] = trigger
    return tuple(by_name.values())


def scope_for_trigger(plan: RollbackPlan, trigger: str) -> str:
    """The partial scenario a trigger chooses, or "full"."""
    for scenario in plan.partial_rollback_scenarios or ():
        if trigger in scenario.triggers:
            return scenario.scope
    return "full"


def phases_for(plan: RollbackPlan, scope: str) -> list[str]:
    """The procedure phases a scope runs ("full" = all, in order)."""
    if scope == "full":
        return [p.phase for p in plan.rollback_procedure.phases]
    scenario = plan.scenario(scope)
    if scenario is None:
        raise KeyError(f"the plan has no partial scenario {scope!r}")
    wanted = set(scenario.phases)
    return [p.phase for p in plan.rollback_procedure.phases if p.phase in wanted]


# --- shipped templates -------------------------------------------------------------------------


def template_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.json"))


def load_template(name: str) -> dict[str, Any]:
    if name not in template_names():
        raise KeyError(f"no rollback plan template {name!r} (templates: "
                       f"{', '.join(template_names())})")
    document = json.loads((TEMPLATE_DIR / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document
