"""Read a task document in any of the seed's shapes into one flat, typed set of facts.

The seed documents name the same thing several ways (README examples, certification-checker v2,
permit-system.md `operation_details`, permit-workflow.md `target` / `impact_assessment`). We accept
them all; fields we do not know are kept on the task as sent, never fatal. A field of the wrong
kind (a number where a list belongs) is an error naming that field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from events import InputError

TEXT_FIELDS = ("task", "description", "title", "name", "summary", "details", "command",
               "commands", "sql", "script", "query", "justification")
MAX_TEXT = 20_000


@dataclass(frozen=True)
class TaskFacts:
    task_id: str
    text: str  # every free-text field, joined, lower-cased
    environment_label: str | None
    env_vars: dict[str, str]
    hostnames: list[str]
    namespaces: list[str]
    branches: list[str]
    paths: list[str]
    tags: dict[str, str]
    flags: dict[str, bool]
    data_types: list[str]
    operations: list[str]
    services: list[str]
    components: list[str]
    regions: list[str]
    customers_affected: int | None
    customer_impact_label: str | None
    reversibility_label: str | None
    rollback_strategy: str | None
    frameworks: list[str]
    extra_fields: list[str] = field(default_factory=list)


KNOWN_FIELDS = frozenset({
    *TEXT_FIELDS, "task_id", "id", "environment", "env", "target_environment", "env_vars",
    "environment_variables", "hostname", "hostnames", "host", "hosts", "domain", "domains", "url",
    "namespace", "namespaces", "k8s_namespace", "kubernetes_namespace", "branch", "git_branch",
    "branches", "paths", "path", "file_paths", "files", "working_directory", "tags", "aws_tags",
    "production", "critical", "customer_facing", "high_risk", "irreversible", "data_types",
    "data", "data_classes", "data_classification", "operations", "operation", "operation_type",
    "services", "service", "services_affected", "components", "component", "regions", "region",
    "customers_affected", "affected_customers", "customer_impact", "affected_users",
    "reversibility", "rollback", "rollback_strategy", "compliance", "frameworks",
    "compliance_requirements", "operation_details", "target", "impact_assessment",
    "technical_requirements", "master_id", "requested_by",
})


def _where(path: str) -> str:
    return f"task.{path}"


def _strings(value: Any, path: str) -> list[str]:
    """A string, or a list of strings/scalars, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, bool):
        raise InputError("input.schema", f"{_where(path)}: expected text or a list, got a boolean")
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, list):
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                # [{"name": "api"}] or [{"type": "deploy"}]: take the first naming field
                named = next((item[k] for k in ("name", "type", "id", "service", "operation")
                              if isinstance(item.get(k), str)), None)
                if named is None:
                    raise InputError("input.schema", f"{_where(f'{path}[{i}]')}: expected text")
                out.append(named)
            elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
                out.append(str(item))
            else:
                raise InputError("input.schema", f"{_where(f'{path}[{i}]')}: expected text")
        return out
    raise InputError("input.schema", f"{_where(path)}: expected text or a list of text")


def _mapping(value: Any, path: str) -> dict[str, str]:
    """{"NODE_ENV": "production"} or ["NODE_ENV=production"] -> dict."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            if not isinstance(item, str) or ("=" not in item and ":" not in item):
                raise InputError("input.schema",
                                 f"{_where(f'{path}[{i}]')}: expected NAME=value")
            sep = "=" if "=" in item else ":"
            key, _, val = item.partition(sep)
            out[key.strip()] = val.strip()
        return out
    raise InputError("input.schema", f"{_where(path)}: expected an object or a list of NAME=value")


def _int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise InputError("input.schema", f"{_where(path)}: expected a number")
    if value < 0:
        raise InputError("input.schema", f"{_where(path)}: must not be negative")
    return int(value)


def _label(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError("input.schema", f"{_where(path)}: expected text")
    return value.strip().lower() or None


def _first(*candidates: tuple[Any, str]) -> tuple[Any, str]:
    for value, path in candidates:
        if value is not None:
            return value, path
    return None, candidates[0][1]


def derive_task_id(task: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()
    return f"task-{digest[:16]}"


def read_task(task: Any, task_id: str | None = None) -> TaskFacts:
    if not isinstance(task, dict):
        raise InputError("input.schema", "task: expected a JSON object")
    details = task.get("operation_details") or {}
    target = task.get("target") or {}
    impact = task.get("impact_assessment") or {}
    technical = task.get("technical_requirements") or {}
    compliance_req = task.get("compliance_requirements") or {}
    for name, part in (("operation_details", details), ("target", target),
                       ("impact_assessment", impact), ("technical_requirements", technical),
                       ("compliance_requirements", compliance_req)):
        if not isinstance(part, dict):
            raise InputError("input.schema", f"{_where(name)}: expected an object")

    task_id_value = task.get("task_id", task.get("id"))
    if task_id_value is not None and not isinstance(task_id_value, (str, int)):
        raise InputError("input.schema", "task.task_id: expected text")
    if task_id is None:
        task_id = str(task_id_value) if task_id_value not in (None, "") else derive_task_id(task)

    texts: list[str] = []
    for name in TEXT_FIELDS:
        texts += _strings(task.get(name), name)
    texts += _strings(details.get("description"), "operation_details.description")
    text = " \n".join(texts)[:MAX_TEXT].lower()

    env_value, env_path = _first((task.get("environment"), "environment"),
                                 (task.get("env"), "env"),
                                 (task.get("target_environment"), "target_environment"),
                                 (details.get("environment"), "operation_details.environment"),
                                 (target.get("environment"), "target.environment"))
    flags: dict[str, bool] = {}
    for flag in ("production", "critical", "customer_facing", "high_risk", "irreversible"):
        value = task.get(flag, impact.get(flag))
        if value is not None:
            if not isinstance(value, bool):
                raise InputError("input.schema", f"{_where(flag)}: expected true or false")
            flags[flag] = value

    rollback = task.get("rollback", technical.get("rollback"))
    strategy = None
    if isinstance(rollback, dict):
        strategy = _label(rollback.get("strategy"), "rollback.strategy")
    elif isinstance(rollback, str):
        strategy = rollback.strip().lower()
    strategy = _label(task.get("rollback_strategy"), "rollback_strategy") or strategy

    customers_value, customers_path = _first(
        (task.get("customers_affected"), "customers_affected"),
        (task.get("affected_customers"), "affected_customers"))
    frameworks = (_strings(task.get("compliance"), "compliance")
                  + _strings(task.get("frameworks"), "frameworks")
                  + _strings(compliance_req.get("frameworks"), "compliance_requirements.frameworks"))

    return TaskFacts(
        task_id=task_id,
        text=text,
        environment_label=_label(env_value, env_path),
        env_vars=_mapping(task.get("env_vars", task.get("environment_variables")), "env_vars"),
        hostnames=[h.lower() for h in _strings(task.get("hostname"), "hostname")
                   + _strings(task.get("hostnames"), "hostnames")
                   + _strings(task.get("host"), "host") + _strings(task.get("hosts"), "hosts")
                   + _strings(task.get("domain"), "domain")
                   + _strings(task.get("domains"), "domains")
                   + _strings(task.get("url"), "url")],
        namespaces=[n.lower() for n in _strings(task.get("namespace"), "namespace")
                    + _strings(task.get("namespaces"), "namespaces")
                    + _strings(task.get("k8s_namespace"), "k8s_namespace")
                    + _strings(task.get("kubernetes_namespace"), "kubernetes_namespace")],
        branches=_strings(task.get("branch"), "branch")
        + _strings(task.get("git_branch"), "git_branch")
        + _strings(task.get("branches"), "branches"),
        paths=_strings(task.get("paths"), "paths") + _strings(task.get("path"), "path")
        + _strings(task.get("file_paths"), "file_paths") + _strings(task.get("files"), "files")
        + _strings(task.get("working_directory"), "working_directory"),
        tags={k.lower(): v.lower() for k, v in
              {**_mapping(task.get("aws_tags"), "aws_tags"),
               **_mapping(task.get("tags"), "tags")}.items()},
        flags=flags,
        data_types=_strings(task.get("data_types"), "data_types")
        + _strings(task.get("data"), "data") + _strings(task.get("data_classes"), "data_classes")
        + _strings(task.get("data_classification"), "data_classification"),
        operations=_strings(task.get("operations"), "operations")
        + _strings(task.get("operation"), "operation")
        + _strings(task.get("operation_type"), "operation_type")
        + _strings(details.get("operations"), "operation_details.operations"),
        services=_strings(task.get("services"), "services")
        + _strings(task.get("service"), "service")
        + _strings(task.get("services_affected"), "services_affected")
        + _strings(details.get("services_affected"), "operation_details.services_affected")
        + _strings(target.get("services"), "target.services"),
        components=_strings(task.get("components"), "components")
        + _strings(task.get("component"), "component")
        + _strings(target.get("components"), "target.components")
        + _strings(target.get("infrastructure"), "target.infrastructure"),
        regions=_strings(task.get("regions"), "regions") + _strings(task.get("region"), "region")
        + _strings(target.get("region"), "target.region")
        + _strings(target.get("regions"), "target.regions"),
        customers_affected=_int(customers_value, customers_path),
        customer_impact_label=_label(task.get("customer_impact", impact.get("affected_users")),
                                     "customer_impact"),
        reversibility_label=_label(task.get("reversibility", impact.get("reversibility")),
                                   "reversibility"),
        rollback_strategy=strategy,
        frameworks=frameworks,
        extra_fields=sorted(k for k in task if k not in KNOWN_FIELDS),
    )
