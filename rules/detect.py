"""Detection: what the task's facts say about environment, data, operations, scope, customers,
reversibility. Each finding keeps its evidence so that the decision can explain itself.
Pure: facts and policy in, findings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rules.scoring_model import ENVIRONMENTS, SENSITIVE_CATEGORIES, ScoringPolicy, compact, normalise_name
from rules.task_facts import TaskFacts

ENV_ORDER = {env: i for i, env in enumerate(ENVIRONMENTS)}  # ties go to the riskier one


@dataclass(frozen=True)
class Signal:
    environment: str
    weight: int
    evidence: str


@dataclass(frozen=True)
class EnvironmentFinding:
    environment: str
    critical: bool
    multi_region_label: bool
    confidence: float
    signals: list[Signal]
    notes: list[str]


@dataclass(frozen=True)
class Findings:
    environment: EnvironmentFinding
    data: dict[str, list[str]]  # category -> evidence
    unknown_data_types: list[str]
    operations: dict[str, list[str]]  # category -> evidence
    read_only: bool
    deploys: list[str]
    customer_facing: list[str]
    system_wide: list[str]
    frameworks: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)


def _signals(facts: TaskFacts, policy: ScoringPolicy) -> tuple[list[Signal], list[Signal]]:
    """Structured signals and (weaker) free-text signals."""
    rules = policy.environment
    out: list[Signal] = []
    for name, value in facts.env_vars.items():
        if name.upper() in rules.env_vars.names:
            for env, rx in rules.env_vars.compiled.items():
                if rx.search(value.strip()):
                    out.append(Signal(env, rules.env_vars.weight, f"env var {name}={value}"))
                    break
    for kind, values, patterns in (("hostname", facts.hostnames, rules.hostnames),
                                   ("branch", facts.branches, rules.branches),
                                   ("path", facts.paths, rules.paths)):
        for value in values:
            host = re.sub(r"^[a-z]+://", "", value).split("/")[0] if kind == "hostname" else value
            for env, rx in patterns.compiled.items():
                if rx.search(host):
                    out.append(Signal(env, patterns.weight, f"{kind} {value}"))
                    break
    for namespace in facts.namespaces:
        for env in ENVIRONMENTS:
            if namespace in getattr(rules.namespaces, env):
                out.append(Signal(env, rules.namespaces.weight, f"k8s namespace {namespace}"))
                break
    for key, value in facts.tags.items():
        if key in rules.tags.keys:
            kind = rules.label_index.get(value)
            if kind:
                env = "production" if kind.startswith("production") else kind
                out.append(Signal(env, rules.tags.weight, f"tag {key}:{value}"))
    for flag, on in facts.flags.items():
        if on and flag in rules.flags.production:
            out.append(Signal("production", rules.flags.weight, f"flag {flag}=true"))
    text: list[Signal] = []
    for env, rx in rules.text.compiled.items():
        match = rx.search(facts.text)
        if match:
            text.append(Signal(env, rules.text.weight, f"text '{match.group(0)}'"))
    return out, text


def detect_environment(facts: TaskFacts, policy: ScoringPolicy) -> EnvironmentFinding:
    rules = policy.environment
    notes: list[str] = []
    label_kind = None
    if facts.environment_label:
        label_kind = rules.label_index.get(facts.environment_label)
        if label_kind is None:
            notes.append(f"environment label '{facts.environment_label}' is not one we know; "
                         "judged from other signals")
    structured, text = _signals(facts, policy)
    critical = label_kind == "production_critical" or facts.flags.get("critical", False)
    multi_region_label = label_kind == "production_multi_region"

    if label_kind:
        environment = "production" if label_kind.startswith("production") else label_kind
        structured = [Signal(environment, 20, f"environment '{facts.environment_label}'"),
                      *structured]
        contrary = [s for s in structured[1:] if s.environment == "production"
                    and environment != "production"]
        if contrary:
            notes.append(f"label says {environment} but {contrary[0].evidence} says production; "
                         "judged as production (conservative)")
            return EnvironmentFinding("production", critical, multi_region_label, 0.5,
                                      structured + text, notes)
        agreeing = sum(s.weight for s in structured if s.environment == environment)
        disagreeing = sum(s.weight for s in structured if s.environment != environment)
        confidence = round(min(1.0, agreeing / (agreeing + disagreeing)), 3)
        if disagreeing:
            notes.append(f"some signals disagree with the label '{facts.environment_label}'")
        return EnvironmentFinding(environment, critical, multi_region_label, confidence,
                                  structured + text, notes)

    signals = structured or text
    if not signals:
        notes.append(f"nothing says where this task runs; assumed {rules.unknown_assumed} "
                     "(conservative)")
        return EnvironmentFinding(rules.unknown_assumed, critical, False, 0.0, [], notes)
    totals: dict[str, int] = {}
    for signal in signals:
        totals[signal.environment] = totals.get(signal.environment, 0) + signal.weight
    if "production" in totals:  # any production indicator wins (checker v1), C-8
        environment = "production"
    else:
        environment = max(totals, key=lambda env: (totals[env], -ENV_ORDER[env]))
    confidence = round(min(1.0, totals[environment] / sum(totals.values())), 3)
    if not structured:
        confidence = min(confidence, 0.6)
        notes.append("environment inferred from free text only")
    if confidence < rules.min_confidence:
        notes.append(f"environment ambiguous (confidence {confidence:.2f} < "
                     f"{rules.min_confidence}); a human should confirm")
    return EnvironmentFinding(environment, critical, False, confidence, signals, notes)


def _match_categories(facts: TaskFacts, table: dict, names: list[str], text: str
                      ) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    normalised = [(n, normalise_name(n)) for n in names]
    for category, rules in table.items():
        for original, name in normalised:
            if name in rules.name_set:
                found.setdefault(category, []).append(f"'{original}'")
        if rules.text_rx is not None:
            match = rules.text_rx.search(text)
            if match:
                found.setdefault(category, []).append(f"text '{match.group(0)}'")
    return found


def detect(facts: TaskFacts, policy: ScoringPolicy, framework_text: dict[str, re.Pattern[str]],
           framework_aliases: dict[str, str]) -> Findings:
    environment = detect_environment(facts, policy)
    notes: list[str] = []
    operations_text = " \n".join([facts.text, *(o.lower() for o in facts.operations)])

    data = _match_categories(facts, policy.data, facts.data_types, facts.text)
    unknown_data = [d for d in facts.data_types
                    if normalise_name(d) not in policy.known_data_names]
    if unknown_data:
        notes.append(f"data types not recognised: {', '.join(unknown_data)}; scored as internal")

    operations = _match_categories(facts, policy.operations, facts.operations, operations_text)
    read_only = bool(facts.operations) and all(
        normalise_name(o) in policy.read_only.name_set for o in facts.operations)
    if read_only and policy.read_only.write_rx is not None:
        write = policy.read_only.write_rx.search(facts.text)
        if write:
            read_only = False
            notes.append(f"operations are listed as read-only but the text says '{write.group(0)}'")
    read_only = read_only and not operations

    deploys = [o for o in facts.operations if normalise_name(o) in policy.deploy.name_set]
    if policy.deploy.text_rx is not None and (m := policy.deploy.text_rx.search(facts.text)):
        deploys.append(f"text '{m.group(0)}'")

    impact = policy.impact
    customer_facing = []
    system_wide = []
    for item in [*facts.services, *facts.components]:
        if impact.customer_facing_rx is not None and impact.customer_facing_rx.search(item):
            customer_facing.append(f"service '{item}'")
        if impact.system_wide_rx is not None and impact.system_wide_rx.search(item):
            system_wide.append(f"component '{item}'")
    if not facts.services and impact.customer_facing_rx is not None:
        match = impact.customer_facing_rx.search(facts.text)
        if match:
            customer_facing.append(f"text '{match.group(0)}'")
    if facts.flags.get("customer_facing"):
        customer_facing.append("flag customer_facing=true")

    frameworks: dict[str, list[str]] = {}
    for name in facts.frameworks:
        canonical = framework_aliases.get(compact(name))
        if canonical is None:
            notes.append(f"compliance framework '{name}' not recognised")
        else:
            frameworks.setdefault(canonical, []).append(f"'{name}'")
    for canonical, keyword_rx in framework_text.items():
        if match := keyword_rx.search(facts.text):
            frameworks.setdefault(canonical, []).append(f"text '{match.group(0)}'")

    return Findings(environment=environment, data=data, unknown_data_types=unknown_data,
                    operations=operations, read_only=read_only, deploys=deploys,
                    customer_facing=customer_facing, system_wide=system_wide,
                    frameworks=frameworks, notes=notes)


def sensitive(findings: Findings) -> list[str]:
    return [c for c in SENSITIVE_CATEGORIES if c in findings.data]
