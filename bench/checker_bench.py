"""Decisions per second in one process, against a baseline measured in the same run.

Baseline: validating the same task documents with a pydantic model alone (what any service
would do at its edge). Target (issue 2): >= 20,000 decisions/s on one core for structured input.

    .venv/bin/python -m bench.checker_bench [--tasks N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from rules.checker import _content_key, _memo, decide
from rules.policy import default_policy
from streams.sample import sample_records


class TaskShape(BaseModel):
    """The structured task fields the sample uses, validated the pydantic way."""

    model_config = ConfigDict(extra="allow")
    task: str
    task_id: str
    environment: str | None = None
    operations: list[str] = []
    data_types: list[str] = []
    services: list[str] = []
    regions: list[str] = []
    components: list[str] = []
    compliance: list[str] = []
    reversibility: str | None = None
    customer_impact: str | None = None
    customers_affected: int | None = None
    env_vars: dict[str, str] | list[str] | None = None
    hostname: str | None = None
    branch: str | None = None


def sample_tasks(count: int) -> list[dict[str, Any]]:
    tasks = []
    for raw in sample_records(count + count // 50 + 10):
        try:
            document = json.loads(raw)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("type") == "task.submitted":
            task = document["payload"]["task"]
            if len(task.get("task", "")) < 1000:
                tasks.append(task)
        if len(tasks) == count:
            break
    return tasks


def best_rate(fn, tasks: list[dict[str, Any]], repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for task in tasks:
            fn(task)
        best = max(best, len(tasks) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    policy = default_policy()
    tasks = sample_tasks(args.tasks)
    decide(tasks[0], policy)  # warm the compiled regexes

    baseline = best_rate(TaskShape.model_validate, tasks, args.repeat)
    cold = best_rate(lambda t: decide(t, policy, memo=False), tasks, args.repeat)
    distinct = len({_content_key(t) for t in tasks})
    _memo.clear()
    stream = best_rate(lambda t: decide(t, policy), tasks, 1)  # first pass: fills the memo
    warm = best_rate(lambda t: decide(t, policy), tasks, args.repeat)
    rows = [("baseline: pydantic validation only", baseline),
            ("decide(), no memo (every task cold)", cold),
            (f"decide(), sample stream, memo filling ({distinct} distinct of {len(tasks)})",
             stream),
            ("decide(), memo warm", warm)]
    print(f"{'measure':<66}{'per second':>12}{'vs baseline':>13}")
    for name, rate in rows:
        print(f"{name:<66}{rate:>12,.0f}{rate / baseline:>13.3f}")
    print(f"target >= 20,000 decisions/s cold: {'met' if cold >= 20_000 else 'NOT met'}; "
          f"on the sample stream: {'met' if stream >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
