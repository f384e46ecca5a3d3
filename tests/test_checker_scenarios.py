"""The certification rules as a table: one row per rule of the fact sheet.

Each row is a task and what the policy says about it. `level` is the final level; `score` the
total; `factor` pins one factor's points; `minimum` names a rule that must have fired; `no_min`
says no minimum above that level fired; `env` the detected environment; `blocks` the exact set
of non-union hard blocks.
"""

from __future__ import annotations

import pytest

from events import InputError
from rules.checker import decide
from rules.policy import default_policy

P = pytest.param
DEV = {"environment": "development"}


def neutral(**fields):
    """A task whose text triggers no detection word, so only the given fields speak."""
    return {"task": "Adjust worker settings", **fields}


SCENARIOS = [
    # --- environment factor -------------------------------------------------------------
    P(neutral(environment="production"), {"factor": ("environment", 10), "env": "production"},
      id="factor environment production 10"),
    P(neutral(environment="staging"), {"factor": ("environment", 5), "env": "staging"},
      id="factor environment staging 5"),
    P(neutral(environment="development"), {"factor": ("environment", 1)},
      id="factor environment development 1"),
    P(neutral(environment="test"), {"factor": ("environment", 0), "env": "test"},
      id="factor environment test 0"),
    P(neutral(environment="local"), {"factor": ("environment", 0), "env": "local"},
      id="factor environment local 0"),
    # --- reversibility ------------------------------------------------------------------
    P(neutral(**DEV, reversibility="irreversible"), {"factor": ("reversibility", 10)},
      id="factor reversibility irreversible 10"),
    P(neutral(**DEV, reversibility="complex_rollback"), {"factor": ("reversibility", 7)},
      id="factor reversibility complex 7"),
    P(neutral(**DEV, reversibility="manual_rollback"), {"factor": ("reversibility", 7)},
      id="factor reversibility manual_rollback is complex 7"),
    P(neutral(**DEV, reversibility="automated_rollback"), {"factor": ("reversibility", 3)},
      id="factor reversibility automated 3"),
    P(neutral(**DEV, reversibility="fully_reversible"), {"factor": ("reversibility", 0)},
      id="factor reversibility full 0"),
    P(neutral(environment="production"), {"factor": ("reversibility", 7)},
      id="unknown reversibility in production is complex (conservative)"),
    P(neutral(**DEV, irreversible=True), {"factor": ("reversibility", 10)},
      id="irreversible flag 10"),
    # --- data sensitivity ---------------------------------------------------------------
    P(neutral(**DEV, data_types=["email"]), {"factor": ("data_sensitivity", 10), "level": 3},
      id="data pii email 10 and L3 everywhere (C-29)"),
    P(neutral(**DEV, data_types=["medical_records"]), {"factor": ("data_sensitivity", 10),
                                                      "minimum": "minimum.data.phi"},
      id="data phi 10"),
    P(neutral(**DEV, data_types=["credit_card"]), {"factor": ("data_sensitivity", 10),
                                                  "minimum": "minimum.data.financial"},
      id="data financial 10"),
    P(neutral(**DEV, data_types=["api_keys"]), {"factor": ("data_sensitivity", 10),
                                               "minimum": "minimum.data.credentials"},
      id="data credentials 10"),
    P(neutral(**DEV, data_types=["internal_confidential"]), {"factor": ("data_sensitivity", 7),
                                                            "no_min": 0},
      id="data internal_confidential 7"),
    P(neutral(**DEV, data_types=["internal"]), {"factor": ("data_sensitivity", 3)},
      id="data internal 3"),
    P(neutral(**DEV, data_types=["public"]), {"factor": ("data_sensitivity", 0)},
      id="data public 0"),
    P(neutral(**DEV, data_types=["test_data"]), {"factor": ("data_sensitivity", 0)},
      id="data test 0"),
    P(neutral(**DEV, data_types=["email", "credit_card", "passwords"]),
      {"factor": ("data_sensitivity", 10)}, id="data capped at 10 (C-4)"),
    P({"task": "Backfill customer data for the report", **DEV},
      {"factor": ("data_sensitivity", 10), "minimum": "minimum.data.pii"},
      id="free text 'customer data' is PII (C-3)"),
    P({"task": "Store the patient phone number", **DEV}, {"level": 3},
      id="free text phone and patient"),
    P({"task": "Update the ssn lookup", **DEV}, {"minimum": "minimum.data.pii"},
      id="free text ssn"),
    # --- impact scope -------------------------------------------------------------------
    P(neutral(**DEV, regions=["us-east-1", "eu-west-1"]), {"factor": ("impact_scope", 10)},
      id="scope multi-region 10"),
    P(neutral(**DEV, components=["load_balancer"]), {"factor": ("impact_scope", 8)},
      id="scope system-wide 8"),
    P(neutral(**DEV, services=["worker", "scheduler"]), {"factor": ("impact_scope", 6)},
      id="scope multi-service 6"),
    P(neutral(**DEV, services=["scheduler"]), {"factor": ("impact_scope", 3)},
      id="scope single service 3"),
    P(neutral(**DEV), {"factor": ("impact_scope", 1)}, id="scope single component 1"),
    # --- customer impact ----------------------------------------------------------------
    P(neutral(**DEV, customer_impact="all_customers"), {"factor": ("customer_impact", 10)},
      id="customers all 10"),
    P(neutral(**DEV, customer_impact="customer_segment"), {"factor": ("customer_impact", 7)},
      id="customers segment 7"),
    P(neutral(**DEV, customer_impact="internal_users"), {"factor": ("customer_impact", 3)},
      id="customers internal 3"),
    P(neutral(**DEV, customer_impact="no_users"), {"factor": ("customer_impact", 0)},
      id="customers none 0"),
    P(neutral(**DEV, customers_affected=20_000), {"factor": ("customer_impact", 10)},
      id="customers_affected > 10000 -> 10"),
    P(neutral(**DEV, customers_affected=5_000), {"factor": ("customer_impact", 7)},
      id="customers_affected > 1000 -> 7"),
    P(neutral(**DEV, customers_affected=10), {"factor": ("customer_impact", 3)},
      id="customers_affected > 0 -> 3"),
    # --- threshold edges (development: no environment minimum) --------------------------
    P(neutral(**DEV, reversibility="automated_rollback", data_types=["public"]),
      {"score": 5, "level": 0, "worker_type": "non-union"}, id="edge score 5 -> L0"),
    P(neutral(environment="test", services=["scheduler"], customer_impact="internal_users"),
      {"score": 6, "level": 2, "worker_type": "union"}, id="edge score 6 -> L2"),
    P(neutral(**DEV, reversibility="complex_rollback", data_types=["internal"],
              services=["worker", "scheduler"], customer_impact="internal_users"),
      {"score": 20, "level": 2}, id="edge score 20 -> L2"),
    P(neutral(**DEV, reversibility="complex_rollback", data_types=["internal_confidential"],
              services=["worker", "scheduler"], customer_impact="no_users"),
      {"score": 21, "level": 3}, id="edge score 21 -> L3"),
    P(neutral(**DEV, reversibility="irreversible", data_types=["internal_confidential"],
              regions=["us-east-1", "eu-west-1"], customer_impact="customer_segment"),
      {"score": 35, "level": 3}, id="edge score 35 -> L3"),
    P(neutral(**DEV, reversibility="irreversible", data_types=["internal_confidential"],
              components=["cache"], customer_impact="all_customers"),
      {"score": 36, "level": 4}, id="edge score 36 -> L4"),
    # --- minimums (hard requirements) ---------------------------------------------------
    P({"task": "Deploy scheduler v3", "environment": "production", "services": ["scheduler"],
      "customer_impact": "internal_users"},
      {"level": 2, "minimum": "minimum.environment.production"},
      id="production deploy -> L2 minimum"),
    P(neutral(environment="production", reversibility="fully_reversible",
              customer_impact="no_users"),
      {"level": 2, "score": 13, "minimum": "minimum.environment.production"},
      id="production is never non-union (C-8)"),
    P(neutral(environment="production_critical"),
      {"level": 3, "minimum": "minimum.environment.production_critical"},
      id="production_critical -> L3"),
    P(neutral(environment="production", critical=True),
      {"minimum": "minimum.environment.production_critical"}, id="critical flag -> L3"),
    P(neutral(environment="production", regions=["us-east-1", "eu-west-1"]),
      {"level": 4, "minimum": "minimum.environment.multi_region_production"},
      id="multi-region production -> L4"),
    P({"task": "ALTER TABLE orders ADD COLUMN note", "environment": "test"},
      {"level": 3, "minimum": "minimum.operation.database_migration",
       "blocks": {"non_union.operation"}}, id="database migration in test -> L3 (C-29)"),
    P({"task": "terraform apply the new VPC", **DEV},
      {"minimum": "minimum.operation.infrastructure_change"}, id="terraform -> L3"),
    P({"task": "Open port 443 on the firewall", **DEV},
      {"minimum": "minimum.operation.security_operation"}, id="firewall -> L3"),
    P({"task": "DELETE FROM sessions WHERE expired", **DEV},
      {"minimum": "minimum.operation.data_deletion", "factor": ("reversibility", 10)},
      id="deletion -> L3 and irreversible"),
    P(neutral(environment="development", operations=["kubernetes"]),
      {"minimum": "minimum.operation.infrastructure_change"},
      id="operation name kubernetes -> L3"),
    P({"task": "Deploy web frontend", "environment": "production", "services": ["web"],
      "reversibility": "automated_rollback", "customer_impact": "internal_users"},
      {"level": 2, "minimum": "minimum.impact.customer_facing"},
      id="customer-facing production -> L2"),
    P(neutral(environment="production", components=["cache"]),
      {"level": 3, "minimum": "minimum.impact.system_wide"}, id="system-wide -> L3 (C-28)"),
    P(neutral(environment="production", services=["a", "b", "c"]),
      {"level": 3, "minimum": "minimum.impact.multi_service"}, id="three services -> L3"),
    P(neutral(**DEV, services=["web"]), {"level": 0, "no_min": 0},
      id="impact minimums do not apply in development"),
    # --- compliance frameworks ----------------------------------------------------------
    P(neutral(**DEV, compliance=["SOX"]), {"level": 4, "minimum": "minimum.compliance.SOX"},
      id="SOX -> L4 (C-25)"),
    P(neutral(**DEV, compliance=["HIPAA"]), {"level": 3, "role": "compliance_officer"},
      id="HIPAA -> L3 + compliance officer"),
    P(neutral(**DEV, compliance=["PCI-DSS"]), {"level": 3, "role": "security_lead"},
      id="PCI-DSS -> L3 + security lead"),
    P(neutral(**DEV, compliance=["GDPR"]), {"level": 3}, id="GDPR -> L3"),
    P(neutral(**DEV, compliance=["SOC 2"]), {"level": 2}, id="SOC 2 -> L2"),
    # --- level 1 (C-1) and staging (C-19) -----------------------------------------------
    P({"task": "Query error counts", "environment": "production", "operations": ["query"],
      "data_types": ["logs"], "customer_impact": "no_users"},
      {"level": 1, "minimum": "minimum.environment.production_read_only"},
      id="read-only production -> L1"),
    P({"task": "Read the staging dashboards", "environment": "staging", "operations": ["view"]},
      {"level": 1}, id="read-only staging -> L1"),
    P({"task": "Query customer emails", "environment": "production", "operations": ["query"]},
      {"level": 3}, id="read-only with PII -> L3"),
    P({"task": "Query and update the counters", "environment": "production",
      "operations": ["query"], "services": ["counter"], "customer_impact": "no_users",
      "reversibility": "automated_rollback"}, {"level": 2},
      id="'read-only' that writes is not L1"),
    P(neutral(environment="staging", reversibility="fully_reversible", services=["x"],
              customer_impact="no_users"),
      {"level": 2, "minimum": "minimum.environment.staging", "blocks": {"non_union.staging"}},
      id="staging is closed to non-union (C-19)"),
    # --- environment detection ----------------------------------------------------------
    P(neutral(env_vars={"NODE_ENV": "production"}), {"env": "production"},
      id="env var NODE_ENV=production"),
    P(neutral(env_vars=["ENV=prod"]), {"env": "production"}, id="env var list ENV=prod"),
    P(neutral(hostname="api.example.com"), {"env": "production"}, id="hostname api.*"),
    P(neutral(hostname="orders.prod.internal"), {"env": "production"}, id="hostname *.prod.*"),
    P(neutral(namespace="default"), {"env": "production"}, id="k8s namespace default"),
    P(neutral(branch="main"), {"env": "production"}, id="branch main"),
    P(neutral(branch="release/1.2"), {"env": "production"}, id="branch release/*"),
    P(neutral(branch="feature/login"), {"env": "development", "level": 0},
      id="branch feature/* -> development"),
    P(neutral(hostname="localhost"), {"env": "local"}, id="hostname localhost"),
    P(neutral(paths=["/tmp/scratch/file.py"]), {"env": "development"}, id="path /tmp/"),
    P(neutral(tags={"Environment": "production"}), {"env": "production"},
      id="tag Environment:production"),
    P(neutral(production=True), {"env": "production"}, id="flag production=true"),
    P(neutral(environment="development", env_vars={"NODE_ENV": "production"}),
      {"env": "production", "minimum": "minimum.environment.production"},
      id="label dev vs prod env var -> production"),
    P(neutral(), {"env": "production", "level": 3}, id="nothing stated -> production assumed"),
    P(neutral(environment="moon"), {"env": "production"}, id="unknown label -> conservative"),
    P({"task": "Deploy the thing to staging"}, {"env": "staging"}, id="free text staging"),
    # --- hard blocks --------------------------------------------------------------------
    P(neutral(**DEV), {"blocks": set(), "level": 0}, id="plain dev work has no hard block"),
    P(neutral(**DEV, data_types=["ssn"]), {"blocks": {"non_union.sensitive_data"}},
      id="sensitive data hard block"),
    P(neutral(environment="production"), {"blocks": {"non_union.production"}},
      id="production hard block"),
    # --- the seed README's four examples (C-21: levels, not scores) ---------------------
    P({"task": "Implement user profile feature", "environment": "development",
      "risk_score": 2, "decision": "non-union", "approval": "instant", "duration": "30 minutes"},
      {"level": 0, "score": 2, "worker_type": "non-union"}, id="README example 1"),
    P({"task": "Deploy API v2.1 to production", "environment": "production", "risk_score": 18,
      "decision": "level_2_union", "approval": "1 manager, 24hrs max", "duration": "2 hours"},
      {"level": 2}, id="README example 2"),
    P({"task": "Migrate customer data schema", "environment": "production",
      "data": "customer_pii", "risk_score": 32, "decision": "level_3_union",
      "requires": ["security_review", "tested_rollback"]}, {"level": 3}, id="README example 3"),
    P({"task": "Deploy new data center region", "environment": "production_multi_region",
      "risk_score": 45, "decision": "level_4_union",
      "requires": ["architecture_review", "disaster_recovery_tested"]},
      {"level": 4}, id="README example 4"),
]


@pytest.mark.parametrize(("task", "expect"), SCENARIOS)
def test_scenario(task, expect):
    decision = decide(task, default_policy())
    d = decision.decided
    factors = {f.factor: f.points for f in d.factors}
    rules = {m.rule for m in d.minimums}
    if "level" in expect:
        assert d.level == expect["level"], decision.explanation
    if "score" in expect:
        assert d.score == expect["score"], decision.explanation
    if "factor" in expect:
        name, points = expect["factor"]
        assert factors[name] == points, decision.explanation
    if "minimum" in expect:
        assert expect["minimum"] in rules, decision.explanation
    if "no_min" in expect:
        assert all(m.level <= expect["no_min"] for m in d.minimums), decision.explanation
    if "env" in expect:
        assert d.environment == expect["env"], decision.explanation
    if "worker_type" in expect:
        assert d.worker_type == expect["worker_type"]
    if "blocks" in expect:
        assert set(d.hard_blocks) == expect["blocks"], decision.explanation
    if "role" in expect:
        assert expect["role"] in d.approver_roles


def test_every_decision_payload_validates_against_its_model():
    """The checker builds its payload without re-validation; prove each one is valid."""
    from events.payloads import CertificationDecided

    policy = default_policy()
    for param in SCENARIOS:
        payload = decide(param.values[0], policy, memo=False).decided.model_dump(mode="json")
        assert CertificationDecided.model_validate(payload).model_dump(mode="json") == payload


def test_scenario_table_is_large_enough():
    assert len(SCENARIOS) >= 60


@pytest.mark.parametrize(("level", "approvals", "hours", "cab"), [
    (0, 0, 0, False), (2, 1, 24, False), (3, 2, 48, False), (4, 3, 168, True)])
def test_level_names_its_approvals(level, approvals, hours, cab):
    examples = {0: neutral(**DEV), 2: neutral(environment="production", customer_impact="no_users",
                                               reversibility="automated_rollback"),
                3: neutral(environment="production_critical"),
                4: neutral(environment="production_multi_region")}
    d = decide(examples[level], default_policy()).decided
    assert (d.level, d.approvals_required, d.approval_time_limit_hours,
            d.change_advisory_board) == (level, approvals, hours, cab)


def test_final_level_never_below_a_triggered_minimum():
    policy = default_policy()
    for param in SCENARIOS:
        d = decide(param.values[0], policy).decided
        assert d.level >= max((m.level for m in d.minimums), default=0)
        assert d.level >= d.score_level or d.level == 1


def test_every_decision_names_the_policy_and_explains_each_factor():
    policy = default_policy()
    decision = decide(neutral(environment="production"), policy)
    report = decision.to_report()
    assert report["policy"] == {"version": policy.version, "sha256": policy.sha256}
    assert len(policy.sha256) == 64
    assert set(report["risk_score"]["factors"]) == {
        "environment", "reversibility", "data_sensitivity", "impact_scope", "customer_impact"}
    assert all(f["rule"].startswith("factors.") for f in report["risk_score"]["factors"].values())
    assert f"level {decision.decided.level} = max(score band" in report["explanation"][-1 - len(
        decision.decided.uncertainties)]


def test_unknown_fields_are_kept_not_fatal():
    decision = decide(neutral(**DEV, ticket="OPS-1", owner={"team": "x"}), default_policy())
    assert decision.facts.extra_fields == ["owner", "ticket"]


def test_uncertainty_is_said_out_loud():
    d = decide(neutral(), default_policy()).decided
    assert any("assumed production" in note for note in d.uncertainties)
    assert d.environment_confidence == 0.0


@pytest.mark.parametrize(("task", "where"), [
    P({"task": "x", "environment": 42}, "task.environment", id="environment number"),
    P({"task": "x", "services": {"a": 1}}, "task.services", id="services object"),
    P({"task": "x", "customers_affected": "many"}, "task.customers_affected", id="customers"),
    P({"task": "x", "production": "yes"}, "task.production", id="flag not boolean"),
    P(["not", "an", "object"], "task", id="not an object"),
])
def test_malformed_task_names_the_field(task, where):
    with pytest.raises(InputError) as caught:
        decide(task, default_policy())
    assert caught.value.message.startswith(where)
