"""What the Kafka benchmarks share: the broker's address, throw-away topics, percentiles."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def bootstrap_from_env(bench: str) -> str:
    """CERTIFY_KAFKA_BOOTSTRAP, else the address `scripts/kafka.sh start` wrote."""
    value = os.environ.get("CERTIFY_KAFKA_BOOTSTRAP", "").strip()
    if not value:
        path = Path(".cache/kafka/bootstrap")
        value = path.read_text().strip() if path.exists() else ""
    if not value:
        sys.exit(f"{bench}: set CERTIFY_KAFKA_BOOTSTRAP (scripts/kafka.sh start)")
    return value


async def create_topics(bootstrap: str, names: list[str], partitions: int,
                        config: dict[str, str] | None = None) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1, topic_configs=dict(config or {}))
                                   for n in names])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Every topic whose name starts with `prefix` (a run's own)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def percentiles(values: list[float], *quantiles: float) -> tuple[float, ...]:
    """The nearest-rank value at each quantile, then the maximum (NaNs when empty)."""
    if not values:
        return (float("nan"),) * (len(quantiles) + 1)
    ordered = sorted(values)
    last = len(ordered) - 1
    picked = [ordered[min(last, max(0, math.ceil(q * len(ordered)) - 1))] for q in quantiles]
    return (*picked, ordered[-1])
