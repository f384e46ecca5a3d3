"""A built-in, deterministic, realistic stream of inbound records for `certify run`.

Every level appears, hard blocks appear, and so do bad records (malformed JSON, unknown types,
schema violations, derived types sent as input, oversize), as one JSON line each.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from events import format_time

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NAMESPACE = uuid.UUID("5b1f0c7e-1d7e-4c57-9d0e-2f4c7f7a9a10")

SERVICES = ["billing", "search", "profile", "orders", "inventory", "notifications", "reports"]
REGIONS = ["us-east-1", "eu-west-1", "ap-south-1"]

# (weight, template) — a template returns a task document given a random source.
TEMPLATES = [
    (18, lambda r: {"task": f"Implement {r.choice(['pagination', 'caching', 'retry'])} in "
                    f"{r.choice(SERVICES)} service", "environment": "development",
                    "operations": ["feature_implementation"], "data_types": ["test_data"],
                    "branch": f"feature/{r.randrange(1000, 9999)}"}),
    (10, lambda r: {"task": "Update README and API docs", "environment": "local",
                    "operations": ["documentation_update"], "data_types": ["public"]}),
    (10, lambda r: {"task": "Write unit tests for order totals", "environment": "test",
                    "operations": ["test_writing"], "env_vars": {"NODE_ENV": "test"}}),
    (8, lambda r: {"task": "Query production error logs for the last hour",
                   "environment": "production", "operations": ["log_analysis", "query"],
                   "data_types": ["logs"], "services": [r.choice(SERVICES)],
                   "customer_impact": "no_users"}),
    (8, lambda r: {"task": f"Deploy {r.choice(SERVICES)} v{r.randrange(2, 9)}."
                   f"{r.randrange(0, 20)} to staging", "environment": "staging",
                   "operations": ["deploy"], "reversibility": "automated_rollback"}),
    (14, lambda r: {"task": f"Deploy {r.choice(SERVICES)} v{r.randrange(2, 9)}."
                    f"{r.randrange(0, 20)} to production", "environment": "production",
                    "operations": ["deploy"], "services": [r.choice(SERVICES)],
                    "reversibility": "automated_rollback", "customer_impact": "internal_users"}),
    (6, lambda r: {"task": "Migrate customer data schema: ALTER TABLE customers ADD COLUMN "
                   "phone_verified", "environment": "production",
                   "operations": ["database_migration"], "data_types": ["customer_pii"],
                   "services": ["profile"], "customers_affected": r.randrange(2000, 9000)}),
    (5, lambda r: {"task": "terraform apply: resize the orders cluster node pool",
                   "environment": "production", "operations": ["infrastructure_change"],
                   "hostname": "orders.prod.internal.example.com",
                   "reversibility": "complex_rollback"}),
    (4, lambda r: {"task": "Rotate IAM credentials for the payment gateway",
                   "environment": "production", "operations": ["security_configuration"],
                   "data_types": ["credentials"], "compliance": ["PCI-DSS"]}),
    (3, lambda r: {"task": "Deploy new data center region", "environment":
                   "production_multi_region", "regions": r.sample(REGIONS, 2),
                   "operations": ["infrastructure_change"], "customer_impact": "all_customers"}),
    (3, lambda r: {"task": "Change revenue recognition job for quarter close",
                   "environment": "production", "compliance": ["SOX"],
                   "data_types": ["financial"], "services": ["billing", "reports"]}),
    (4, lambda r: {"task": "Export patient diagnoses for the analytics sandbox",
                   "environment": "development", "data_types": ["medical_records"],
                   "operations": ["export"]}),
    (3, lambda r: {"task": "Purge inactive user accounts", "environment": "production",
                   "operations": ["data_deletion"], "data_types": ["email"],
                   "customers_affected": r.randrange(10_001, 50_000)}),
    (2, lambda r: {"task": "Tune cache TTLs", "env_vars": ["NODE_ENV=production"],
                   "components": ["cache"], "operations": ["configuration_change"]}),
]

BAD_RECORDS = [
    b'{"task": "Deploy billing", "environment": "production"',  # truncated JSON
    b'{"type": "task.teleported", "occurred_at": "2026-11-02T09:00:00Z", "producer": "m", '
    b'"subject": "t", "payload": {}}',  # unknown type
    b'{"task": "Deploy search", "environment": 42}',  # schema: environment must be text
    b'{"type": "certification.decided", "occurred_at": "2026-11-02T09:00:00Z", "producer": "m",'
    b' "subject": "t", "payload": {}}',  # derived type sent as input
    b'\xff\xfe not utf-8 at all',
    b'[1, 2, 3]',
]


def sample_records(count: int = 2_000, seed: int = 20261126) -> Iterator[bytes]:
    """`count` inbound records, about 1 in 60 of them bad, the same every time."""
    rng = random.Random(seed)
    weights = [w for w, _ in TEMPLATES]
    bad = iter(BAD_RECORDS * (count // len(BAD_RECORDS) + 1))
    for i in range(count):
        if i % 60 == 59:
            yield next(bad)
            continue
        if i == count - 2:  # one oversize record per run
            yield json.dumps({"task": "x" * 1_100_000, "environment": "development"}).encode()
            continue
        template = rng.choices(TEMPLATES, weights=weights)[0][1]
        task = template(rng)
        task_id = f"task-{i:06d}"
        task["task_id"] = task_id
        envelope = {
            "event_id": str(uuid.uuid5(NAMESPACE, f"{seed}:{i}")),
            "type": "task.submitted",
            "schema_version": 1,
            "occurred_at": format_time(START + timedelta(seconds=7 * i)),
            "producer": f"master-{i % 3}",
            "subject": task_id,
            "payload": {"task_id": task_id, "master_id": f"master-{i % 3}", "task": task},
        }
        yield json.dumps(envelope, separators=(",", ":")).encode()
