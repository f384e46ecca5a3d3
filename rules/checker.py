"""The certification checker: task facts + policy -> a decision that explains itself.

Final level = max(score band, every triggered minimum) (C-6); Level 1 only for read-only work in
staging/production (C-1); the non-union hard blocks are reported whenever they apply.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from events.payloads import CertificationDecided, FactorScore, MinimumTriggered
from rules.detect import Findings, detect, sensitive
from rules.policy import Policy
from rules.task_facts import IDENTITY_FIELDS, TaskFacts, read_task, task_identity

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


@dataclass(frozen=True)
class Decision:
    """The decision event payload plus what only the CLI/HTTP answer shows."""

    decided: CertificationDecided
    facts: TaskFacts
    findings: Findings
    hard_block_messages: list[dict[str, str]]
    permit_type: str | None
    tokens: int
    time_limit_minutes: int
    level_rule: str

    @property
    def explanation(self) -> list[str]:
        """The decision in sentences: each factor's points and rule, the band, each minimum."""
        d = self.decided
        lines = [f"{f.factor}: {f.points} points ({f.value}) by {f.rule}"
                 + (f" from {', '.join(f.evidence)}" if f.evidence else "") for f in d.factors]
        lines.append(f"score {d.score}/50 -> band L{d.score_level} ({d.risk_level})")
        lines += [f"minimum L{m.level} by {m.rule}: {m.reason} ({', '.join(m.evidence)})"
                  for m in d.minimums]
        lines.append(f"level {d.level} = {self.level_rule}")
        lines += [f"note: {n}" for n in d.uncertainties]
        return lines

    def for_task(self, task_id: str) -> Decision:
        """The same decision for another task with the same content."""
        if task_id == self.decided.task_id:
            return self
        return replace(self, decided=self.decided.model_copy(update={"task_id": task_id}),
                       facts=replace(self.facts, task_id=task_id))

    def to_report(self) -> dict[str, Any]:
        """The `certify check` JSON, keeping the seed's paths for masters' scripts."""
        d = self.decided
        env = self.findings.environment
        return {
            "task_id": d.task_id,
            "certification_decision": {
                "worker_type": d.worker_type,
                "certification_level_required": d.level,
                "approvals_required": d.approvals_required,
                "approver_roles": d.approver_roles,
                "approval_time_limit_hours": d.approval_time_limit_hours,
                "change_advisory_board": d.change_advisory_board,
                "hard_blocks": self.hard_block_messages,
                "required_artefacts": d.required_artefacts,
                "permit_type": self.permit_type,
                "risk_level": d.risk_level,
                "token_allocation": self.tokens,
                "time_limit_minutes": self.time_limit_minutes,
            },
            "risk_score": {
                "total": d.score,
                "score_level": d.score_level,
                "factors": {f.factor: f.model_dump() for f in d.factors},
            },
            "minimums": [m.model_dump() for m in d.minimums],
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
            "audit": {"fields": d.audit_fields, "retention_days": d.retention_days,
                      "retention_class": d.retention_class},
            "compliance_frameworks": d.compliance_frameworks,
            "uncertainties": d.uncertainties,
            "unknown_fields_kept": self.facts.extra_fields,
            "explanation": self.explanation,
            "policy": {"version": d.policy_version, "sha256": d.policy_sha256},
        }


def _whole(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _factor(policy: Policy, factor: str, value: str, rule_suffix: str, evidence: list[str]
            ) -> FactorScore:
    points = getattr(policy.scoring.factors, factor)[value]
    return FactorScore.model_construct(factor=factor, points=points, value=value,
                                       rule=f"factors.{factor}.{value}{rule_suffix}",
                                       evidence=evidence)


def _score_environment(policy: Policy, f: Findings) -> FactorScore:
    env = f.environment
    return _factor(policy, "environment", env.environment, "",
                   [s.evidence for s in env.signals][:5] or ["assumed"])


def _score_reversibility(policy: Policy, facts: TaskFacts, f: Findings, notes: list[str]
                         ) -> FactorScore:
    candidates: list[tuple[str, str, list[str]]] = []  # (value, rule suffix, evidence)
    if facts.flags.get("irreversible"):
        candidates.append(("irreversible", "", ["flag irreversible=true"]))
    for label, where in ((facts.reversibility_label, "reversibility"),
                         (facts.rollback_strategy, "rollback strategy")):
        if label:
            value = REVERSIBILITY_LABELS.get(label.replace("-", "_"))
            if value is None:
                notes.append(f"{where} '{label}' not recognised; ignored")
            else:
                candidates.append((value, "", [f"{where} '{label}'"]))
    if "data_deletion" in f.operations:
        candidates.append(("irreversible", " (deletion)", f.operations["data_deletion"]))
    if "database_migration" in f.operations:
        candidates.append(("complex_rollback", " (migration)", f.operations["database_migration"]))
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
    table = policy.scoring.factors.reversibility
    value, suffix, evidence = max(candidates, key=lambda c: table[c[0]])  # worst claim wins
    return _factor(policy, "reversibility", value, suffix, evidence)


def _score_data(policy: Policy, f: Findings, notes: list[str]) -> FactorScore:
    table = policy.scoring.factors.data_sensitivity
    found = dict(f.data)
    if f.unknown_data_types:
        found.setdefault("internal", []).extend(f"'{d}' (unrecognised)"
                                                for d in f.unknown_data_types)
    if not found:
        if f.environment.environment == "production":
            notes.append("no data classes stated or detected; scored as public")
        return _factor(policy, "data_sensitivity", "public", " (none detected)", [])
    worst = max(found, key=lambda c: table[c])  # C-4: capped at the worst category's 10
    return _factor(policy, "data_sensitivity", worst, "", found[worst][:5])


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


def _customer_value(policy: Policy, facts: TaskFacts, f: Findings, notes: list[str]
                    ) -> tuple[str, str, list[str]]:
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
    if facts.flags.get("customer_facing"):
        candidates.append(("customer_segment", " (customer-facing)", ["flag customer_facing"]))
    if candidates:
        table = policy.scoring.factors.customer_impact
        return max(candidates, key=lambda c: table[c[0]])
    if f.environment.environment in ("production", "staging"):
        notes.append("customer impact not stated; scored as internal users")
        return "internal_users", " (assumed)", ["not stated"]
    return "no_users", " (isolated environment)", [f.environment.environment]


def _minimums(policy: Policy, facts: TaskFacts, f: Findings) -> list[MinimumTriggered]:
    m = policy.scoring.minimums
    env = f.environment.environment
    out: list[MinimumTriggered] = []

    def add(rule: str, level: int, reason: str, evidence: list[str]) -> None:
        out.append(MinimumTriggered.model_construct(rule=rule, level=level, reason=reason,
                                                    evidence=evidence[:5]))

    live = env in ("production", "staging")
    if env == "production":
        if f.read_only:
            add("minimum.environment.production_read_only", m.production_read_only,
                "Read-only production work needs a certified (Level 1) worker (C-1)", [env])
        else:
            add("minimum.environment.production", m.production,
                "All production operations require certified workers", [env])
        if f.environment.critical:
            add("minimum.environment.production_critical", m.production_critical,
                "Critical production systems require advanced certification",
                ["critical production"])
        if (len(facts.regions) >= policy.scoring.impact.multi_region_minimum_regions
                or f.environment.multi_region_label):
            add("minimum.environment.multi_region_production", m.multi_region_production,
                "Multi-region deployments require master certification",
                facts.regions or [str(facts.environment_label)])
    elif env == "staging":
        add("minimum.environment.staging", m.staging,
            "Staging is closed to non-union workers (C-19)", [env])
    for category in sensitive(f):  # C-29: everywhere
        add(f"minimum.data.{category}", m.sensitive_data,
            f"{category.upper()} data requires advanced certification", f.data[category])
    for category, evidence in f.operations.items():
        rules = policy.scoring.operations[category]
        if rules.minimum is not None:
            add(f"minimum.operation.{category}", rules.minimum, rules.reason, evidence)
    if live:
        if f.customer_facing:
            add("minimum.impact.customer_facing", m.customer_facing,
                "Customer-facing changes require certification", f.customer_facing)
        if f.system_wide:
            add("minimum.impact.system_wide", m.system_wide,
                "System-wide changes affect the entire platform (C-28)", f.system_wide)
        if len(facts.services) >= policy.scoring.impact.multi_service_minimum_services:
            add("minimum.impact.multi_service", m.multi_service,
                "Coordinated changes across services are complex", facts.services)
    for name, evidence in f.frameworks.items():
        framework = policy.governance.compliance[name]
        add(f"minimum.compliance.{name}", framework.min_level,
            f"{name} work requires Level {framework.min_level}+", evidence)
    return out


def _hard_blocks(policy: Policy, f: Findings, minimums: list[MinimumTriggered]
                 ) -> list[dict[str, str]]:
    texts = policy.scoring.hard_blocks
    blocks = []
    env = f.environment.environment
    if env == "production":
        blocks.append({"rule": "non_union.production", "message": texts["production"].message})
    if env == "staging" and "staging" in texts:
        blocks.append({"rule": "non_union.staging", "message": texts["staging"].message})
    if sensitive(f):
        blocks.append({"rule": "non_union.sensitive_data",
                       "message": texts["sensitive_data"].message})
    if any(m.rule.startswith("minimum.operation.") for m in minimums):
        blocks.append({"rule": "non_union.operation", "message": texts["operation"].message})
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
    gov = policy.governance
    findings = detect(facts, policy.scoring, policy.framework_text, policy.framework_aliases)
    notes = list(findings.environment.notes) + list(findings.notes)

    factors = [
        _score_environment(policy, findings),
        _score_reversibility(policy, facts, findings, notes),
        _score_data(policy, findings, notes),
        _factor(policy, "impact_scope", *_scope_value(policy, facts, findings, notes)),
        _factor(policy, "customer_impact", *_customer_value(policy, facts, findings, notes)),
    ]
    score = sum(f.points for f in factors)
    band = policy.scoring.band(score)
    minimums = _minimums(policy, facts, findings)
    highest_minimum = max((m.level for m in minimums), default=0)
    level = max(band.level, highest_minimum)
    level_rule = f"max(score band L{band.level}, minimums L{highest_minimum})"
    if findings.read_only and level == 2 and band.level == 2 and highest_minimum <= 1 \
            and findings.environment.environment in ("production", "staging"):
        level = 1
        level_rule = "read-only work in staging/production with no higher minimum -> L1 (C-1)"

    gate = gov.gate(level)
    roles = list(gate.approver_roles)
    artefacts = list(gate.required_artefacts)
    extra_roles = [r for name in findings.frameworks
                   for r in gov.compliance[name].extra_approver_roles]
    if level >= 2:  # operation-specific approvers join union approvals (permit-workflow overrides)
        extra_roles += [r for op in findings.operations
                        for r in gov.operation_extra_approvers.get(op, ())]
    roles += [r for r in dict.fromkeys(extra_roles) if r not in roles]
    artefacts += [a for name in findings.frameworks
                  for a in gov.compliance[name].required_artefacts if a not in artefacts]
    audit = gov.audit_for(level)
    retention = gov.retention_days(level, findings.frameworks)  # C-9: the longest that applies
    retention_class = next((name for name, days in gov.retention_classes.items()
                            if days == retention), f"retain-{retention}d")
    allocation = gov.allocation(level)
    hard_blocks = _hard_blocks(policy, findings, minimums)
    permit_type = gate.permit_type
    if permit_type and level >= 3 and "data_deletion" in findings.operations:
        permit_type = "destructive"

    # Built from validated policy data and our own arithmetic: skip re-validation (hot path);
    # tests validate every scenario's payload against the model.
    decided = CertificationDecided.model_construct(
        task_id=facts.task_id,
        worker_type="non-union" if level == 0 else "union",
        level=level, score=score, score_level=band.level, risk_level=band.risk_level,
        factors=factors, minimums=minimums,
        hard_blocks=[b["rule"] for b in hard_blocks],
        approvals_required=gate.approvers_required, approver_roles=roles,
        approval_time_limit_hours=_whole(gate.max_hours),
        change_advisory_board=gate.change_advisory_board,
        required_artefacts=artefacts, audit_fields=list(audit.fields),
        retention_days=retention, retention_class=retention_class,
        compliance_frameworks=sorted(findings.frameworks),
        environment=findings.environment.environment,
        environment_confidence=_whole(findings.environment.confidence),
        uncertainties=notes, policy_version=policy.version, policy_sha256=policy.sha256,
    )
    return Decision(decided=decided, facts=facts, findings=findings,
                    hard_block_messages=hard_blocks, permit_type=permit_type,
                    tokens=allocation.tokens, time_limit_minutes=allocation.time_limit_minutes,
                    level_rule=level_rule)
