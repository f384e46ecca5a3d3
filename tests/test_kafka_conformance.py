"""The same input through `certify run --events FILE` (embedded) and through `certify produce` +
`certify worker` (Kafka) yields the same decisions and the same ledger, partition by partition.

Compared per partition, in order: (event_id, type, payload) of every domain event; not
compared: occurred_at of events we derive (the clock at handling time), checkpoints and
signatures, and the ledger's own key entries. Order can be compared exactly (not only as a
set) because `certify produce` keys each record by the subject the handlers will give its
events (a rejected record by its rejection's subject): Kafka partition p then carries, in file
order, exactly the records whose events belong to ledger partition p, and the certifier
(concurrency 1) appends them in that order, as the embedded runner does. A producer that keys
differently still gets per-subject order, but subjects may interleave differently.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ledger import verify
from streams.cli import main
from tests.test_kafka_pipeline_helpers import (
    PARTITIONS,
    delete_topics,
    expected,
    ledger_events,
    read_topic,
    start_worker,
    unique,
    wait_for,
    write_sample,
)

pytestmark = pytest.mark.kafka
RECORDS = 1_000


def _comparable(events: dict[int, list[dict]]) -> dict[int, list[tuple]]:
    return {p: [(e["event_id"], e["type"], json.dumps(e["payload"], sort_keys=True))
                for e in part] for p, part in events.items()}


def test_embedded_and_kafka_record_the_same_events_in_the_same_partitions_in_order(
        kafka_bootstrap, tmp_path):
    sample = write_sample(tmp_path / "sample.jsonl", RECORDS)
    want = expected(sample)
    keys = tmp_path / "keys"
    embedded_dir, kafka_dir = tmp_path / "embedded", tmp_path / "kafka"
    common = ["--key-dir", str(keys), "--partitions", str(PARTITIONS)]
    assert main(["--data-dir", str(embedded_dir), *common, "run", "--events", str(sample)]) == 0
    embedded = ledger_events(embedded_dir / "ledger")
    total = sum(len(part) for part in embedded.values())
    assert total == 2 * len(want.tasks) + want.rejected

    prefix = unique("conformance")
    worker = start_worker(kafka_bootstrap, kafka_dir, keys, prefix, tmp_path / "worker.log",
                          "--no-projector")
    try:
        wait_for(lambda: "assigned" in worker.output(), 60, "the worker's partitions", worker)
        assert main(["--data-dir", str(kafka_dir), *common, "produce", "--broker",
                     kafka_bootstrap, "--topic-prefix", prefix, "--topic", "tasks",
                     str(sample)]) == 0
        wait_for(lambda: sum(map(len, ledger_events(kafka_dir / "ledger").values())) >= total,
                 240, f"{total} ledger entries", worker, every=0.25)
        decisions = asyncio.run(read_topic(
            kafka_bootstrap, f"{prefix}.decisions", timeout=60,
            until=lambda r: len({x.value for x in r}) >= len(want.decisions)))
        assert worker.stop() == 0, worker.output()[-3000:]
    finally:
        if worker.proc.poll() is None:
            worker.kill()
        asyncio.run(delete_topics(kafka_bootstrap, prefix))

    kafka = ledger_events(kafka_dir / "ledger")
    assert verify(kafka_dir / "ledger").ok
    assert _comparable(kafka) == _comparable(embedded)
    # the decisions masters read from the topic are the ones the embedded runner made
    on_topic = {json.loads(r.value)["event_id"]: json.loads(r.value)["payload"]
                for r in decisions}
    made = {e["event_id"]: e["payload"] for part in embedded.values() for e in part
            if e["type"] == "certification.decided"}
    assert on_topic == made
    assert {r.partition for r in decisions} == set(range(PARTITIONS))
