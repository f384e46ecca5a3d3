"""The scoring part of the policy as validated data (rules/policy/scoring.toml).

Regexes are compiled once at load; a bad regex or a missing level is a load error, not a
surprise at decision time.
"""

from __future__ import annotations

import re
import re._parser as re_parser  # the stdlib's own pattern parser, to find required literals
from functools import cached_property
from typing import Literal

from re._constants import LITERAL

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENVIRONMENTS = ("production", "staging", "development", "test", "local")
Environment = Literal["production", "staging", "development", "test", "local"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _longest_literal(items: list) -> str:
    """The longest run of plain characters in a parsed sequence, lower-cased."""
    runs, current = [], ""
    for op, arg in items:
        if op is LITERAL:
            current += chr(arg)
        else:
            runs.append(current)
            current = ""
    runs.append(current)
    return max(runs, key=len).lower()


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters every match must contain (e.g. `mail` in
    `\\be-?mails?\\b`), or None when there is no such run of 2+ characters."""
    best = _longest_literal(list(re_parser.parse(pattern)))
    return best if len(best) >= 2 else None


class GatedPattern:
    """An alternation of patterns, searched only when one of their required literals occurs.

    Substring tests run at C speed; most texts contain none of a category's words, so most
    regex scans are skipped. The answer is the same as the bare regex's: a pattern can only
    match where its required literal occurs.
    """

    __slots__ = ("literal_set", "literals", "regex")

    def __init__(self, patterns: list[str]) -> None:
        self.regex = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        literals = [required_literal(p) for p in patterns]
        self.literals = None if None in literals else tuple(set(literals))
        self.literal_set = None if self.literals is None else frozenset(self.literals)

    def search(self, text: str) -> re.Match[str] | None:
        literals = self.literals
        if literals is not None:
            lowered = text.lower()
            for literal in literals:  # a loop, not any(): no generator per call
                if literal in lowered:
                    break
            else:
                return None
        return self.regex.search(text)


def compile_any(patterns: list[str]) -> GatedPattern | None:
    """One gated alternation per list: a single scan instead of one per pattern."""
    return GatedPattern(patterns) if patterns else None


def _check_regexes(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"bad regex {pattern!r}: {error}") from None
    return patterns


class PolicyHeader(Strict):
    version: str = Field(min_length=1)
    name: str


class Factors(Strict):
    environment: dict[Environment, int]
    reversibility: dict[Literal["irreversible", "complex_rollback", "automated_rollback",
                                "fully_reversible"], int]
    data_sensitivity: dict[str, int]
    impact_scope: dict[Literal["multi_region", "system_wide", "multi_service", "single_service",
                               "single_component"], int]
    customer_impact: dict[Literal["all_customers", "customer_segment", "internal_users",
                                  "no_users"], int]

    @model_validator(mode="after")
    def _points_in_range(self) -> Factors:
        for name in ("environment", "reversibility", "data_sensitivity", "impact_scope",
                     "customer_impact"):
            table: dict[str, int] = getattr(self, name)
            for key, points in table.items():
                if not 0 <= points <= 10:
                    raise ValueError(f"factors.{name}.{key}: points must be 0..10, got {points}")
        missing = set(ENVIRONMENTS) - set(self.environment)
        if missing:
            raise ValueError(f"factors.environment: missing {sorted(missing)}")
        return self


class Threshold(Strict):
    level: int = Field(ge=0, le=4)
    min: int = Field(ge=0, le=50)
    max: int = Field(ge=0, le=50)
    risk_level: str


class PatternSet(Strict):
    """Per-environment regexes (hostnames, branches, paths, text)."""

    weight: int = Field(ge=0)
    production: list[str] = []
    staging: list[str] = []
    development: list[str] = []
    test: list[str] = []
    local: list[str] = []

    @field_validator("production", "staging", "development", "test", "local")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        return _check_regexes(patterns)

    @cached_property
    def compiled(self) -> dict[str, GatedPattern]:
        return {env: rx for env in ENVIRONMENTS
                if (rx := compile_any(getattr(self, env))) is not None}

    @cached_property
    def searches(self) -> tuple[tuple[str, object], ...]:
        """(environment, search) in `compiled`'s order: the bare regex's search where the
        gated pattern has no literals (its search would only call it)."""
        return tuple((env, rx.regex.search if rx.literals is None else rx.search)
                     for env, rx in self.compiled.items())


class EnvVarRules(Strict):
    names: list[str]
    weight: int
    production: str
    staging: str
    development: str
    test: str
    local: str

    @cached_property
    def compiled(self) -> dict[str, re.Pattern[str]]:
        return {env: re.compile(getattr(self, env), re.IGNORECASE) for env in ENVIRONMENTS}


class NamespaceRules(Strict):
    weight: int
    production: list[str]
    staging: list[str]
    development: list[str]
    test: list[str]
    local: list[str]


class TagRules(Strict):
    weight: int
    keys: list[str]


class FlagRules(Strict):
    weight: int
    production: list[str]
    weak_production: list[str]


class EnvironmentRules(Strict):
    labels: dict[str, list[str]]
    min_confidence: float = Field(ge=0, le=1)
    unknown_assumed: Environment
    env_vars: EnvVarRules
    hostnames: PatternSet
    namespaces: NamespaceRules
    branches: PatternSet
    paths: PatternSet
    tags: TagRules
    flags: FlagRules
    text: PatternSet

    @cached_property
    def label_index(self) -> dict[str, str]:
        """label -> one of production, production_critical, production_multi_region, staging…"""
        return {label.lower(): kind for kind, labels in self.labels.items() for label in labels}


class MatchRules(Strict):
    """Exact names (from structured fields) and regexes (over free text)."""

    names: list[str]
    text: list[str] = []
    minimum: int | None = Field(default=None, ge=0, le=4)
    reason: str = ""

    @field_validator("text")
    @classmethod
    def _regexes_compile(cls, patterns: list[str]) -> list[str]:
        return _check_regexes(patterns)

    @cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(normalise_name(n) for n in self.names)

    @cached_property
    def text_rx(self) -> GatedPattern | None:
        return compile_any(self.text)


class ReadOnlyRules(Strict):
    names: list[str]
    write_text: list[str]

    @cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(normalise_name(n) for n in self.names)

    @cached_property
    def write_rx(self) -> GatedPattern | None:
        return compile_any(self.write_text)


class ImpactRules(Strict):
    customer_facing_services: list[str]
    system_wide_components: list[str]
    multi_service_minimum_services: int = Field(ge=2)
    multi_region_minimum_regions: int = Field(ge=2)
    customers_all: int
    customers_segment: int

    @cached_property
    def customer_facing_rx(self) -> GatedPattern | None:
        return compile_any(self.customer_facing_services)

    @cached_property
    def system_wide_rx(self) -> GatedPattern | None:
        return compile_any(self.system_wide_components)


class Minimums(Strict):
    production: int
    production_read_only: int
    staging: int
    production_critical: int
    multi_region_production: int
    sensitive_data: int
    customer_facing: int
    system_wide: int
    multi_service: int


class HardBlockText(Strict):
    message: str


SENSITIVE_CATEGORIES = ("pii", "phi", "financial", "credentials")


def _name_index(table: dict[str, MatchRules]) -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for category, rules in table.items():
        for name in rules.name_set:
            index.setdefault(name, []).append(category)
    return {name: tuple(categories) for name, categories in index.items()}


class ScoringPolicy(Strict):
    policy: PolicyHeader
    factors: Factors
    thresholds: list[Threshold]
    environment: EnvironmentRules
    data: dict[str, MatchRules]
    operations: dict[str, MatchRules]
    read_only: ReadOnlyRules
    deploy: MatchRules
    impact: ImpactRules
    minimums: Minimums
    hard_blocks: dict[str, HardBlockText]

    @model_validator(mode="after")
    def _consistent(self) -> ScoringPolicy:
        bands = sorted(self.thresholds, key=lambda t: t.min)
        if not bands or bands[0].min != 0 or bands[-1].max != 50:
            raise ValueError("thresholds: bands must cover 0..50")
        for low, high in zip(bands, bands[1:], strict=False):
            if high.min != low.max + 1:
                raise ValueError(f"thresholds: gap or overlap between {low.max} and {high.min}")
        unknown = set(self.data) - set(self.factors.data_sensitivity)
        if unknown:
            raise ValueError(f"data: categories without points {sorted(unknown)}")
        for needed in SENSITIVE_CATEGORIES:
            if needed not in self.data:
                raise ValueError(f"data: missing category {needed}")
        for needed in ("production", "sensitive_data", "operation"):
            if needed not in self.hard_blocks:
                raise ValueError(f"hard_blocks: missing {needed}")
        return self

    @cached_property
    def known_data_names(self) -> frozenset[str]:
        return frozenset(n for rules in self.data.values() for n in rules.name_set)

    @cached_property
    def data_name_index(self) -> dict[str, tuple[str, ...]]:
        """normalised data-type name -> the categories naming it, in policy order."""
        return _name_index(self.data)

    @cached_property
    def operation_name_index(self) -> dict[str, tuple[str, ...]]:
        """normalised operation name -> the categories naming it, in policy order."""
        return _name_index(self.operations)

    def band(self, score: int) -> Threshold:
        for threshold in self.thresholds:
            if threshold.min <= score <= threshold.max:
                return threshold
        raise ValueError(f"score {score} outside every band")


_SEPARATORS = re.compile(r"[\s\-./]+")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]")


def normalise_name(name: str) -> str:
    """`Customer Data`, `customer-data`, `customer_data` are one data-type name."""
    lowered = name.lower()
    if lowered.isidentifier():  # no whitespace, '-', '.' or '/': nothing to strip or replace
        return lowered
    return _SEPARATORS.sub("_", name.strip().lower())


def compact(name: str) -> str:
    """`PCI-DSS`, `pci_dss`, `PCI DSS` -> `pcidss`: how framework names are compared."""
    return _NOT_ALPHANUMERIC.sub("", name.lower())
