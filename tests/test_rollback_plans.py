"""Rollback plans: every shipped template is valid at its level; broken plans get field-level
problems (`path: message`), all of them at once."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from rules.policy import default_policy
from rules.rollback_plans import (
    load_template,
    parse_plan,
    phases_for,
    plan_required,
    plan_triggers,
    scope_for_trigger,
    template_names,
    validate_plan,
)

P = pytest.param
POLICY = default_policy().governance.rollback
TEMPLATES = {"kubernetes_deployment": 2, "terraform_infrastructure": 3, "database_migration": 3,
             "n8n_workflow": 2}


def test_the_seed_examples_are_shipped():
    assert set(template_names()) == set(TEMPLATES)


@pytest.mark.parametrize(("name", "level"), TEMPLATES.items())
def test_template_is_valid_at_its_level(name, level):
    plan = load_template(name)
    assert plan["metadata"]["certification_level"] == level
    assert validate_plan(plan, level, now=datetime(2026, 1, 1, tzinfo=UTC)) == []


@pytest.mark.parametrize("name", ["kubernetes_deployment", "n8n_workflow"])
def test_level_two_template_is_not_enough_at_level_three(name):
    paths = {p.path for p in validate_plan(load_template(name), 3)}
    assert {"metadata.certification_level", "testing_evidence.production_like_test_date",
            "partial_rollback_scenarios", "escalation_procedures"} <= paths


def l4_plan() -> dict:
    plan = copy.deepcopy(load_template("database_migration"))
    plan["metadata"]["certification_level"] = 4
    plan["rollback_procedure"]["sla_minutes"] = 10
    plan["testing_evidence"]["rehearsal_date"] = "2025-11-30T10:00:00Z"
    plan["testing_evidence"]["test_results"]["multi_region_coordination_test"] = "passed"
    plan["multi_region_coordination"] = {"regions": ["eu-west-1", "us-east-1"], "parallel": True}
    plan["communication_plan"] = {"channels": ["slack", "email", "pagerduty"]}
    plan["business_continuity"] = {"fallback": "read-only mode"}
    return plan


def test_a_complete_level_four_plan_is_valid():
    assert validate_plan(l4_plan(), 4) == []


def _set(path: str, value):
    def mutate(plan):
        *parents, last = path.split(".")
        node = plan
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return mutate


DELETE = object()

BROKEN = [
    # name, template, level, mutation, expected path, words in the message
    P("kubernetes_deployment", 2, _set("verification_procedure", DELETE),
      "verification_procedure", "required section is missing", id="section missing"),
    P("kubernetes_deployment", 2, _set("rollback_plan_extra", {}), "rollback_plan_extra",
      "unknown section", id="unknown section"),
    P("kubernetes_deployment", 2, _set("metadata.owner", DELETE), "metadata.owner",
      "required field is missing", id="field missing"),
    P("kubernetes_deployment", 2, _set("metadata.owner", "  "), "metadata.owner",
      "at least 1 character", id="blank text"),
    P("kubernetes_deployment", 2, _set("metadata.certification_level", 5),
      "metadata.certification_level", "less than or equal to 4", id="level out of range"),
    P("kubernetes_deployment", 2, _set("metadata.created_at", "2025-12-01T09:00:00"),
      "metadata.created_at", "timezone", id="time without zone"),
    P("kubernetes_deployment", 2, _set("metadata.last_updated", "2025-01-01T00:00:00Z"),
      "metadata", "before created_at", id="updated before created"),
    P("kubernetes_deployment", 2, _set("operation_summary.risk_level", "extreme"),
      "operation_summary.risk_level", "'low', 'medium', 'high' or 'critical'", id="risk enum"),
    P("kubernetes_deployment", 2, _set("operation_summary.services_affected", []),
      "operation_summary.services_affected", "at least 1 item", id="no services"),
    P("kubernetes_deployment", 2, _set("operation_summary.operation_type", "teleport"),
      "operation_summary.operation_type", "unknown operation type", id="unknown op type"),
    P("kubernetes_deployment", 2, _set("pre_rollback_state.backup_locations", []),
      "pre_rollback_state.backup_locations", "at least 1 item", id="no backups"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.phases.1.time_estimate_seconds", -1),
      "rollback_procedure.phases.1.time_estimate_seconds", "greater than 0",
      id="negative phase time"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.phases.1.phase", "rollback_deployment"),
      "rollback_procedure", "must be unique", id="phase twice"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.automation_level", "manual"),
      "rollback_procedure.automation_level", "not accepted at level 2", id="C-14 manual"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.automation_level", "semi_automated"),
      "rollback_procedure.automation_level", "application_deployment rollbacks must be "
      "fully_automated", id="operation type automation"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.sla_minutes", 30),
      "rollback_procedure.sla_minutes", "effective SLA of 10 minutes", id="C-15 stricter SLA"),
    P("terraform_infrastructure", 3, _set("rollback_procedure.sla_minutes", 20),
      "rollback_procedure.sla_minutes", "effective SLA of 15 minutes",
      id="C-15 seed terraform SLA 20"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.total_time_estimate_minutes", 12),
      "rollback_procedure.total_time_estimate_minutes", "exceeds the plan's own sla_minutes",
      id="estimate over SLA"),
    P("kubernetes_deployment", 2, _set("rollback_procedure.phases.0.time_estimate_seconds", 600),
      "rollback_procedure.phases", "add up to", id="phases over estimate"),
    P("kubernetes_deployment", 2, _set("testing_evidence.staging_test_date", DELETE),
      "testing_evidence.staging_test_date", "required field is missing", id="no staging test"),
    P("kubernetes_deployment", 2, _set("testing_evidence.test_results", {}),
      "testing_evidence.test_results.rollback_time_seconds", "required",
      id="no rollback time measured"),
    P("kubernetes_deployment", 2,
      _set("testing_evidence.test_results.rollback_time_seconds", 900),
      "testing_evidence.test_results.rollback_time_seconds", "exceeds the plan's SLA",
      id="measured time over SLA"),
    P("database_migration", 3, _set("testing_evidence.production_like_test_date", DELETE),
      "testing_evidence.production_like_test_date", "C-16", id="C-16 L3 production-like"),
    P("database_migration", 3, _set("partial_rollback_scenarios", DELETE),
      "partial_rollback_scenarios", "required at level 3", id="L3 partial scenarios"),
    P("database_migration", 3, _set("partial_rollback_scenarios.0.phases.1", "teleport"),
      "partial_rollback_scenarios.0.phases.1", "not a phase", id="scenario phase unknown"),
    P("database_migration", 3, _set("partial_rollback_scenarios.0.scope", "everything"),
      "partial_rollback_scenarios.0.scope", "'application_only'", id="scenario scope enum"),
    P("database_migration", 3, _set("rollback_decision_criteria.point_of_no_return", ""),
      "rollback_decision_criteria.point_of_no_return", "at least 1 character", id="no PONR"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers.1", "health_check_failures"),
      "rollback_decision_criteria.automatic_triggers.1", "unknown trigger",
      id="seed's undefined trigger name"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers.1", 7),
      "rollback_decision_criteria.automatic_triggers.1", "trigger name or a trigger object",
      id="trigger not a name"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers.0",
           {"name": "error_rate_threshold", "threshold": 0.2}),
      "rollback_decision_criteria.automatic_triggers.0.threshold", "outside the policy bounds",
      id="plan threshold beyond bound"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers.0",
           {"name": "error_rate_threshold", "sustained_seconds": 10}),
      "rollback_decision_criteria.automatic_triggers.0.sustained_seconds", "C-17",
      id="plan changes a policy window"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers.0", {"name": "queue_depth",
                                                               "metric": "queue_depth"}),
      "rollback_decision_criteria.automatic_triggers.0.comparison", "required field",
      id="custom trigger incomplete"),
    P("kubernetes_deployment", 2,
      _set("rollback_decision_criteria.automatic_triggers",
           [{"name": "queue_depth", "metric": "queue_depth", "comparison": "greater_than",
             "threshold": 100, "sustained_seconds": 60, "automatic": False}]),
      "rollback_decision_criteria.automatic_triggers", "at least one automatic trigger",
      id="fully automated without an automatic trigger"),
]


@pytest.mark.parametrize(("template", "level", "mutate", "path", "words"), BROKEN)
def test_broken_plan_names_the_field(template, level, mutate, path, words):
    plan = copy.deepcopy(load_template(template))
    mutate(plan)
    problems = {p.path: p.message for p in validate_plan(plan, level)}
    assert path in problems, problems
    assert words in problems[path]


@pytest.mark.parametrize(("mutate", "path"), [
    P(_set("testing_evidence.rehearsal_date", DELETE), "testing_evidence.rehearsal_date",
      id="C-16 L4 rehearsal"),
    P(_set("communication_plan", DELETE), "communication_plan", id="communication plan"),
    P(_set("multi_region_coordination", {"regions": [], "parallel": True}),
      "multi_region_coordination.regions", id="regions"),
    P(_set("escalation_procedures", DELETE), "escalation_procedures",
      id="L4 keeps the L3 documentation"),
    P(_set("rollback_procedure.sla_minutes", 15), "rollback_procedure.sla_minutes",
      id="L4 SLA 10 per region"),
])
def test_level_four_requirements(mutate, path):
    plan = l4_plan()
    mutate(plan)
    assert path in {p.path for p in validate_plan(plan, 4)}


def test_every_problem_is_listed_at_once():
    plan = copy.deepcopy(load_template("terraform_infrastructure"))
    del plan["verification_procedure"]
    plan["metadata"]["certification_level"] = "three"
    plan["rollback_procedure"]["sla_minutes"] = 20
    plan["rollback_decision_criteria"]["automatic_triggers"].append("nope")
    del plan["testing_evidence"]["production_like_test_date"]
    problems = [str(p) for p in validate_plan(plan, 3)]
    assert len(problems) == 5
    assert all(": " in p for p in problems)


def test_future_test_dates_are_no_evidence():
    plan = load_template("kubernetes_deployment")
    problems = validate_plan(plan, 2, now=datetime(2025, 11, 1, tzinfo=UTC))
    assert [p.path for p in problems] == ["testing_evidence.staging_test_date"]


@pytest.mark.parametrize("document", [[], "plan", None, 3])
def test_not_an_object(document):
    assert [str(p) for p in validate_plan(document, 2)] == [
        "plan: a rollback plan must be a JSON object"]


@pytest.mark.parametrize(("level", "required"), [(0, False), (1, False), (2, True), (4, True)])
def test_plan_required_from_level_two(level, required):
    assert plan_required(level) is required


def test_plan_gives_triggers_scopes_and_phases():
    plan, problems = parse_plan(load_template("database_migration"), 3)
    assert problems == [] and plan is not None
    assert scope_for_trigger(plan, "data_inconsistency_detected") == "database_only"
    assert scope_for_trigger(plan, "transaction_failure_rate") == "full"
    assert phases_for(plan, "full")[0] == "enable_readonly"
    with pytest.raises(KeyError):
        phases_for(plan, "regional")
    n8n, _ = parse_plan(load_template("n8n_workflow"), 2)
    names = {t.name for t in plan_triggers(n8n, POLICY)}
    assert "workflow_execution_failure_rate" in names and "error_rate_threshold" in names
