"""Every Kafka topic of Kafka mode, once: its name, who writes it, what it carries, its config.

All topics carry raw bytes (validated inside the agents), are keyed by subject (a task's id for
tasks) and are co-partitioned: every topic has `Settings.partitions` partitions, and partition p
of every topic and ledger partition p hold the same subjects (Kafka's murmur2 partitioner =
`ledger.partition_for`). Topics are created explicitly (`certify topics create`, or by the
worker at start); the broker's auto-creation is never relied on.

| topic           | written by             | carries                                           |
|-----------------|------------------------|---------------------------------------------------|
| <p>.tasks       | masters                | tasks (documents or envelopes), permit requests   |
| <p>.approvals   | approvers              | approval.signed, override.review_submitted        |
| <p>.executions  | workers, rollback      | execution.reported, review..., authorization...,  |
|                 | executors              | rollback.stage_reported (docs/rollback.md §6)     |
| <p>.metrics     | monitoring             | metric.sample, alert.received                     |
| <p>.decisions   | the worker             | certification.decided, task.blocked               |
| <p>.permits     | the worker             | permit.*, approval.refused, overrides, violations |
| <p>.rollbacks   | the worker             | rollback.event (executors act on `commanded`),    |
|                 |                        | escalation.raised                                 |
| <p>.ledger      | the worker             | every entry: {partition, index, leaf_hash, event} |
| <p>.dead-letter | the worker             | rejected input: original bytes, reason in headers |
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from events import MAX_EVENT_BYTES

# Inbound records may be up to MAX_EVENT_BYTES (and we must be able to receive, reject and
# dead-letter bigger ones): every topic accepts messages up to 4 MiB. Records bigger than that
# never enter Kafka (`certify produce` reports them).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
assert MAX_MESSAGE_BYTES > 2 * MAX_EVENT_BYTES

DEFAULT_PREFIX = "certify"
TOPIC_ALREADY_EXISTS = 36  # Kafka error code

# Short names (what `certify produce --topic` accepts).
TASKS, APPROVALS, EXECUTIONS, METRICS = "tasks", "approvals", "executions", "metrics"
DECISIONS, PERMITS, ROLLBACKS = "decisions", "permits", "rollbacks"
LEDGER, DEAD_LETTER = "ledger", "dead-letter"

# Dead-letter headers (values are UTF-8).
H_REASON_CODE = "certify-reason-code"
H_REASON = "certify-reason"
H_SOURCE = "certify-source"  # also set by `certify produce`: the record's file:line
H_ORIGIN = "certify-origin"  # topic:partition:offset the record was read from
H_REJECTION_ID = "certify-rejection-event-id"
# Set by the HTTP API in Kafka mode (streams/worker_web.py): the request awaiting this record, and
# for a body it refused at its edge, the refusal to record (the record is not handled as input).
H_REQUEST = "certify-request-id"
H_EDGE_CODE = "certify-edge-code"
H_EDGE_MESSAGE = "certify-edge-message"
H_EDGE_KIND = "certify-edge-kind"  # input.rejected (default) | permit.request_refused


@dataclass(frozen=True)
class TopicSpec:
    name: str
    kind: str  # inbound | internal | ledger | dead-letter
    writer: str
    # inbound topics: who writes them, and the inbound event types meant for them (documentation
    # and ACLs: the handlers take any inbound type from any inbound topic, as embedded mode does).
    producer_class: str | None = None
    accepts: frozenset[str] = frozenset()
    config: dict[str, str] = field(default_factory=dict)


_BIG = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}

SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(TASKS, "inbound", "masters", "master",
              frozenset({"task.submitted", "permit.requested", "permit.renewal_requested",
                         "permit.closure_requested", "override.requested"}), _BIG),
    TopicSpec(APPROVALS, "inbound", "approvers", "approver",
              frozenset({"approval.signed", "override.review_submitted"}), _BIG),
    TopicSpec(EXECUTIONS, "inbound", "workers", "worker",
              frozenset({"execution.reported", "review.post_execution",
                         "authorization.requested", "rollback.stage_reported"}), _BIG),
    TopicSpec(METRICS, "inbound", "monitoring", "monitoring",
              frozenset({"metric.sample", "alert.received"}), _BIG),
    TopicSpec(DECISIONS, "internal", "certifier", config=_BIG),
    TopicSpec(PERMITS, "internal", "permit agent", config=_BIG),
    TopicSpec(ROLLBACKS, "internal", "rollback agent", config=_BIG),
    TopicSpec(LEDGER, "ledger", "ledger writer", config=_BIG),
    TopicSpec(DEAD_LETTER, "dead-letter", "certifier, intake", config=_BIG),
)
BY_NAME = {spec.name: spec for spec in SPECS}
INBOUND = tuple(spec for spec in SPECS if spec.kind == "inbound")

# Every event goes to the ledger (and so to <p>.ledger); a derived event is also published on the
# internal topic of its kind, for the consumers of that kind (masters read decisions).
ROUTES: dict[str, str] = {
    "certification.decided": DECISIONS,
    "task.blocked": DECISIONS,
    "approval.refused": PERMITS,
    "operation.authorized": PERMITS,
    "override.event": PERMITS,
    "violation.recorded": PERMITS,
    "rollback.event": ROLLBACKS,
    "escalation.raised": ROLLBACKS,
}
ROUTE_PREFIXES: tuple[tuple[str, str], ...] = (("permit.", PERMITS),)


def route(event_type: str) -> str | None:
    """The internal topic (short name) an event of this type is published on, if any."""
    topic = ROUTES.get(event_type)
    if topic is None:
        for prefix, name in ROUTE_PREFIXES:
            if event_type.startswith(prefix):
                return name
    return topic


class TopicError(Exception):
    """A topic is missing, cannot be created, or has the wrong partition count."""


@dataclass(frozen=True)
class TopicNames:
    """Full topic names under one prefix (tests use a unique prefix per run)."""

    prefix: str = DEFAULT_PREFIX

    def __getitem__(self, short: str) -> str:
        if short not in BY_NAME:
            raise KeyError(short)
        return f"{self.prefix}.{short}"

    def resolve(self, name: str) -> str:
        """A short name (`tasks`) or a full one (`certify.tasks`) -> the full name."""
        if name in BY_NAME:
            return self[name]
        if name.startswith(self.prefix + ".") and name[len(self.prefix) + 1:] in BY_NAME:
            return name
        known = ", ".join(spec.name for spec in SPECS)
        raise TopicError(f"unknown topic {name!r} (known: {known}; prefix {self.prefix!r})")

    def all(self) -> list[str]:
        return [self[spec.name] for spec in SPECS]


def bootstrap_servers(broker: str) -> str:
    """`kafka://h1:9092;kafka://h2:9092` (faust's spelling) or `h1:9092,h2:9092` -> aiokafka's."""
    hosts = []
    for part in broker.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            hosts.append(part.rstrip("/"))
    if not hosts:
        raise TopicError(f"broker: no host in {broker!r}")
    return ",".join(hosts)


@dataclass(frozen=True)
class TopicStatus:
    name: str
    partitions: int
    created: bool


async def ensure_topics(bootstrap: str, names: TopicNames, partitions: int, *,
                        replication: int = 1, timeout_s: float = 30.0) -> list[TopicStatus]:
    """Create every topic that is missing (idempotent); refuse existing ones whose partition
    count differs from `partitions` (co-partitioning with the ledger would silently break)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=
                                int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaError, OSError, asyncio.TimeoutError) as error:
        await admin.close()
        raise TopicError(f"cannot reach the Kafka broker at {bootstrap}: "
                         f"{error}") from None
    try:
        existing = set(await admin.list_topics())
        wanted = {names[spec.name]: spec for spec in SPECS}
        missing = [name for name in wanted if name not in existing]
        created: set[str] = set()
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication, topic_configs=wanted[name].config)
                 for name in missing], timeout_ms=int(timeout_s * 1000))
            errors = {name: (code, message) for name, code, message in _topic_errors(response)}
            for name in missing:
                code, message = errors.get(name, (0, None))
                if code == TOPIC_ALREADY_EXISTS:  # another worker won the race
                    continue
                if code:
                    raise TopicError(f"cannot create topic {name}: error {code} {message}")
                created.add(name)
        described = await _describe(admin, list(wanted), timeout_s)
        statuses = []
        for item in described:
            name = item["topic"]
            count = len(item["partitions"])
            if count != partitions:
                raise TopicError(
                    f"topic {name} has {count} partitions, but partitions is {partitions}: "
                    "topics and the ledger must be co-partitioned. Use the topics' count "
                    "(--partitions / CERTIFY_PARTITIONS) or a new --topic-prefix.")
            statuses.append(TopicStatus(name, count, name in created))
        return sorted(statuses, key=lambda s: names.all().index(s.name))
    finally:
        await admin.close()


async def _describe(admin: Any, topics: list[str], timeout_s: float) -> list[dict[str, Any]]:
    """describe_topics, waiting out the moment after creation when metadata lags."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(topics)
        errors = [(item["topic"], item.get("error_code")) for item in described
                  if item.get("error_code") or not item.get("partitions")]
        if not errors:
            return list(described)
        if asyncio.get_running_loop().time() > deadline:
            raise TopicError(f"topics not available after creation: {errors}")
        await asyncio.sleep(0.2)


def _topic_errors(response: object) -> Iterable[tuple[str, int, str | None]]:
    for item in getattr(response, "topic_errors", []):
        name, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        yield name, code, message
