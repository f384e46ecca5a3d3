"""Detection: what the task's facts say about environment, data, operations, scope, customers,
reversibility. Each finding keeps its evidence so that the decision can explain itself.
Pure: facts and policy in, findings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rules.scoring_model import (
    ENVIRONMENTS,
    SENSITIVE_CATEGORIES,
    MatchRules,
    ScoringPolicy,
    compact,
    normalise_name,
)
from rules.task_facts import TaskFacts, frozen_instance

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


_new = object.__new__


def _signal(environment: str, weight: int, evidence: str) -> Signal:
    signal = _new(Signal)  # frozen_instance, inlined: made ~1.6 times a decision
    signal.__dict__.update(environment=environment, weight=weight, evidence=evidence)
    return signal


def _environment_finding(environment: str, critical: bool, multi_region_label: bool,
                         confidence: float, signals: list[Signal], notes: list[str]
                         ) -> EnvironmentFinding:
    finding = _new(EnvironmentFinding)  # frozen_instance, inlined
    finding.__dict__.update(
        environment=environment, critical=critical, multi_region_label=multi_region_label,
        confidence=confidence, signals=signals, notes=notes)
    return finding


_SCHEME = re.compile(r"^[a-z]+://")


def _pattern_signals(out: list[Signal], kind: str, values: list[str], patterns: Any) -> None:
    """The first environment whose patterns match each value (a hostname without its scheme
    and path)."""
    for value in values:
        host = _SCHEME.sub("", value).split("/")[0] if kind == "hostname" else value
        for env, search in patterns.searches:
            if search(host):
                out.append(_signal(env, patterns.weight, f"{kind} {value}"))
                break


def _signals(facts: TaskFacts, policy: ScoringPolicy, plan: TextPlan, opened: set[str]
             ) -> tuple[list[Signal], list[Signal]]:
    """Structured signals and (weaker) free-text signals."""
    rules = policy.environment
    out: list[Signal] = []
    for name, value in facts.env_vars.items() if facts.env_vars else ():
        if name.upper() in rules.env_vars.names:
            for env, rx in rules.env_vars.compiled.items():
                if rx.search(value.strip()):
                    out.append(_signal(env, rules.env_vars.weight, f"env var {name}={value}"))
                    break
    if facts.hostnames:
        _pattern_signals(out, "hostname", facts.hostnames, rules.hostnames)
    if facts.branches:
        _pattern_signals(out, "branch", facts.branches, rules.branches)
    if facts.paths:
        _pattern_signals(out, "path", facts.paths, rules.paths)
    for namespace in facts.namespaces:
        for env in ENVIRONMENTS:
            if namespace in getattr(rules.namespaces, env):
                out.append(_signal(env, rules.namespaces.weight, f"k8s namespace {namespace}"))
                break
    for key, value in facts.tags.items() if facts.tags else ():
        if key in rules.tags.keys:
            kind = rules.label_index.get(value)
            if kind:
                env = "production" if kind.startswith("production") else kind
                out.append(_signal(env, rules.tags.weight, f"tag {key}:{value}"))
    for flag, on in facts.flags.items() if facts.flags else ():
        if on and flag in rules.flags.production:
            out.append(_signal("production", rules.flags.weight, f"flag {flag}=true"))
    text: list[Signal] = []
    if not opened.isdisjoint(plan.environment_search_set):
        for env, search in plan.environment_searches:
            match = search in opened and plan.regex[search].search(facts.text)
            if match:
                text.append(_signal(env, rules.text.weight, f"text '{match.group(0)}'"))
    return out, text


def detect_environment(facts: TaskFacts, policy: ScoringPolicy,
                       scanned: tuple[TextPlan, set[str]] | None = None) -> EnvironmentFinding:
    """`scanned`: the policy's text plan and the searches the task's text opens (found here
    when not given)."""
    if scanned is None:
        plan = text_plan(policy, _NO_FRAMEWORKS)
        scanned = plan, plan.opened_by(facts.text)
    plan, opened = scanned
    rules = policy.environment
    notes: list[str] = []
    label_kind = None
    if facts.environment_label:
        label_kind = rules.label_index.get(facts.environment_label)
        if label_kind is None:
            notes.append(f"environment label '{facts.environment_label}' is not one we know; "
                         "judged from other signals")
    structured, text = _signals(facts, policy, plan, opened)
    critical = label_kind == "production_critical" or (
        facts.flags.get("critical", False) if facts.flags else False)
    multi_region_label = label_kind == "production_multi_region"

    if label_kind:
        environment = "production" if label_kind.startswith("production") else label_kind
        structured = [_signal(environment, 20, f"environment '{facts.environment_label}'"),
                      *structured]
        if len(structured) == 1:  # the label alone: nothing to weigh against it
            if text:
                structured += text
            return _environment_finding(environment, critical, multi_region_label, 1.0,
                                        structured, notes)
        contrary = [s for s in structured[1:] if s.environment == "production"
                    and environment != "production"]
        if contrary:
            notes.append(f"label says {environment} but {contrary[0].evidence} says production; "
                         "judged as production (conservative)")
            return _environment_finding("production", critical, multi_region_label, 0.5,
                                        structured + text, notes)
        agreeing = sum(s.weight for s in structured if s.environment == environment)
        disagreeing = sum(s.weight for s in structured if s.environment != environment)
        confidence = round(min(1.0, agreeing / (agreeing + disagreeing)), 3)
        if disagreeing:
            notes.append(f"some signals disagree with the label '{facts.environment_label}'")
        return _environment_finding(environment, critical, multi_region_label, confidence,
                                    structured + text, notes)

    signals = structured or text
    if not signals:
        notes.append(f"nothing says where this task runs; assumed {rules.unknown_assumed} "
                     "(conservative)")
        return _environment_finding(rules.unknown_assumed, critical, False, 0.0, [], notes)
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
    return _environment_finding(environment, critical, False, confidence, signals, notes)


@dataclass(frozen=True)
class TextPlan:
    """Every regex search over a task's free text, each behind the literals it requires.

    One pass of substring tests finds which literals occur; a search is run only when one of
    its literals occurred in the text it searches (or when it has none). A pattern cannot
    match where its required literal is absent, so the answers are the bare regexes' answers.
    The operation searches read the free text followed by the operation names; all others
    read the free text alone.
    """

    text_literals: tuple[str, ...]  # required by the searches of the free text
    operation_literals: tuple[str, ...]  # required by the searches of the operations text
    all_literals: tuple[str, ...]  # both, for a task whose two texts are one
    opens: dict[str, tuple[str, ...]]  # literal -> the free-text searches it opens
    opens_operations: dict[str, tuple[str, ...]]  # literal -> the operation searches it opens
    always: frozenset[str]  # searches without a required literal: always run
    regex: dict[str, Any]  # search -> compiled pattern
    environment_searches: tuple[tuple[str, str], ...]  # (environment, search), policy order
    data_searches: dict[str, str]  # category -> search
    operation_searches: dict[str, str]
    framework_searches: tuple[tuple[str, str], ...]  # (framework, search)
    environment_search_set: frozenset[str]  # the searches of environment_searches
    framework_search_set: frozenset[str]

    finder: Any  # findall of the literals' trie: at each position, the longest one there
    opens_found: dict[str, frozenset[str]]  # a literal the finder returns -> what it opens
    operation_finder: Any  # the same over the operation literals alone
    opens_operations_found: dict[str, frozenset[str]]  # its literal -> the operation searches
    operation_literal_length: int  # the longest operation literal
    data_search_set: frozenset[str]  # the searches of data_searches
    operation_search_set: frozenset[str]
    category_of: dict[str, str]  # data or operation search -> its category

    def opened_by(self, text: str, operations_text: str | None = None) -> set[str]:
        """The searches worth running: those whose literal occurs in `text` (lower-case) and,
        for the operation searches, in `operations_text` (the same text when None; else the
        text followed by the operation names).

        One regex scan (the literals as a trie, tried at every position) finds, at each
        position, the longest literal that starts there; every literal it contains occurs
        too, and `opens_found` opens all their searches. Exactly the searches that a test of
        each literal would open: a search's answer can differ from the bare regex's (case
        folding: `\u017f` matches `s` ignoring case, yet `ssn` is not in `\u017f\u017fn`), so
        no search is opened that the literals do not open."""
        opened = set(self.always)
        opens = self.opens_found
        for literal in self.finder(text):
            opened |= opens[literal]
        if operations_text is not None and operations_text != text:
            # The operation literals in the rest (any starting in the text's last characters)
            opens = self.opens_operations_found
            start = len(text) - self.operation_literal_length + 1
            for literal in self.operation_finder(operations_text, start):  # pos < 0 reads as 0
                opened |= opens[literal]
        return opened


def _no_literal(_text: str, _pos: int = 0) -> tuple[str, ...]:
    return ()


def _finder(literals: tuple[str, ...]) -> Any:
    """findall(text[, pos]) of the literals' trie, as a lookahead (overlapping matches)."""
    return re.compile(f"(?=({_trie_pattern(literals)}))").findall if literals else _no_literal


def _trie_pattern(literals: tuple[str, ...]) -> str:
    """A regex matching, at one position, the longest of `literals` that starts there (a trie:
    each node tries its longer continuations before ending)."""
    trie: dict[str, Any] = {}
    for literal in literals:
        node = trie
        for char in literal:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + emit(child)
                    for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{body})?" if "" in node else body

    return emit(trie)


def _keyword_literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """The keywords of a `\\bkeyword\\b|...` pattern (how the policy writes framework
    keywords): it can match only where one of them occurs. None for any other shape."""
    source = pattern.pattern
    if pattern.flags != re.UNICODE or not (source.startswith(r"\b") and source.endswith(r"\b")):
        return None
    keywords = [_UNESCAPE.sub(r"\1", k) for k in source[2:-2].split(r"\b|\b")]
    if "|".join(rf"\b{re.escape(k)}\b" for k in keywords) != source:
        return None
    return frozenset(keywords) if all(keywords) else None


def _build_plan(policy: ScoringPolicy, framework_text: dict[str, re.Pattern[str]]) -> TextPlan:
    gated: dict[str, tuple[Any, frozenset[str] | None]] = {}  # search -> (regex, literals)

    def add(search: str, pattern: Any) -> str:
        gated[search] = (pattern.regex, pattern.literal_set)
        return search

    environment = tuple((env, add(f"environment.{env}", rx))
                        for env, rx in policy.environment.text.compiled.items())
    data = {c: add(f"data.{c}", r.text_rx) for c, r in policy.data.items() if r.text_rx}
    operations = {c: add(f"operations.{c}", r.text_rx)
                  for c, r in policy.operations.items() if r.text_rx}
    for search, pattern in (("read_only.write", policy.read_only.write_rx),
                            ("deploy", policy.deploy.text_rx),
                            ("impact.customer_facing", policy.impact.customer_facing_rx)):
        if pattern is not None:
            add(search, pattern)
    frameworks = []
    for name, rx in framework_text.items():
        gated[f"framework.{name}"] = (rx, _keyword_literals(rx))
        frameworks.append((name, f"framework.{name}"))
    operation_search_names = set(operations.values())
    opens: dict[str, list[str]] = {}
    opens_operations: dict[str, list[str]] = {}
    for search, (_, literals) in gated.items():
        table = opens_operations if search in operation_search_names else opens
        for literal in literals or ():
            table.setdefault(literal, []).append(search)
    all_literals = tuple(sorted(opens.keys() | opens_operations.keys()))
    every_search = {literal: (*opens.get(literal, ()), *opens_operations.get(literal, ()))
                    for literal in all_literals}
    return TextPlan(
        finder=_finder(all_literals),
        opens_found={found: frozenset(search for literal in all_literals if literal in found
                                      for search in every_search[literal])
                     for found in all_literals},
        operation_finder=_finder(tuple(sorted(opens_operations))),
        opens_operations_found={found: frozenset(
            search for literal in opens_operations if literal in found
            for search in opens_operations[literal]) for found in opens_operations},
        operation_literal_length=max(map(len, opens_operations), default=1),
        data_search_set=frozenset(data.values()),
        operation_search_set=frozenset(operations.values()),
        category_of={search: category for table in (data, operations)
                     for category, search in table.items()},
        text_literals=tuple(sorted(opens)), operation_literals=tuple(sorted(opens_operations)),
        all_literals=all_literals,
        opens={literal: tuple(searches) for literal, searches in opens.items()},
        opens_operations={literal: tuple(searches)
                          for literal, searches in opens_operations.items()},
        always=frozenset(search for search, (_, literals) in gated.items() if literals is None),
        regex={search: rx for search, (rx, _) in gated.items()},
        environment_searches=environment, data_searches=data, operation_searches=operations,
        framework_searches=tuple(frameworks),
        environment_search_set=frozenset(search for _, search in environment),
        framework_search_set=frozenset(search for _, search in frameworks))


_UNESCAPE = re.compile(r"\\(.)")
_NO_FRAMEWORKS: dict[str, re.Pattern[str]] = {}
_plans: dict[tuple[int, int], tuple[ScoringPolicy, dict[str, re.Pattern[str]], TextPlan]] = {}
_last_plan: tuple[Any, Any, Any] = (None, None, None)


def text_plan(policy: ScoringPolicy, framework_text: dict[str, re.Pattern[str]]) -> TextPlan:
    """The plan of one policy, built on first use (policies are immutable, a few per process)."""
    last = _last_plan  # the one asked for last: one identity test, no key to build and hash
    if last[0] is policy and last[1] is framework_text:
        return last[2]
    found = _plans.get((id(policy), id(framework_text)))
    if found is None or found[0] is not policy or found[1] is not framework_text:
        if len(_plans) >= 8:
            _plans.clear()
        found = (policy, framework_text, _build_plan(policy, framework_text))
        _plans[(id(policy), id(framework_text))] = found  # holding them: ids not reused
    _remember_plan(found)
    return found[2]


def _remember_plan(found: tuple[ScoringPolicy, dict[str, re.Pattern[str]], TextPlan]) -> None:
    global _last_plan  # a one-entry cache in front of _plans
    _last_plan = found


def _match_categories(table: dict[str, MatchRules], name_index: dict[str, tuple[str, ...]],
                      names: list[str], normalised: list[str], text: str,
                      searches: frozenset[str], plan: TextPlan, opened: set[str]
                      ) -> dict[str, list[str]]:
    """category -> evidence: the names it lists (in the task's order), then its text match
    (`searches`: the category searches of `table`)."""
    hits = opened.intersection(searches)
    if not names and not hits:
        return {}
    by_name: dict[str, list[str]] = {}
    for original, name in zip(names, normalised):
        for category in name_index.get(name, ()):
            evidence = by_name.get(category)
            if evidence is None:
                by_name[category] = [f"'{original}'"]
            else:
                evidence.append(f"'{original}'")
    by_text = {}
    if hits:
        category_of, regex = plan.category_of, plan.regex
        for search in hits:
            match = regex[search].search(text)
            if match:
                by_text[category_of[search]] = f"text '{match.group(0)}'"
    if not by_text:
        if len(by_name) < 2:
            return by_name
        return {category: by_name[category] for category in table if category in by_name}
    found: dict[str, list[str]] = {}
    for category in table:
        evidence = by_name.get(category)
        if evidence is not None:
            found[category] = evidence
        if category in by_text:
            found.setdefault(category, []).append(by_text[category])
    return found


def detect(facts: TaskFacts, policy: ScoringPolicy, framework_text: dict[str, re.Pattern[str]],
           framework_aliases: dict[str, str]) -> Findings:
    notes: list[str] = []
    operations_text = (" \n".join([facts.text, *map(str.lower, facts.operations)])
                       if facts.operations else facts.text)
    plan = text_plan(policy, framework_text)
    opened = plan.opened_by(facts.text, operations_text)
    environment = detect_environment(facts, policy, (plan, opened))

    data_names = list(map(normalise_name, facts.data_types)) if facts.data_types else []
    data = _match_categories(policy.data, policy.data_name_index, facts.data_types, data_names,
                             facts.text, plan.data_search_set, plan, opened)
    known = policy.known_data_names
    unknown_data = [d for d, name in zip(facts.data_types, data_names)
                    if name not in known] if data_names and not known.issuperset(data_names) else []
    if unknown_data:
        notes.append(f"data types not recognised: {', '.join(unknown_data)}; scored as internal")

    operation_names = list(map(normalise_name, facts.operations)) if facts.operations else []
    operations = _match_categories(policy.operations, policy.operation_name_index,
                                   facts.operations, operation_names, operations_text,
                                   plan.operation_search_set, plan, opened)
    read_only = bool(operation_names) and policy.read_only.name_set.issuperset(operation_names)
    if read_only and "read_only.write" in opened:
        write = plan.regex["read_only.write"].search(facts.text)
        if write:
            read_only = False
            notes.append(f"operations are listed as read-only but the text says '{write.group(0)}'")
    read_only = read_only and not operations

    deploy_names = policy.deploy.name_set
    deploys = [o for o, name in zip(facts.operations, operation_names)
               if name in deploy_names] if operation_names and not deploy_names.isdisjoint(
                   operation_names) else []
    if "deploy" in opened and (m := plan.regex["deploy"].search(facts.text)):
        deploys.append(f"text '{m.group(0)}'")

    impact = policy.impact
    customer_facing = []
    system_wide = []
    named = [*facts.services, *facts.components] if facts.services or facts.components else ()
    for item in named:
        if impact.customer_facing_rx is not None and impact.customer_facing_rx.search(item):
            customer_facing.append(f"service '{item}'")
        if impact.system_wide_rx is not None and impact.system_wide_rx.search(item):
            system_wide.append(f"component '{item}'")
    if not facts.services and "impact.customer_facing" in opened:
        match = plan.regex["impact.customer_facing"].search(facts.text)
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
    for canonical, search in (plan.framework_searches
                              if not opened.isdisjoint(plan.framework_search_set) else ()):
        if search in opened and (match := plan.regex[search].search(facts.text)):
            frameworks.setdefault(canonical, []).append(f"text '{match.group(0)}'")

    return frozen_instance(Findings, {
        "environment": environment, "data": data, "unknown_data_types": unknown_data,
        "operations": operations, "read_only": read_only, "deploys": deploys,
        "customer_facing": customer_facing, "system_wide": system_wide,
        "frameworks": frameworks, "notes": notes})


def sensitive(findings: Findings) -> list[str]:
    return [c for c in SENSITIVE_CATEGORIES if c in findings.data]
