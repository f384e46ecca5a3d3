"""The shipped governance policy loads, matches the fact sheet, and nonsense is refused."""

import copy
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from rules.governance import Governance, Resolutions

POLICY = Path(__file__).resolve().parents[1] / "rules" / "policy"
GOV_RAW = tomllib.loads((POLICY / "governance.toml").read_text())
RES_RAW = tomllib.loads((POLICY / "resolutions.toml").read_text())


@pytest.fixture(scope="module")
def gov() -> Governance:
    return Governance.model_validate(GOV_RAW)


@pytest.fixture(scope="module")
def res() -> Resolutions:
    return Resolutions.model_validate(RES_RAW)


# --- key numbers, table-driven (certification-facts.md sections 2, 9, 10, 11, 12) -----------

@pytest.mark.parametrize(
    "level, approvers, max_hours, cab, auto, retention, tokens, extended, minutes, concurrent",
    [
        (0, 0, 0, False, True, 30, 10_000, 25_000, 45, 3),
        (1, 1, 4, False, True, 90, 15_000, 30_000, 60, 5),
        (2, 1, 24, False, False, 365, 25_000, 50_000, 120, 8),
        (3, 2, 48, False, False, 2555, 40_000, 75_000, 240, 12),
        (4, 3, 168, True, False, 2555, 75_000, 75_000, 480, 20),
    ],
)
def test_per_level_table(gov, level, approvers, max_hours, cab, auto, retention, tokens,
                         extended, minutes, concurrent):
    gate, audit, alloc = gov.gate(level), gov.audit_for(level), gov.allocation(level)
    assert (gate.approvers_required, gate.max_hours) == (approvers, max_hours)
    assert (gate.change_advisory_board, gate.can_auto_approve) == (cab, auto)
    assert audit.retention_days == retention
    assert (alloc.tokens, alloc.extended_tokens) == (tokens, extended)
    assert (alloc.time_limit_minutes, alloc.max_concurrent_tasks) == (minutes, concurrent)


@pytest.mark.parametrize("level, roles", [
    (1, {"team_lead", "senior_engineer"}),
    (2, {"engineering_manager", "tech_lead", "senior_engineer"}),
    (3, {"engineering_director", "security_lead", "architecture_lead"}),
    (4, {"vp_engineering", "cto", "ciso", "coo"}),
])
def test_approver_roles(gov, level, roles):
    assert set(gov.gate(level).approver_roles) == roles


def test_gate_artefacts(gov):
    assert set(gov.gate(2).required_artefacts) == {
        "test_results", "code_review", "documentation", "rollback_plan"}
    assert {"security_review", "rollback_tested"} <= set(gov.gate(3).required_artefacts)
    assert "rollback_rehearsed" not in gov.gate(3).required_artefacts
    assert {"rollback_rehearsed", "business_justification"} <= set(gov.gate(4).required_artefacts)
    assert gov.gate(3).synchronous_review and gov.gate(4).synchronous_review


@pytest.mark.parametrize("name, min_level, extra_roles, retention", [
    ("SOX", 4, set(), 2555),
    ("HIPAA", 3, {"compliance_officer"}, 2555),
    ("PCI_DSS", 3, {"security_lead"}, 365),
    ("GDPR", 3, set(), 2555),
    ("SOC2", 2, set(), 365),
])
def test_compliance(gov, name, min_level, extra_roles, retention):
    fw = gov.compliance[name]
    assert (fw.min_level, set(fw.extra_approver_roles), fw.retention_days) == (
        min_level, extra_roles, retention)
    assert all(k == k.lower() for k in fw.keywords)
    assert "data_protection_impact_assessment" in gov.compliance["GDPR"].required_artefacts


@pytest.mark.parametrize("pid, level, approvers, sla, default, maximum, renewable, renewals", [
    ("read_only", 1, 1, 4, 168, 720, True, 5),
    ("standard_production", 2, 1, 24, 24, 168, True, 6),
    ("advanced_production", 3, 2, 48, 8, 48, True, 5),
    ("master_production", 4, 3, 168, 4, 24, False, 0),
    ("emergency", 3, 1, 0.25, 1, 4, True, 3),
    ("destructive", 3, 3, 48, 2, 8, False, 0),
])
def test_permit_types(gov, pid, level, approvers, sla, default, maximum, renewable, renewals):
    p = gov.permit_type(pid)
    assert (p.level, p.approvers_required, p.approval_sla_hours) == (level, approvers, sla)
    assert (p.default_duration_hours, p.max_duration_hours) == (default, maximum)
    assert (p.renewable, p.max_renewals) == (renewable, renewals)


def test_permit_type_flags(gov):
    assert gov.permit_type("read_only").auto_approve_eligible
    assert gov.permit_type("master_production").change_advisory_board
    destructive = gov.permit_type("destructive")
    assert destructive.all_must_approve and destructive.sequential and destructive.single_use


def test_emergency_override(gov):
    e = gov.emergency
    assert (e.level, e.approval_max_minutes, e.duration_minutes) == (3, 15, 60)
    assert (e.max_renewals, e.max_total_minutes, e.post_incident_review_due_hours) == (3, 240, 24)
    assert e.automatic_revocation
    assert set(e.required) == {"incident_ticket", "real_time_oversight", "post_incident_review"}
    assert set(e.approver_roles) == {"incident_commander", "on_call_lead"}
    assert gov.emergency_audit.retention_days == 2555


@pytest.mark.parametrize("level, operation, sla", [
    (2, None, 30), (3, None, 15), (4, None, 10),
    (2, "configuration_change", 5),        # C-15: operation SLA stricter
    (3, "infrastructure_change", 15),      # C-15: level SLA stricter
    (3, "database_migration", 15),
    (2, "application_deployment", 10),
    (0, None, None),
])
def test_rollback_sla_is_the_stricter(gov, level, operation, sla):
    assert gov.rollback.effective_sla_minutes(level, operation) == sla


def test_rollback_rules(gov):
    rb = gov.rollback
    err = rb.trigger("error_rate_threshold")
    assert (err.threshold, err.sustained_seconds, err.automatic) == (0.01, 120, True)  # C-17
    assert rb.permit_threshold_overrides["max_error_rate"] == "error_rate_threshold"
    assert rb.trigger("consecutive_health_check_failures").consecutive == 3
    assert rb.trigger("latency_p50_threshold").alert_only
    assert rb.trigger("revenue_impact").approval == "executive"
    assert rb.level(2).automation_preferred == "fully_automated"  # C-14
    assert "manual" not in rb.level(4).automation_accepted and rb.level(4).human_gates
    assert rb.level(2).required_evidence == ("staging_test_date",)  # C-16
    assert "production_like_test_date" in rb.level(3).required_evidence
    assert "rehearsal_date" not in rb.level(3).required_evidence
    assert "rehearsal_date" in rb.level(4).required_evidence
    assert [s.timeout_minutes for s in rb.verification_escalation] == [5, 10, 15]


def test_retention_is_the_maximum_applicable(gov):  # C-9
    assert gov.retention_days(2) == 365
    assert gov.retention_days(2, frameworks=["HIPAA"]) == 2555
    assert gov.retention_days(0, rollback=True) == 365
    assert gov.retention_days(1, emergency=True) == 2555


def test_permit_lifecycle(gov):
    lc = gov.permit_lifecycle
    assert lc.expiry_warning_minutes == (30, 15, 5)
    assert (lc.grace_minutes, lc.in_progress_finish_minutes, lc.renewal_window_hours) == (5, 15, 2)
    path = ["submit", "approvals_complete", "issue", "start", "complete", "close"]
    state = lc.initial
    for event in path:
        state = lc.next_state(state, event)
    assert state == "closed"
    with pytest.raises(ValueError, match="not allowed"):
        lc.next_state("closed", "start")


def test_promotion_and_targets(gov):
    assert gov.promotion.automatic is False  # C-11
    steps = {(s.from_level, s.to_level): s.min_operations for s in gov.promotion.steps}
    assert steps[(2, 3)] == 10 and steps[(3, 4)] == 25  # C-24
    t = gov.metrics_targets
    assert (t.over_certification_rate_below, t.under_certification_rate_below) == (0.10, 0.01)
    assert t.safety_violations_max == 0


def test_resolutions_cover_c1_to_c29_once(res):
    assert [r.id for r in res.resolutions] == [f"C-{n}" for n in range(1, 30)]
    assert all("\n" not in r.reason for r in res.resolutions)
    assert "never an HMAC" in res.get("C-13").decision


def test_models_are_frozen(gov):
    with pytest.raises(ValidationError, match="frozen"):
        gov.gate(2).max_hours = 1


# --- broken variants are refused ------------------------------------------------------------

def _broken(mutate):
    raw = copy.deepcopy(GOV_RAW)
    mutate(raw)
    return raw


def _set(path, value):
    def mutate(raw):
        *parents, last = path
        for key in parents:
            raw = raw[key]
        raw[last] = value
    return mutate


BROKEN_GOVERNANCE = {
    "level missing": (lambda r: r["approval_gates"].pop(3), "levels \\[0, 1, 2, 3, 4\\]"),
    "level twice": (lambda r: r["audit"].append(copy.deepcopy(r["audit"][0])), "exactly once"),
    "level out of range": (_set(["allocations", 0, "level"], 5), "less than or equal to 4"),
    "negative retention": (_set(["audit", 2, "retention_days"], -1), "greater than 0"),
    "approvers exceed roles": (_set(["approval_gates", 3, "approvers_required"], 4),
                               "exceeds the 3 approver_roles"),
    "approvers without roles": (_set(["approval_gates", 2, "approver_roles"], []),
                                "approver_roles is empty"),
    "unknown top-level key": (_set(["surprise"], 1), "Extra inputs are not permitted"),
    "unknown nested key": (_set(["emergency", "duration_hours"], 1),
                           "Extra inputs are not permitted"),
    "negative count": (_set(["allocations", 1, "max_concurrent_tasks"], -3), "greater than 0"),
    "max below default": (_set(["permit_types", 1, "max_duration_hours"], 12),
                          "max_duration_hours < default_duration_hours"),
    "extended below default": (_set(["allocations", 2, "extended_tokens"], 1000),
                               "extended_tokens < tokens"),
    "missing framework": (lambda r: r["compliance"].pop("SOX"), "missing frameworks \\['SOX'\\]"),
    "missing permit type": (lambda r: r["permit_types"].pop(), "missing \\['destructive'\\]"),
    "retention class lies": (_set(["audit", 1, "retention_class"], "short-30d"),
                             "does not mean 90 days"),
    "retention shrinks": (_set(["audit", 4, "retention_days"], 365), "must not decrease"),
    "gate vs permit type": (_set(["approval_gates", 2, "max_hours"], 12), "disagrees"),
    "emergency never revoked": (_set(["emergency", "automatic_revocation"], False),
                                "Input should be True"),
    "emergency too long": (_set(["emergency", "duration_minutes"], 120), "max_total_minutes"),
    "auto promotion": (_set(["promotion", "automatic"], True), "Input should be False"),
    "trigger auto and approval": (_set(["rollback", "triggers", 0, "approval"], "manual"),
                                  "needs an approval"),
    "unknown override trigger": (_set(["rollback", "permit_threshold_overrides", "x"], "nope"),
                                 "unknown triggers"),
    "lifecycle unknown state": (_set(["permit_lifecycle", "transitions", 0, "to"], "limbo"),
                                "unknown state"),
    "lifecycle leaves terminal": (
        lambda r: r["permit_lifecycle"]["transitions"].append(
            {"from": "closed", "event": "reopen", "to": "issued"}),
        "terminal state"),
    "keyword upper-case": (_set(["compliance", "SOX", "keywords"], ["SOX"]), "pattern"),
}


@pytest.mark.parametrize("case", BROKEN_GOVERNANCE)
def test_broken_governance_is_refused(case):
    mutate, message = BROKEN_GOVERNANCE[case]
    with pytest.raises(ValidationError, match=message):
        Governance.model_validate(_broken(mutate))


def _res_broken(mutate):
    raw = copy.deepcopy(RES_RAW)
    mutate(raw["resolutions"])
    return raw


@pytest.mark.parametrize("mutate, message", [
    (lambda rs: rs.pop(6), "missing \\['C-7'\\]"),
    (lambda rs: rs.append(copy.deepcopy(rs[2])), "duplicate entries \\['C-3'\\]"),
    (lambda rs: rs.append({**rs[0], "id": "C-30"}), "unknown \\['C-30'\\]"),
    (lambda rs: rs[0].update(reason="two\nlines"), "pattern"),
    (lambda rs: rs[0].update(owner="lead"), "Extra inputs are not permitted"),
])
def test_broken_resolutions_are_refused(mutate, message):
    with pytest.raises(ValidationError, match=message):
        Resolutions.model_validate(_res_broken(mutate))
