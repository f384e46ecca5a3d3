"""Read a task document in any of the seed's shapes into one flat, typed set of facts.

The seed documents name the same thing several ways (README examples, certification-checker v2,
permit-system.md `operation_details`, permit-workflow.md `target` / `impact_assessment`). We accept
them all; fields we do not know are kept on the task as sent, never fatal. A field of the wrong
kind (a number where a list belongs) is an error naming that field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

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


T = TypeVar("T")


def frozen_instance(cls: type[T], values: dict[str, Any]) -> T:
    """An instance of a frozen dataclass from every one of its fields, without the generated
    __init__'s object.__setattr__ per field (in CPython 3.11 that costs more than the rest of
    building the facts). Afterwards it is as frozen, equal and printable as one from cls(...)."""
    instance = object.__new__(cls)
    instance.__dict__.update(values)
    return instance


def field_names(cls: type) -> frozenset[str]:
    """The fields a frozen_instance of cls must be given (checked by the tests)."""
    return frozenset(f.name for f in fields(cls))


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


# Where each seed spelling of a fact goes: path -> (attribute, kind). Kinds: "text" (free text),
# "strings" (list), "label" (one lower-case word; the earliest row wins), "mapping", "count",
# "flag". Nested objects are read through their dotted paths.
FIELD_TABLE: dict[str, tuple[str, str]] = {
    **{name: ("text", "text") for name in TEXT_FIELDS},
    "operation_details.description": ("text", "text"),
    "environment": ("environment_label", "label"),
    "env": ("environment_label", "label"),
    "target_environment": ("environment_label", "label"),
    "operation_details.environment": ("environment_label", "label"),
    "target.environment": ("environment_label", "label"),
    "env_vars": ("env_vars", "mapping"),
    "environment_variables": ("env_vars", "mapping"),
    **{name: ("hostnames", "strings") for name in
       ("hostname", "hostnames", "host", "hosts", "domain", "domains", "url")},
    **{name: ("namespaces", "strings") for name in
       ("namespace", "namespaces", "k8s_namespace", "kubernetes_namespace")},
    **{name: ("branches", "strings") for name in ("branch", "git_branch", "branches")},
    **{name: ("paths", "strings") for name in
       ("paths", "path", "file_paths", "files", "working_directory")},
    "aws_tags": ("tags", "mapping"),
    "tags": ("tags", "mapping"),
    **{name: ("flags", "flag") for name in
       ("production", "critical", "customer_facing", "high_risk", "irreversible")},
    **{f"impact_assessment.{name}": ("flags", "flag") for name in
       ("customer_facing", "irreversible")},
    **{name: ("data_types", "strings") for name in
       ("data_types", "data", "data_classes", "data_classification")},
    **{name: ("operations", "strings") for name in
       ("operations", "operation", "operation_type", "operation_details.operations")},
    **{name: ("services", "strings") for name in
       ("services", "service", "services_affected", "operation_details.services_affected",
        "target.services")},
    **{name: ("components", "strings") for name in
       ("components", "component", "target.components", "target.infrastructure")},
    **{name: ("regions", "strings") for name in
       ("regions", "region", "target.region", "target.regions")},
    "customers_affected": ("customers_affected", "count"),
    "affected_customers": ("customers_affected", "count"),
    "customer_impact": ("customer_impact_label", "label"),
    "impact_assessment.affected_users": ("customer_impact_label", "label"),
    "reversibility": ("reversibility_label", "label"),
    "impact_assessment.reversibility": ("reversibility_label", "label"),
    "rollback_strategy": ("rollback_strategy", "label"),
    "rollback.strategy": ("rollback_strategy", "label"),
    "technical_requirements.rollback.strategy": ("rollback_strategy", "label"),
    **{name: ("frameworks", "strings") for name in
       ("compliance", "frameworks", "compliance_requirements.frameworks")},
}
PRIORITY = {path: rank for rank, path in enumerate(FIELD_TABLE)}
# path -> (attribute, kind, priority); "text" is read as "strings" are (into the "text" list)
READERS = {path: (attribute, "strings" if kind == "text" else kind, PRIORITY[path])
           for path, (attribute, kind) in FIELD_TABLE.items()}
NESTED = frozenset({"operation_details", "target", "impact_assessment", "technical_requirements",
                    "compliance_requirements", "rollback", "technical_requirements.rollback"})
IDENTITY_FIELDS = frozenset({"task_id", "id", "master_id", "requested_by"})
KNOWN_FIELDS = frozenset(path.split(".")[0] for path in FIELD_TABLE) | NESTED | IDENTITY_FIELDS


def derive_task_id(task: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(task, sort_keys=True, default=str).encode()).hexdigest()
    return f"task-{digest[:16]}"


def _walk(document: dict[str, Any], prefix: str = "") -> Any:
    """(path, value) for every field we know, descending into the known nested objects."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if path in FIELD_TABLE:
            yield path, value
        if path in NESTED:
            if isinstance(value, dict):
                yield from _walk(value, f"{path}.")
            elif path == "rollback" and isinstance(value, str):
                yield "rollback.strategy", value
            elif value is not None:
                raise InputError("input.schema", f"{_where(path)}: expected an object")


def task_identity(task: dict[str, Any]) -> str:
    given = task.get("task_id", task.get("id"))
    if given is not None and (isinstance(given, bool) or not isinstance(given, (str, int))):
        raise InputError("input.schema", "task.task_id: expected text")
    return str(given) if given not in (None, "") else derive_task_id(task)


def read_task(task: Any, task_id: str | None = None) -> TaskFacts:
    if not isinstance(task, dict):
        raise InputError("input.schema", "task: expected a JSON object")
    if task_id is None:
        given = task.get("task_id")
        task_id = given if given.__class__ is str and given else task_identity(task)

    lists: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    label_priority: dict[str, int] = {}  # the earliest FIELD_TABLE row wins
    mappings: dict[str, dict[str, str]] = {}
    flags: dict[str, bool] = {}
    customers: int | None = None
    flat = NESTED.isdisjoint(task)  # most masters' tasks: no nested object to walk
    for path, value in task.items() if flat else _walk(task):
        reader = READERS.get(path)
        if reader is None:  # a field we do not know (kept, see extra_fields)
            continue
        attribute, kind, priority = reader
        if kind == "strings":  # and "text"
            if value is not None:
                if value.__class__ is str:  # the usual case, as _strings reads it
                    if value.strip():
                        found = lists.get(attribute)
                        if found is None:
                            lists[attribute] = [value]
                        else:
                            found.append(value)
                elif value.__class__ is list and (
                        value[0].__class__ is str if len(value) == 1 else
                        all(item.__class__ is str for item in value)):
                    lists.setdefault(attribute, []).extend(value)  # what _strings would return
                else:
                    lists.setdefault(attribute, []).extend(_strings(value, path))
        elif kind == "label":
            label = (value.strip().lower() or None) if value.__class__ is str else \
                _label(value, path)
            if label and (attribute not in labels or priority < label_priority[attribute]):
                labels[attribute] = label
                label_priority[attribute] = priority
        elif kind == "mapping":
            mappings.setdefault(attribute, {}).update(_mapping(value, path))
        elif kind == "flag":
            if value is not None:
                if not isinstance(value, bool):
                    raise InputError("input.schema", f"{_where(path)}: expected true or false")
                flags[path.rsplit(".", 1)[-1]] = value
        elif kind == "count":
            counted = _int(value, path)
            customers = counted if customers is None else customers

    label = labels.get
    get = lists.get
    texts = get("text")
    hostnames = get("hostnames")
    namespaces = get("namespaces")
    tags = mappings.get("tags")
    return frozen_instance(TaskFacts, {
        "task_id": task_id,
        "text": " \n".join(texts)[:MAX_TEXT].lower() if texts else "",
        "environment_label": label("environment_label"),
        "env_vars": mappings.get("env_vars", {}),
        "hostnames": [h.lower() for h in hostnames] if hostnames else [],
        "namespaces": [n.lower() for n in namespaces] if namespaces else [],
        "branches": get("branches", []),
        "paths": get("paths", []),
        "tags": {k.lower(): v.lower() for k, v in tags.items()} if tags else {},
        "flags": flags,
        "data_types": get("data_types", []),
        "operations": get("operations", []),
        "services": get("services", []),
        "components": get("components", []),
        "regions": get("regions", []),
        "customers_affected": customers,
        "customer_impact_label": label("customer_impact_label"),
        "reversibility_label": label("reversibility_label"),
        "rollback_strategy": label("rollback_strategy"),
        "frameworks": get("frameworks", []),
        "extra_fields": [] if KNOWN_FIELDS.issuperset(task) else sorted(task.keys() - KNOWN_FIELDS),
    })
