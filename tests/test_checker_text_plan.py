"""The text plan's one-scan literal finder opens exactly the searches that a substring test of
every literal opens (the gate the golden corpus was recorded through), for every text of the
golden corpus and for texts built to catch overlaps, nested literals and the operations tail."""

from __future__ import annotations

import pytest

from events import InputError
from rules.detect import TextPlan, text_plan
from rules.policy import default_policy
from rules.task_facts import read_task
from tests.checker_corpus import load


def _reference(plan: TextPlan, text: str, operations_text: str | None) -> set[str]:
    """The gate as it was: each literal tested in the text it gates."""
    opened = set(plan.always)
    if operations_text is None or operations_text == text:
        for literal in plan.all_literals:
            if literal in text:
                opened.update(plan.opens.get(literal, ()))
                opened.update(plan.opens_operations.get(literal, ()))
        return opened
    for literal in plan.text_literals:
        if literal in text:
            opened.update(plan.opens[literal])
    for literal in plan.operation_literals:
        if literal in operations_text:
            opened.update(plan.opens_operations[literal])
    return opened


@pytest.fixture(scope="module")
def plan() -> TextPlan:
    policy = default_policy()
    return text_plan(policy.scoring, policy.framework_text)


def _operations_text(text: str, operations: list[str]) -> str:
    return " \n".join([text, *map(str.lower, operations)]) if operations else text


def test_every_golden_text_opens_what_the_substring_tests_opened(plan):
    checked = 0
    for task in load()["tasks"]:
        try:
            facts = read_task(task)
        except InputError:
            continue
        ops_text = _operations_text(facts.text, facts.operations)
        assert plan.opened_by(facts.text, ops_text) == _reference(plan, facts.text, ops_text), task
        assert plan.opened_by(facts.text) == _reference(plan, facts.text, None), task
        checked += 1
    assert checked > 30_000


@pytest.mark.parametrize(("text", "operations"), [
    ("", []), ("", ["delete"]), ("production", []), ("prod", ["production"]),
    ("apii", []), ("the email and phone", []), ("pci-dss and pci dss and pci_dss", []),
    ("customer", ["data"]), ("customer ", []), ("drop", ["table"]), ("schema", ["change"]),
    ("update the \u017f\u017fn table", ["ssn"]), ("a" * 40 + "terraf", ["orm apply"]),
    ("migrate", ["migration", "truncate", "kubectl", "helm"]), ("x", ["cloudformation"] * 3),
])
def test_edge_texts(plan, text, operations):
    ops_text = _operations_text(text, operations)
    assert plan.opened_by(text, ops_text) == _reference(plan, text, ops_text)
    assert plan.opened_by(text) == _reference(plan, text, None)
