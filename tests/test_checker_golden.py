"""decide() answers every task of the golden corpus exactly as the checker did before its
speed-up: payload, report, explanation, facts, findings and input errors, byte for byte.

A wrong "allow" is an incident: a faster checker must be the same checker. The corpus and how it
was made are in tests/checker_corpus.py.
"""

from __future__ import annotations

import json

import pytest

from events import InputError
from events.payloads import CertificationDecided
from rules import checker
from rules.checker import decide
from rules.policy import default_policy
from tests.checker_corpus import GIVEN_ID_EVERY, answer, digest, given_id, load


@pytest.fixture(scope="module")
def golden():
    data = load()
    if data["policy_sha256"] != default_policy().sha256:
        pytest.fail("the policy files changed since the golden corpus was recorded: if the rules "
                    "changed on purpose, rerun `python -m tests.checker_corpus` and review the diff")
    return data


def _differences(golden, answers: dict[int, str], expected: dict[int, str]) -> list[str]:
    """Each differing task, with the recorded answer beside the new one where it was kept."""
    out = []
    for index, new in answers.items():
        if digest(new) != expected[index]:
            kept = golden["full"].get(str(index))
            was = json.dumps(kept, sort_keys=True, ensure_ascii=False) if kept else "(hash only)"
            out.append(f"task #{index} {json.dumps(golden['tasks'][index])[:300]}\n"
                       f"  was: {was[:2000]}\n  now: {new[:2000]}")
    return out


@pytest.mark.parametrize(("memo", "every"), [(False, 1), (True, 5)],
                         ids=["every task cold", "every 5th through the memo"])
def test_every_answer_is_the_recorded_one(golden, memo, every):
    checker._memo.clear()
    policy = default_policy()
    tasks = golden["tasks"]
    answers = {i: answer(tasks[i], policy, memo=memo) for i in range(0, len(tasks), every)}
    differences = _differences(golden, answers, dict(enumerate(golden["hashes"])))
    assert not differences, f"{len(differences)} of {len(answers)} answers changed:\n" + \
        "\n".join(differences[:5])


def test_a_remembered_answer_is_the_recorded_one_for_another_task_id(golden):
    """Warm memo: the second task of a content is answered from the first, under its own id."""
    policy = default_policy()
    expected = {int(i): h for i, h in golden["hashes_given_id"].items()}
    for index in expected:
        answer(golden["tasks"][index], policy, memo=True)  # fills the memo under the task's id
    answers = {i: answer(golden["tasks"][i], policy, memo=True, task_id=given_id(i))
               for i in expected}
    differences = _differences(golden, answers, expected)
    assert not differences, "\n".join(differences[:5])
    assert len(expected) == len(golden["tasks"]) // GIVEN_ID_EVERY + 1


def test_kept_answers_are_the_hashed_ones(golden):
    """The whole answers shown on failure are the ones the hashes stand for."""
    for index, kept in golden["full"].items():
        text = json.dumps(kept, sort_keys=True, ensure_ascii=False)
        assert digest(text) == golden["hashes"][int(index)], index


def test_corpus_covers_every_level_environment_and_error(golden):
    answers = list(golden["full"].values())
    levels = {a["decided"]["level"] for a in answers if "decided" in a}
    environments = {a["decided"]["environment"] for a in answers if "decided" in a}
    assert levels == {0, 1, 2, 3, 4}
    assert environments == {"production", "staging", "development", "test", "local"}
    assert any("error" in a for a in answers)


def test_every_payload_built_without_validation_is_valid(golden):
    """The hot path skips validating its own payload: prove each one of the corpus valid, and
    its plain-data copy the same as the model's JSON dump, field for field and type for type."""
    policy = default_policy()
    for task in golden["tasks"][::5]:
        try:
            decision = decide(task, policy, memo=False)
        except InputError:
            continue
        payload = decision.decided.model_dump(mode="json")
        assert CertificationDecided.model_validate(payload).model_dump(mode="json") == payload
        plain = decision.payload_json()
        assert json.dumps(plain) == json.dumps(payload)
        assert json.dumps(decision.payload) == json.dumps(payload)


def test_facts_findings_and_decisions_carry_every_field():
    """They are built without their dataclass __init__ (hot path): none may lack a field."""
    from dataclasses import fields

    decision = decide({"task": "Deploy web to prod", "environment": "production",
                       "hostname": "api.example.com", "data_types": ["email"]},
                      default_policy(), memo=False)
    reused = decision.for_task("another-id")
    for made in (decision, decision.facts, decision.findings, decision.findings.environment,
                 *decision.findings.environment.signals, reused, reused.facts):
        assert set(vars(made)) == {f.name for f in fields(made)}, type(made).__name__
    assert reused.decided.task_id == reused.facts.task_id == "another-id"


def test_the_plain_payload_is_a_copy_not_a_view():
    decision = decide({"task": "Purge old rows", "environment": "production",
                       "operations": ["data_deletion"], "compliance": ["SOX"]},
                      default_policy(), memo=False)
    before = json.dumps(decision.payload)
    copy = decision.payload_json()
    for value in copy.values():
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    item["evidence"].append("changed")
            value.append("changed")
    assert json.dumps(decision.payload) == before
