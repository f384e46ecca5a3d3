"""The certification checker: task facts + policy -> a decision that explains itself.

Final level = max(score band, every triggered minimum) (C-6); Level 1 only for read-only work in
staging/production (C-1); the non-union hard blocks are reported whenever they apply.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from events.payloads import CertificationDecided, FactorScore, MinimumTriggered
from rules.detect import Findings, detect
from rules.policy import Policy
from rules.scoring_model import SENSITIVE_CATEGORIES
from rules.task_facts import (
    IDENTITY_FIELDS,
    TaskFacts,
    frozen_instance,
    read_task,
    task_identity,
)

REVERSIBILITY_LABELS = {
    "irreversible": "irreversible", "none": "irreversible",
    "complex_rollback": "complex_rollback", "complex": "complex_rollback",
    "manual_rollback": "complex_rollback", "manual": "complex_rollback",
    "backup_restore": "complex_rollback",
    "automated_rollback": "automated_rollback", "automated": "automated_rollback",
    "auto": "automated_rollback", "blue_green": "automated_rollback",
    "canary": "automated_rollback",
    "fully_reversible": "fully_reversible", "full": "fully_reversible",
    "reversible": "fully_reversible",
}
CUSTOMER_LABELS = {
    "all_customers": "all_customers", "all": "all_customers",
    "customer_segment": "customer_segment", "segment": "customer_segment",
    "subset": "customer_segment", "some": "customer_segment",
    "internal_users": "internal_users", "internal": "internal_users",
    "no_users": "no_users", "none": "no_users",
}


_PAYLOAD_LISTS = ("hard_blocks", "approver_roles", "required_artefacts", "audit_fields",
                  "compliance_frameworks", "uncertainties")


@dataclass(frozen=True)
class Decision:
    """The decision event payload plus what only the CLI/HTTP answer shows.

    `payload` is the `certification.decided` payload as plain JSON data, built in the hot path;
    `decided` is the same payload as its pydantic model, made only when someone asks for it.
    """

    payload: dict[str, Any]
    facts: TaskFacts
    findings: Findings
    hard_block_messages: list[dict[str, str]]
    permit_type: str | None
    tokens: int
    time_limit_minutes: int
    level_rule: str

    @cached_property
    def decided(self) -> CertificationDecided:
        # Built from validated policy data and our own arithmetic: not re-validated (the
        # golden-corpus test validates every payload against the model).
        payload = self.payload
        return CertificationDecided.model_construct(**{
            **payload,
            "factors": [FactorScore.model_construct(**f) for f in payload["factors"]],
            "minimums": [MinimumTriggered.model_construct(**m) for m in payload["minimums"]]})

    def payload_json(self) -> dict[str, Any]:
        """`decided.model_dump(mode="json")` without the models: a fresh copy of the payload
        (no list shared with this decision or a remembered one), equal to it (golden test)."""
        p = self.payload
        copy = dict(p)
        copy["factors"] = [{**f, "evidence": list(f["evidence"])} for f in p["factors"]]
        copy["minimums"] = [{**m, "evidence": list(m["evidence"])} for m in p["minimums"]]
        for name in _PAYLOAD_LISTS:
            copy[name] = list(p[name])
        return copy

    @property
    def explanation(self) -> list[str]:
        """The decision in sentences: each factor's points and rule, the band, each minimum."""
        d = self.payload
        lines = [f"{f['factor']}: {f['points']} points ({f['value']}) by {f['rule']}"
                 + (f" from {', '.join(f['evidence'])}" if f["evidence"] else "")
                 for f in d["factors"]]
        lines.append(f"score {d['score']}/50 -> band L{d['score_level']} ({d['risk_level']})")
        lines += [f"minimum L{m['level']} by {m['rule']}: {m['reason']} "
                  f"({', '.join(m['evidence'])})" for m in d["minimums"]]
        lines.append(f"level {d['level']} = {self.level_rule}")
        lines += [f"note: {n}" for n in d["uncertainties"]]
        return lines

    def for_task(self, task_id: str) -> Decision:
        """The same decision for another task with the same content."""
        if task_id == self.payload["task_id"]:
            return self
        fields = {name: value for name, value in vars(self).items()
                  if name != "decided"}  # the cached model names the other task
        fields["payload"] = {**self.payload, "task_id": task_id}
        fields["facts"] = frozen_instance(TaskFacts, {**vars(self.facts), "task_id": task_id})
        return frozen_instance(Decision, fields)

    def to_report(self) -> dict[str, Any]:
        """The `certify check` JSON, keeping the seed's paths for masters' scripts."""
        d = self.payload
        env = self.findings.environment
        return {
            "task_id": d["task_id"],
            "certification_decision": {
                "worker_type": d["worker_type"],
                "certification_level_required": d["level"],
                "approvals_required": d["approvals_required"],
                "approver_roles": d["approver_roles"],
                "approval_time_limit_hours": d["approval_time_limit_hours"],
                "change_advisory_board": d["change_advisory_board"],
                "hard_blocks": self.hard_block_messages,
                "required_artefacts": d["required_artefacts"],
                "permit_type": self.permit_type,
                "risk_level": d["risk_level"],
                "token_allocation": self.tokens,
                "time_limit_minutes": self.time_limit_minutes,
            },
            "risk_score": {
                "total": d["score"],
                "score_level": d["score_level"],
                "factors": {f["factor"]: {**f, "evidence": list(f["evidence"])}
                            for f in d["factors"]},
            },
            "minimums": [{**m, "evidence": list(m["evidence"])} for m in d["minimums"]],
            "analysis": {
                "environment": {"detected": env.environment, "critical": env.critical,
                                "confidence": env.confidence,
                                "signals": [s.evidence for s in env.signals]},
                "data_sensitivity": self.findings.data,
                "operations": self.findings.operations,
                "read_only": self.findings.read_only,
                "customer_facing": self.findings.customer_facing,
                "system_wide": self.findings.system_wide,
                "compliance": self.findings.frameworks,
            },
            "audit": {"fields": d["audit_fields"], "retention_days": d["retention_days"],
                      "retention_class": d["retention_class"]},
            "compliance_frameworks": d["compliance_frameworks"],
            "uncertainties": d["uncertainties"],
            "unknown_fields_kept": self.facts.extra_fields,
            "explanation": self.explanation,
            "policy": {"version": d["policy_version"], "sha256": d["policy_sha256"]},
        }


def _whole(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


@dataclass(frozen=True)
class LevelTable:
    """What a level brings, whatever the task: its gate, audit and allocation."""

    approvals_required: int
    approver_roles: tuple[str, ...]
    approval_time_limit_hours: int | float
    change_advisory_board: bool
    required_artefacts: tuple[str, ...]
    audit_fields: tuple[str, ...]
    retention_days: int
    permit_type: str | None
    tokens: int
    time_limit_minutes: int


@dataclass(frozen=True)
class CheckerTables:
    """Everything the checker reads from one policy, looked up once instead of per decision."""

    factor_points: dict[str, dict[str, int]]
    bands: tuple[tuple[int, str], ...]  # score -> (band level, risk level), for 0..50
    levels: dict[int, LevelTable]
    retention_class: dict[int, str]  # days -> the first class of that many days
    compliance: dict[str, Any]
    operation_minimums: dict[str, tuple[int, str]]  # category -> (level, reason), when set
    operation_extra_approvers: dict[str, tuple[str, ...]]
    hard_block_messages: dict[str, str]


def _level_table(policy: Policy, level: int) -> LevelTable | None:
    gov = policy.governance
    try:
        gate, audit, allocation = gov.gate(level), gov.audit_for(level), gov.allocation(level)
    except KeyError:
        return None  # a level this policy lacks: decide() asks again and raises as it always did
    return LevelTable(
        approvals_required=gate.approvers_required, approver_roles=tuple(gate.approver_roles),
        approval_time_limit_hours=_whole(gate.max_hours),
        change_advisory_board=gate.change_advisory_board,
        required_artefacts=tuple(gate.required_artefacts), audit_fields=tuple(audit.fields),
        retention_days=audit.retention_days, permit_type=gate.permit_type,
        tokens=allocation.tokens, time_limit_minutes=allocation.time_limit_minutes)


def _build_tables(policy: Policy) -> CheckerTables:
    scoring, gov = policy.scoring, policy.governance
    factors = scoring.factors
    retention_class: dict[int, str] = {}
    for name, days in gov.retention_classes.items():
        retention_class.setdefault(days, name)
    bands = []
    for score in range(51):
        try:
            band = scoring.band(score)
        except ValueError:
            bands.append(None)
        else:
            bands.append((band.level, band.risk_level))
    return CheckerTables(
        factor_points={name: dict(getattr(factors, name)) for name in (
            "environment", "reversibility", "data_sensitivity", "impact_scope",
            "customer_impact")},
        bands=tuple(bands),
        levels={level: table for level in range(5)
                if (table := _level_table(policy, level)) is not None},
        retention_class=retention_class,
        compliance=dict(gov.compliance),
        operation_minimums={name: (rules.minimum, rules.reason)
                            for name, rules in scoring.operations.items()
                            if rules.minimum is not None},
        operation_extra_approvers={op: tuple(roles) for op, roles
                                   in gov.operation_extra_approvers.items()},
        hard_block_messages={name: text.message for name, text in scoring.hard_blocks.items()},
    )


_tables: dict[int, tuple[Policy, CheckerTables]] = {}
_last_tables: tuple[Any, Any] = (None, None)


def tables_for(policy: Policy) -> CheckerTables:
    """The policy's tables, built on first use (policies are immutable; a handful per process)."""
    last = _last_tables  # the one asked for last: one identity test, no id() and lookup
    if last[0] is policy:
        return last[1]
    found = _tables.get(id(policy))
    if found is None or found[0] is not policy:
        if len(_tables) >= 8:
            _tables.clear()
        found = (policy, _build_tables(policy))
        _tables[id(policy)] = found  # holding the policy keeps its id from being reused
    _remember_tables(found)
    return found[1]


def _remember_tables(found: tuple[Policy, CheckerTables]) -> None:
    global _last_tables  # a one-entry cache in front of _tables
    _last_tables = found


def _factor(points: dict[str, int], factor: str, value: str, rule_suffix: str,
            evidence: list[str]) -> dict[str, Any]:
    """One factor's score as its payload entry (FactorScore's fields, in its order)."""
    return {"factor": factor, "points": points[value], "value": value,
            "rule": f"factors.{factor}.{value}{rule_suffix}", "evidence": evidence}


def _score_reversibility(t: CheckerTables, facts: TaskFacts, f: Findings, notes: list[str]
                         ) -> dict[str, Any]:
    candidates: list[tuple[str, str, list[str]]] = []  # (value, rule suffix, evidence)
    if facts.flags and facts.flags.get("irreversible"):
        candidates.append(("irreversible", "", ["flag irreversible=true"]))
    if facts.reversibility_label or facts.rollback_strategy:
        for label, where in ((facts.reversibility_label, "reversibility"),
                             (facts.rollback_strategy, "rollback strategy")):
            if label:
                value = REVERSIBILITY_LABELS.get(label.replace("-", "_"))
                if value is None:
                    notes.append(f"{where} '{label}' not recognised; ignored")
                else:
                    candidates.append((value, "", [f"{where} '{label}'"]))
    operations = f.operations
    if operations:
        if "data_deletion" in operations:
            candidates.append(("irreversible", " (deletion)", operations["data_deletion"]))
        if "database_migration" in operations:
            candidates.append(("complex_rollback", " (migration)",
                               operations["database_migration"]))
    if not candidates:
        env = f.environment.environment
        if f.read_only:
            candidates.append(("fully_reversible", " (read-only)", ["read-only operations"]))
        elif f.deploys:
            candidates.append(("automated_rollback", " (deployment default)", f.deploys[:2]))
        elif env in ("development", "test", "local"):
            candidates.append(("fully_reversible", " (isolated environment)", [env]))
        else:
            notes.append("reversibility not stated; scored as complex rollback (conservative)")
            candidates.append(("complex_rollback", " (assumed)", ["not stated"]))
    table = t.factor_points["reversibility"]
    value, suffix, evidence = (candidates[0] if len(candidates) == 1 else
                               max(candidates, key=lambda c: table[c[0]]))  # worst claim wins
    return _factor(table, "reversibility", value, suffix, evidence)


def _score_data(t: CheckerTables, f: Findings, notes: list[str]) -> dict[str, Any]:
    table = t.factor_points["data_sensitivity"]
    found = f.data
    if f.unknown_data_types:
        found = dict(found)
        # Extends the finding's own "internal" list when there is one, so the report's
        # analysis lists the unrecognised types there too (as it always has).
        found.setdefault("internal", []).extend(f"'{d}' (unrecognised)"
                                                for d in f.unknown_data_types)
    if not found:
        if f.environment.environment == "production":
            notes.append("no data classes stated or detected; scored as public")
        return _factor(table, "data_sensitivity", "public", " (none detected)", [])
    worst = (next(iter(found)) if len(found) == 1 else
             max(found, key=lambda c: table[c]))  # C-4: capped at the worst category's 10
    return _factor(table, "data_sensitivity", worst, "", found[worst][:5])


def _scope_value(policy: Policy, facts: TaskFacts, f: Findings, notes: list[str]
                 ) -> tuple[str, str, list[str]]:
    impact = policy.scoring.impact
    if len(facts.regions) >= impact.multi_region_minimum_regions:
        return "multi_region", "", [f"regions {', '.join(facts.regions)}"]
    if f.environment.multi_region_label:
        return "multi_region", "", [f"environment '{facts.environment_label}'"]
    if f.system_wide:
        return "system_wide", "", f.system_wide
    if len(facts.services) >= 2:
        return "multi_service", "", [f"{len(facts.services)} services"]
    if facts.services or f.customer_facing:
        return "single_service", "", (facts.services or f.customer_facing)[:3]
    if facts.components:
        return "single_component", "", facts.components[:3]
    if f.environment.environment in ("production", "staging"):
        notes.append("services not stated; scored as a single service")
        return "single_service", " (assumed)", ["not stated"]
    return "single_component", "", facts.components[:3] or ["no services named"]


def _customer_value(policy: Policy, t: CheckerTables, facts: TaskFacts, f: Findings,
                    notes: list[str]) -> tuple[str, str, list[str]]:
    impact = policy.scoring.impact
    candidates: list[tuple[str, str, list[str]]] = []
    if facts.customer_impact_label:
        value = CUSTOMER_LABELS.get(facts.customer_impact_label.replace("-", "_"))
        if value is None:
            notes.append(f"customer impact '{facts.customer_impact_label}' not recognised")
        else:
            candidates.append((value, "", [f"customer impact '{facts.customer_impact_label}'"]))
    count = facts.customers_affected
    if count is not None:
        value = ("all_customers" if count > impact.customers_all else
                 "customer_segment" if count > impact.customers_segment else
                 "internal_users" if count > 0 else "no_users")
        candidates.append((value, " (customers_affected)", [f"customers_affected {count}"]))
    if facts.flags and facts.flags.get("customer_facing"):
        candidates.append(("customer_segment", " (customer-facing)", ["flag customer_facing"]))
    if candidates:
        table = t.factor_points["customer_impact"]
        return max(candidates, key=lambda c: table[c[0]])
    if f.environment.environment in ("production", "staging"):
        notes.append("customer impact not stated; scored as internal users")
        return "internal_users", " (assumed)", ["not stated"]
    return "no_users", " (isolated environment)", [f.environment.environment]


def _add_minimum(out: list[dict[str, Any]], rule: str, level: int, reason: str,
                 evidence: list[str]) -> None:
    out.append({"rule": rule, "level": level, "reason": reason, "evidence": evidence[:5]})


def _minimums(policy: Policy, t: CheckerTables, facts: TaskFacts, f: Findings,
              sensitive_found: list[str]) -> list[dict[str, Any]]:
    """Each triggered minimum as its payload entry (MinimumTriggered's fields, in its order)."""
    m = policy.scoring.minimums
    env = f.environment.environment
    out: list[dict[str, Any]] = []
    add = _add_minimum
    live = env in ("production", "staging")
    if env == "production":
        if f.read_only:
            add(out, "minimum.environment.production_read_only", m.production_read_only,
                "Read-only production work needs a certified (Level 1) worker (C-1)", [env])
        else:
            add(out, "minimum.environment.production", m.production,
                "All production operations require certified workers", [env])
        if f.environment.critical:
            add(out, "minimum.environment.production_critical", m.production_critical,
                "Critical production systems require advanced certification",
                ["critical production"])
        if (len(facts.regions) >= policy.scoring.impact.multi_region_minimum_regions
                or f.environment.multi_region_label):
            add(out, "minimum.environment.multi_region_production", m.multi_region_production,
                "Multi-region deployments require master certification",
                facts.regions or [str(facts.environment_label)])
    elif env == "staging":
        add(out, "minimum.environment.staging", m.staging,
            "Staging is closed to non-union workers (C-19)", [env])
    for category in sensitive_found:  # C-29: everywhere
        add(out, f"minimum.data.{category}", m.sensitive_data,
            f"{category.upper()} data requires advanced certification", f.data[category])
    for category, evidence in f.operations.items():
        rule = t.operation_minimums.get(category)
        if rule is not None:
            add(out, f"minimum.operation.{category}", rule[0], rule[1], evidence)
    if live:
        if f.customer_facing:
            add(out, "minimum.impact.customer_facing", m.customer_facing,
                "Customer-facing changes require certification", f.customer_facing)
        if f.system_wide:
            add(out, "minimum.impact.system_wide", m.system_wide,
                "System-wide changes affect the entire platform (C-28)", f.system_wide)
        if len(facts.services) >= policy.scoring.impact.multi_service_minimum_services:
            add(out, "minimum.impact.multi_service", m.multi_service,
                "Coordinated changes across services are complex", facts.services)
    for name, evidence in f.frameworks.items():
        framework = t.compliance[name]
        add(out, f"minimum.compliance.{name}", framework.min_level,
            f"{name} work requires Level {framework.min_level}+", evidence)
    return out


def _hard_blocks(t: CheckerTables, f: Findings, sensitive_found: list[str],
                 minimums: list[dict[str, Any]]) -> list[dict[str, str]]:
    texts = t.hard_block_messages
    blocks = []
    env = f.environment.environment
    if env == "production":
        blocks.append({"rule": "non_union.production", "message": texts["production"]})
    if env == "staging" and "staging" in texts:
        blocks.append({"rule": "non_union.staging", "message": texts["staging"]})
    if sensitive_found:
        blocks.append({"rule": "non_union.sensitive_data", "message": texts["sensitive_data"]})
    if f.operations and not t.operation_minimums.keys().isdisjoint(f.operations):
        # an operation minimum was triggered (_minimums adds one for each such category)
        blocks.append({"rule": "non_union.operation", "message": texts["operation"]})
    return blocks


MEMO_SIZE = 20_000
_memo: OrderedDict[tuple[str, str], Decision] = OrderedDict()


def _content_key(task: Any) -> str | None:
    """The task minus who/which-one fields: equal keys certify identically (decide is pure)."""
    if not isinstance(task, dict):
        return None
    try:
        return json.dumps({k: v for k, v in task.items() if k not in IDENTITY_FIELDS},
                          sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def decide(task: Any, policy: Policy, task_id: str | None = None, *, memo: bool = True
           ) -> Decision:
    """Certify one task document. Raises events.InputError on malformed input.

    Decisions are memoised by (policy hash, task content without identity fields): masters
    send the same task shapes over and over, and the answer cannot differ between them.
    """
    key = _content_key(task) if memo else None
    if key is not None:
        cached = _memo.get((policy.sha256, key))
        if cached is not None:
            _memo.move_to_end((policy.sha256, key))
            return cached.for_task(task_id or task_identity(task))
    decision = _decide(task, policy, task_id)
    if key is not None:
        _memo[(policy.sha256, key)] = decision
        if len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return decision


def _decide(task: Any, policy: Policy, task_id: str | None) -> Decision:
    facts = read_task(task, task_id)
    t = tables_for(policy)
    findings = detect(facts, policy.scoring, policy.framework_text, policy.framework_aliases)
    notes = [*findings.environment.notes, *findings.notes]

    env = findings.environment
    environment = env.environment
    factors = [
        {"factor": "environment", "points": t.factor_points["environment"][environment],
         "value": environment, "rule": f"factors.environment.{environment}",
         "evidence": [s.evidence for s in env.signals][:5] or ["assumed"]},
        _score_reversibility(t, facts, findings, notes),
        _score_data(t, findings, notes),
        _factor(t.factor_points["impact_scope"], "impact_scope",
                *_scope_value(policy, facts, findings, notes)),
        _factor(t.factor_points["customer_impact"], "customer_impact",
                *_customer_value(policy, t, facts, findings, notes)),
    ]
    score = (factors[0]["points"] + factors[1]["points"] + factors[2]["points"]
             + factors[3]["points"] + factors[4]["points"])
    band = t.bands[score] if 0 <= score <= 50 else None
    if band is None:
        policy.scoring.band(score)  # raises the policy's own error for a score outside every band
    band_level, risk_level = band
    data = findings.data
    sensitive_found = [c for c in SENSITIVE_CATEGORIES if c in data] if data else []
    minimums = _minimums(policy, t, facts, findings, sensitive_found)
    highest_minimum = 0
    for minimum in minimums:
        if minimum["level"] > highest_minimum:  # noqa: PLR1730 (no call per minimum)
            highest_minimum = minimum["level"]
    level = max(band_level, highest_minimum)
    level_rule = f"max(score band L{band_level}, minimums L{highest_minimum})"
    if findings.read_only and level == 2 and band_level == 2 and highest_minimum <= 1 \
            and findings.environment.environment in ("production", "staging"):
        level = 1
        level_rule = "read-only work in staging/production with no higher minimum -> L1 (C-1)"

    at_level = t.levels.get(level)
    if at_level is None:  # a level the policy lacks: its own lookups raise their own errors
        gov = policy.governance
        gov.gate(level), gov.audit_for(level), gov.allocation(level)
        raise KeyError(level)
    roles = list(at_level.approver_roles)
    artefacts = list(at_level.required_artefacts)
    retention = at_level.retention_days
    frameworks = findings.frameworks
    if frameworks or (level >= 2 and findings.operations):
        extra_roles = [r for name in frameworks for r in t.compliance[name].extra_approver_roles]
        if level >= 2:  # operation-specific approvers join union approvals (permit-workflow)
            extra_roles += [r for op in findings.operations
                            for r in t.operation_extra_approvers.get(op, ())]
        roles += [r for r in dict.fromkeys(extra_roles) if r not in roles]
        artefacts += [a for name in frameworks
                      for a in t.compliance[name].required_artefacts if a not in artefacts]
        for name in frameworks:  # C-9: the longest retention that applies
            retention = max(retention, t.compliance[name].retention_days)
    retention_class = t.retention_class.get(retention) or f"retain-{retention}d"
    hard_blocks = _hard_blocks(t, findings, sensitive_found, minimums)
    permit_type = at_level.permit_type
    if permit_type and level >= 3 and "data_deletion" in findings.operations:
        permit_type = "destructive"

    confidence = findings.environment.confidence
    payload = {  # CertificationDecided's fields, in its order
        "task_id": facts.task_id,
        "worker_type": "non-union" if level == 0 else "union",
        "level": level, "score": score, "score_level": band_level, "risk_level": risk_level,
        "factors": factors, "minimums": minimums,
        "hard_blocks": [b["rule"] for b in hard_blocks] if hard_blocks else [],
        "approvals_required": at_level.approvals_required, "approver_roles": roles,
        "approval_time_limit_hours": at_level.approval_time_limit_hours,
        "change_advisory_board": at_level.change_advisory_board,
        "required_artefacts": artefacts, "audit_fields": list(at_level.audit_fields),
        "retention_days": retention, "retention_class": retention_class,
        "compliance_frameworks": sorted(frameworks),
        "environment": findings.environment.environment,
        "environment_confidence": (int(confidence) if confidence.__class__ is float
                                   and confidence.is_integer() else _whole(confidence)),
        "uncertainties": notes, "policy_version": policy.version,
        "policy_sha256": policy.sha256,
    }
    return frozen_instance(Decision, {
        "payload": payload, "facts": facts, "findings": findings,
        "hard_block_messages": hard_blocks, "permit_type": permit_type,
        "tokens": at_level.tokens, "time_limit_minutes": at_level.time_limit_minutes,
        "level_rule": level_rule})
