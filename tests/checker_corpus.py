"""The golden corpus of the checker: many varied tasks and what decide() answered for each.

The answers were recorded from the checker as it stood before its speed-up (issue 2), so that any
later change to how the checker computes can be proved not to change what it decides: every field
of every answer, byte for byte. Regenerate only when the *rules* change on purpose:

    .venv/bin/python -m tests.checker_corpus     # rewrites tests/data/checker_golden.json.gz

Tasks come from the sample stream, the scenario table, the README examples and a seeded random
mix of every spelling the policy and the task reader know (labels, names, words, nested shapes,
malformed values), so each detection path is taken many times, alone and in combination.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import random
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).parent / "data" / "checker_golden.json.gz"
RANDOM_TASKS = 30_000
FULL_EVERY = 20  # every 20th answer kept whole (the rest as hashes), so a failure shows a diff
SEED = 2026_11_26
GIVEN_ID_EVERY = 7  # every 7th task is also decided under a task id given by the caller

# --- vocabularies: every spelling the policy and the task reader know, plus near misses --------

LABELS = ["production", "prod", "live", "prd", "production_readonly", "production_critical",
          "critical_production", "prod_critical", "production_multi_region",
          "multi_region_production", "multi-region", "multi_region", "global_production",
          "staging", "stage", "stg", "preprod", "pre-production", "uat", "development", "dev",
          "develop", "sandbox", "test", "testing", "qa", "ci", "local", "localhost", "laptop",
          "moon", "Production", " PROD ", "Staging", "", "prod-eu", "qa2"]
ENV_VAR_NAMES = ["NODE_ENV", "RAILS_ENV", "ENV", "ENVIRONMENT", "DEPLOY_ENV", "APP_ENV", "STAGE",
                 "node_env", "PATH", "HOME", "LOG_LEVEL"]
ENV_VAR_VALUES = ["prod", "production", "live", "prd", "stag", "staging", "stage", "preprod",
                  "dev", "development", "develop", "test", "testing", "qa", "local", "Production",
                  " prod ", "prod1", "debug", "/usr/bin", ""]
HOSTS = ["api.example.com", "www.example.com", "orders.prod.internal", "db.production.corp",
         "web-prod-1.corp", "shop.live.eu", "x.prd.y", "prod-db-1", "prod.orders", "cache.prod",
         "payments.io", "stats.net", "a.staging.b", "web-staging-2", "staging-db",
         "api.staging", "x.stage.y", "tool.dev", "box-dev-1", "dev-box", "a.dev.b", "svc.internal",
         "svc.test", "web-test-1", "test-runner", "a.test.b", "localhost", "127.0.0.1",
         "me.local", "x.localhost", "::1", "https://api.example.com/v1", "http://tool.dev/x",
         "ftp://files.prod.corp/a", "ci-runner-7", "HOST.PROD.CORP", "10.0.0.5"]
NAMESPACES = ["production", "prod", "default", "staging", "stage", "development", "dev", "test",
              "qa", "local", "kube-system", "Prod", "team-a"]
BRANCHES = ["main", "master", "production", "release/1.2", "staging", "stage", "dev", "develop",
            "feature/login", "bugfix/x", "experiment/y", "test", "hotfix/z", "Main", "wip"]
PATHS = ["/tmp/scratch/a.py", "/var/tmp/x", "~/dev/app", "~/projects/p", "/Users/ann/code",
         "/home/bob/src", "/opt/app/.local/bin", "/srv/app/tests/test_a.py", "/srv/app/test/x",
         "/srv/app/spec/y_spec.rb", "/etc/nginx/nginx.conf", "/srv/app/main.py"]
TAG_KEYS = ["Environment", "env", "ENV", "Owner", "team"]
TAG_VALUES = ["production", "prod", "staging", "dev", "test", "local", "critical_production",
              "multi-region", "sandbox", "blue"]
FLAGS = ["production", "critical", "customer_facing", "high_risk", "irreversible"]
DATA_NAMES = ["pii", "email", "emails", "phone", "phone_number", "address", "ssn", "name", "names",
              "dob", "date_of_birth", "personal", "personal_data", "user_data", "customer_data",
              "customer_pii", "contact_information", "social_security", "phi", "medical_records",
              "health_data", "diagnoses", "treatments", "medical", "patient_data",
              "prescriptions", "financial", "credit_card", "credit_cards", "bank_account",
              "payment_info", "payments", "transactions", "billing", "invoices",
              "cardholder_data", "credentials", "passwords", "password", "api_keys", "api_key",
              "tokens", "secrets", "secret", "certificates", "private_keys",
              "internal_confidential", "confidential", "restricted", "internal", "internal_data",
              "logs", "metrics", "telemetry", "test_data", "test", "synthetic", "mock_data",
              "fixtures", "sample_data", "public", "none", "docs", "documentation", "open_data",
              "Customer Data", "customer-data", "Credit.Card", "API Keys", "widgets", "blobs",
              "geo_data", " Logs "]
OPERATION_NAMES = ["database_migration", "schema_change", "migration", "migrate", "alter_table",
                   "db_migration", "infrastructure_change", "terraform_apply", "terraform",
                   "cloudformation", "kubernetes", "cluster_change", "network_change",
                   "scale_cluster", "security_operation", "security_configuration", "iam_change",
                   "firewall_change", "rbac_change", "user_credential_modification",
                   "key_rotation", "certificate_rotation", "data_deletion",
                   "data_deletion_production", "delete", "delete_records", "purge", "drop",
                   "truncate", "payment_processing", "refund", "charge", "read", "read_only",
                   "query", "select", "get", "list", "describe", "view", "inspect", "monitor",
                   "monitoring", "observe", "export", "health_check", "log_analysis",
                   "metrics_querying", "code_reading", "documentation_reading",
                   "api_exploration", "database_schema_inspection", "configuration_reading",
                   "audit", "report", "deploy", "deployment", "release", "rollout",
                   "application_deployment", "configuration_change", "configuration_update",
                   "feature_flag", "feature_implementation", "documentation_update",
                   "test_writing", "Read Only", "health-check", "Deploy", "bake_cake"]
SERVICES = ["web", "api", "mobile", "email", "notifications", "notification", "frontend",
            "checkout", "storefront", "gateway", "billing", "search", "profile", "orders",
            "scheduler", "worker", "web-api", "api_gateway", "Mobile App", "reports"]
COMPONENTS = ["load_balancer", "load balancer", "loadbalancers", "cdn", "cache", "redis",
              "memcached", "message_queue", "message queues", "kafka", "rabbitmq", "database",
              "databases", "dns", "cron", "sidecar", "Redis Cluster", "db"]
REGIONS = ["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"]
CUSTOMER_LABELS = ["all_customers", "all", "customer_segment", "segment", "subset", "some",
                   "internal_users", "internal", "no_users", "none", "all-customers", "everyone",
                   "No_Users"]
REVERSIBILITY = ["irreversible", "none", "complex_rollback", "complex", "manual_rollback",
                 "manual", "backup_restore", "automated_rollback", "automated", "auto",
                 "blue_green", "blue-green", "canary", "fully_reversible", "full", "reversible",
                 "Automated-Rollback", "maybe"]
FRAMEWORKS = ["SOX", "sox", "HIPAA", "hitech", "PCI-DSS", "PCI DSS", "pci_dss", "PCI_DSS", "pci",
              "GDPR", "gdpr", "SOC 2", "SOC2", "soc-2", "ISO27001", "Sarbanes-Oxley", "FedRAMP"]
PHRASES = [
    # environment words
    "in production", "on prod", "the live site", "to staging", "in development", "dev box",
    "run locally", "in the test environment", "test env", "qa pass", "production-critical",
    "preproduction", "devops", "reproduction steps", "alive", "productionize",
    # data words
    "customer emails", "e-mail", "phone numbers", "the phone", "SSNs", "social security",
    "date of birth", "DOB", "personal data", "personal information", "PII", "user data",
    "customer records", "customer information", "contact information", "home address",
    "mailing addresses", "full names", "medical", "health records", "patients", "diagnoses",
    "treatment", "prescriptions", "healthcare", "HIPAA", "PHI", "payments", "credit card",
    "bank accounts", "financial", "transaction history", "billing", "invoices", "PCI",
    "cardholder", "ledger balances", "passwords", "api key", "access tokens", "secrets",
    "private keys", "credential", "TLS certificates", "confidential", "emailing",
    # operations
    "ALTER TABLE orders", "alter  table", "DROP TABLE users", "drop column x", "TRUNCATE logs",
    "migrate the schema", "migrations", "migrating", "schema change", "schema_change",
    "the schema needs an update", "schema modifications", "terraform apply", "cloudformation",
    "kubernetes", "kubectl rollout", "k8s", "helm upgrade", "the cluster", "clusters",
    "networking", "network", "VPC", "load balancers", "DNS records", "firewall", "IAM roles",
    "RBAC", "encryption", "certificate", "authentication", "authorization", "auth",
    "security groups", "permission change", "permissions policies", "DELETE FROM sessions",
    "delete old data", "deleting rows", "deletion of backups", "purge", "purging", "remove users",
    "removing stale buckets", "wipe", "process payments", "processing payment", "refunds",
    # read-only / write words
    "insert rows", "update the counters", "upsert", "create index", "deploy", "write",
    "modify", "change", "apply", "restart", "scale", "rotate", "remove", "grant", "revoke",
    "query the logs", "read dashboards", "inspect metrics",
    # deploy words
    "deploys", "deploying", "deployment", "release", "roll out", "rolling out", "rollout",
    "upgrade",
    # impact words
    "the web app", "api", "mobile", "notifications", "frontend", "checkout", "storefront",
    "gateway",
    # compliance keywords
    "sox controls", "sarbanes-oxley", "sarbanes oxley", "hitech", "pci-dss", "pci dss",
    "pci_dss", "GDPR", "data protection impact assessment", "soc 2", "soc2", "soc-2",
    # neutral words
    "Adjust worker settings", "Implement pagination", "Fix typo", "Refactor module",
    "Improve logging", "Tune cache TTLs", "Write unit tests", "Investigate flaky job",
    "résumé café", "ÄÖÜ ß", "emoji \u2603", "tabs\tand\nnewlines",
]
TEXT_FIELDS = ["task", "description", "title", "name", "summary", "details", "command",
               "commands", "sql", "script", "query", "justification"]
CASINGS = (str, str.lower, str.upper, str.title)


def _some(r: random.Random, items: list[Any], most: int = 3) -> list[Any]:
    return r.sample(items, r.randint(1, most))


def _text(r: random.Random) -> str:
    words = [r.choice(CASINGS)(p) for p in r.sample(PHRASES, r.randint(0, 5))]
    return r.choice([" ", ", ", "; ", " and ", "\n"]).join(words) or r.choice(["", "Do it"])


def _names(r: random.Random, names: list[str], most: int = 3) -> Any:
    picked = _some(r, names, most)
    shape = r.random()
    if shape < 0.15:
        return picked[0]  # a single string
    if shape < 0.22:
        return [{"name": p} if r.random() < 0.5 else {"type": p} for p in picked]
    return picked


def _malformed(r: random.Random, task: dict[str, Any]) -> None:
    field, value = r.choice([
        ("environment", 42), ("services", {"a": 1}), ("customers_affected", "many"),
        ("production", "yes"), ("operations", [True]), ("data_types", [{"x": 1}]),
        ("env_vars", ["NOSEPARATOR"]), ("env_vars", 7), ("target", "prod"),
        ("customers_affected", -3), ("regions", True), ("reversibility", ["a"]),
        ("task_id", {"x": 1}), ("tags", "prod"), ("services", [None]),
    ])
    task[field] = value


def random_task(r: random.Random) -> dict[str, Any]:  # one draw per field, in one place
    task: dict[str, Any] = {}
    for name in r.sample(TEXT_FIELDS, r.choice([0, 1, 1, 1, 1, 2, 3])):
        task[name] = _text(r)
    if r.random() < 0.6:
        task[r.choice(["environment", "environment", "env", "target_environment"])] = \
            r.choice(LABELS)
    if r.random() < 0.15:
        names = r.sample(ENV_VAR_NAMES, r.randint(1, 3))
        values = [r.choice(ENV_VAR_VALUES) for _ in names]
        task[r.choice(["env_vars", "environment_variables"])] = (
            dict(zip(names, values, strict=True)) if r.random() < 0.6 else
            [f"{n}{r.choice(['=', ': ', ':'])}{v}" for n, v in zip(names, values, strict=True)])
    if r.random() < 0.15:
        task[r.choice(["hostname", "hostnames", "host", "domain", "url"])] = _names(r, HOSTS, 2)
    if r.random() < 0.08:
        task[r.choice(["namespace", "k8s_namespace", "namespaces"])] = _names(r, NAMESPACES, 2)
    if r.random() < 0.1:
        task[r.choice(["branch", "git_branch"])] = r.choice(BRANCHES)
    if r.random() < 0.08:
        task[r.choice(["paths", "path", "files", "working_directory"])] = _names(r, PATHS, 2)
    if r.random() < 0.08:
        task[r.choice(["tags", "aws_tags"])] = {r.choice(TAG_KEYS): r.choice(TAG_VALUES)
                                                for _ in range(r.randint(1, 2))}
    for flag in FLAGS:
        if r.random() < 0.05:
            task[flag] = r.random() < 0.7
    if r.random() < 0.5:
        task[r.choice(["data_types", "data", "data_classes", "data_classification"])] = \
            _names(r, DATA_NAMES)
    if r.random() < 0.6:
        task[r.choice(["operations", "operations", "operation", "operation_type"])] = \
            _names(r, OPERATION_NAMES)
    if r.random() < 0.4:
        task[r.choice(["services", "service", "services_affected"])] = _names(r, SERVICES, 4)
    if r.random() < 0.2:
        task[r.choice(["components", "component"])] = _names(r, COMPONENTS, 2)
    if r.random() < 0.15:
        task[r.choice(["regions", "region"])] = _names(r, REGIONS, 3)
    if r.random() < 0.2:
        task[r.choice(["customers_affected", "affected_customers"])] = r.choice(
            [0, 1, 10, 999, 1000, 1001, 5000, 10_000, 10_001, 50_000, "250", 12.0])
    if r.random() < 0.25:
        task["customer_impact"] = r.choice(CUSTOMER_LABELS)
    if r.random() < 0.25:
        task["reversibility"] = r.choice(REVERSIBILITY)
    if r.random() < 0.08:
        strategy = r.choice(REVERSIBILITY)
        task["rollback_strategy" if r.random() < 0.5 else "rollback"] = (
            strategy if r.random() < 0.5 else {"strategy": strategy})
    if r.random() < 0.15:
        task[r.choice(["compliance", "frameworks"])] = _names(r, FRAMEWORKS, 2)
    if r.random() < 0.12:  # permit-system.md / permit-workflow.md nested shapes
        nested = r.choice(["operation_details", "target", "impact_assessment",
                           "technical_requirements", "compliance_requirements"])
        task[nested] = {
            "operation_details": lambda: {"description": _text(r), "environment": r.choice(LABELS),
                                          "operations": _some(r, OPERATION_NAMES),
                                          "services_affected": _some(r, SERVICES)},
            "target": lambda: {"environment": r.choice(LABELS), "region": r.choice(REGIONS),
                               "services": _some(r, SERVICES),
                               "components": _some(r, COMPONENTS),
                               "infrastructure": _some(r, COMPONENTS)},
            "impact_assessment": lambda: {"affected_users": r.choice(CUSTOMER_LABELS),
                                          "reversibility": r.choice(REVERSIBILITY),
                                          "customer_facing": r.random() < 0.5,
                                          "irreversible": r.random() < 0.3},
            "technical_requirements": lambda: {"rollback": {"strategy": r.choice(REVERSIBILITY)}},
            "compliance_requirements": lambda: {"frameworks": _some(r, FRAMEWORKS, 2)},
        }[nested]()
    if r.random() < 0.3:
        task[r.choice(["task_id", "id"])] = f"t-{r.randrange(10**6)}"
    if r.random() < 0.1:
        task[r.choice(["master_id", "requested_by"])] = f"m-{r.randrange(9)}"
    if r.random() < 0.1:
        task[r.choice(["ticket", "owner", "risk_score", "priority"])] = r.choice(
            ["OPS-1", {"team": "x"}, 3, None])
    if r.random() < 0.04:
        _malformed(r, task)
    return task


# Where a faster matcher could differ from the regexes it stands for: letters that lower() keeps
# but IGNORECASE folds (long s, Kelvin sign, dotted I), words split where the operation names
# are joined to the free text, upper-case operation names, text past the reading limit.
EDGE_TASKS: list[Any] = [
    {"task": "Update the \u017f\u017fn table", "operations": ["ssn"], "environment": "dev"},
    {"task": "Export the \u017f\u017fn column", "environment": "development"},
    {"task": "Pa\u017f\u017fwords for \u212a8s", "operations": ["view"],
     "environment": "staging"},
    {"task": "\u0130stanbul release \u0130AM", "environment": "production"},
    {"task": "Run the test", "operations": ["env"], "environment": "local"},
    {"task": "Run the test", "operations": ["environment"]},
    {"task": "customer", "operations": ["data export"]},
    {"task": "Rotate", "operations": ["DROP TABLE users", "Purge Backups"]},
    {"task": "\u03a3\u03a5\u03a3\u03a4\u0397\u039c\u0391", "operations": ["\u03a3QL"]},
    {"task": "x" * 20_000 + " production payments", "environment": "test"},
    {"task": "y" * 19_990 + " payments", "environment": "test"},
    {"task": "SOX", "compliance": ["sox"], "description": "Sarbanes-Oxley and HIPAA"},
    {"task": "pci-dss scope", "operations": ["pci"], "environment": "development"},
]


def corpus_tasks() -> list[Any]:
    """Every task of the golden corpus, in a fixed order."""
    from bench.checker_bench import sample_tasks
    from tests.test_checker_scenarios import SCENARIOS

    tasks: list[Any] = [p.values[0] for p in SCENARIOS]
    seen: set[str] = set()
    for task in sample_tasks(20_000):  # the benchmark's own input: its distinct shapes
        key = json.dumps({k: v for k, v in task.items() if k != "task_id"}, sort_keys=True)
        if key not in seen:
            seen.add(key)
            tasks.append(task)
    r = random.Random(SEED)
    tasks += [random_task(r) for _ in range(RANDOM_TASKS)]
    tasks += [["not", "an", "object"], "text", None, 42]
    tasks += EDGE_TASKS
    return tasks


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def answer(task: Any, policy: Any, *, memo: bool, task_id: str | None = None) -> str:
    """Everything decide() says about a task, as canonical JSON: the event payload, the
    `certify check` report, the facts and findings other modules read, or the input error."""
    from events import InputError
    from rules.checker import decide

    try:
        decision = decide(task, policy, task_id, memo=memo)
    except InputError as error:
        return json.dumps({"error": [error.code, error.message]})
    return json.dumps({
        "decided": decision.decided.model_dump(mode="json"),
        "report": decision.to_report(),
        "facts": _plain(decision.facts),
        "findings": _plain(decision.findings),
        "hard_block_messages": decision.hard_block_messages,
        "permit_type": decision.permit_type,
        "tokens": decision.tokens,
        "time_limit_minutes": decision.time_limit_minutes,
        "level_rule": decision.level_rule,
    }, sort_keys=True, ensure_ascii=False)


def given_id(index: int) -> str:
    return f"given-{index}"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]  # 64 bits: enough to see a change


def build() -> dict[str, Any]:
    from rules.policy import default_policy

    policy = default_policy()
    tasks = corpus_tasks()
    answers = [answer(t, policy, memo=False) for t in tasks]
    return {"policy_sha256": policy.sha256, "tasks": tasks,
            "hashes": [digest(a) for a in answers],
            "hashes_given_id": {str(i): digest(answer(tasks[i], policy, memo=False,
                                                      task_id=given_id(i)))
                                for i in range(0, len(tasks), GIVEN_ID_EVERY)},
            "full": {str(i): json.loads(a) for i, a in enumerate(answers)
                     if i % FULL_EVERY == 0}}


def load() -> dict[str, Any]:
    with gzip.open(GOLDEN_PATH, "rt", encoding="utf-8") as file:
        return json.load(file)


if __name__ == "__main__":
    golden = build()
    GOLDEN_PATH.parent.mkdir(exist_ok=True)
    with gzip.open(GOLDEN_PATH, "wt", encoding="utf-8", compresslevel=9) as out:
        json.dump(golden, out, separators=(",", ":"), ensure_ascii=False)
    errors = sum(1 for a in golden["full"].values() if "error" in a)
    print(f"{len(golden['tasks'])} tasks, {len(set(golden['hashes']))} distinct answers, "
          f"{len(golden['full'])} kept whole ({errors} input errors); wrote {GOLDEN_PATH}")
