"""Kafka mode end to end on the real broker: topics, the certifier at volume, bad input.

The worker's app and runtime run in this process here (the same objects `certify worker`
builds); tests/test_kafka_fault.py and tests/test_kafka_conformance.py run the real command.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from events import MAX_EVENT_BYTES
from ledger import verify
from streams.cli import main
from streams.cli_kafka import produce
from streams.embedded import read_lines
from streams.topics import (
    H_ORIGIN,
    H_REASON,
    H_REASON_CODE,
    H_REJECTION_ID,
    H_SOURCE,
    SPECS,
    TopicNames,
)
from tests.test_kafka_pipeline_helpers import (
    PARTITIONS,
    delete_topics,
    distinct_ids,
    expected,
    ledger_events,
    read_topic,
    running_worker,
    unique,
    write_sample,
)

pytestmark = pytest.mark.kafka


def test_topics_create_makes_every_topic_once_and_refuses_other_partition_counts(
        kafka_bootstrap, tmp_path, capsys):
    prefix = unique("topics")
    args = ["--data-dir", str(tmp_path), "topics", "create", "--broker",
            f"kafka://{kafka_bootstrap}", "--topic-prefix", prefix]
    try:
        assert main(["--partitions", "3", *args]) == 0
        first = capsys.readouterr().out.splitlines()
        assert main(["--partitions", "3", *args]) == 0
        second = capsys.readouterr().out.splitlines()
        assert main(["--partitions", "5", *args]) == 3
        refused = capsys.readouterr().err
    finally:
        asyncio.run(delete_topics(kafka_bootstrap, prefix))
    names = TopicNames(prefix).all()
    assert [line.split()[0] for line in first] == names == [line.split()[0] for line in second]
    assert all(line.split()[1:] == ["3", "partitions", "created"] for line in first)
    assert all(line.split()[1:] == ["3", "partitions", "exists"] for line in second)
    assert len(names) == len(SPECS) == len(set(names))
    assert "has 3 partitions, but partitions is 5" in refused


async def test_ten_thousand_tasks_are_decided_recorded_once_and_projected(
        kafka_bootstrap, tmp_path):
    sample = write_sample(tmp_path / "tasks.jsonl", 10_000)
    want = expected(sample)
    async with running_worker(kafka_bootstrap, tmp_path) as runtime:
        names = runtime.config.topics
        with sample.open("rb") as handle:
            sent, skipped = await produce(kafka_bootstrap, names["tasks"],
                                          read_lines(handle, str(sample)))
        assert (sent, skipped) == (10_000, [])
        decisions = await read_topic(kafka_bootstrap, names["decisions"], timeout=300,
                                     until=lambda r: len(r) >= len(want.decisions))
        ledger_topic = await read_topic(
            kafka_bootstrap, names["ledger"], timeout=60,
            until=lambda r: len(r) >= 2 * len(want.tasks) + want.rejected)
        dead = await read_topic(kafka_bootstrap, names["dead-letter"], timeout=60,
                                until=lambda r: len(r) >= want.rejected)
        assert runtime.inbound == 10_000
        settings = runtime.config.settings
        ledger_dir, db_path = settings.ledger_dir, settings.duckdb_path

    # every decision out, once per task (at-least-once may repeat one; ids are the same)
    assert distinct_ids(decisions) == want.decisions
    assert {json.loads(r.value)["type"] for r in decisions} == {"certification.decided"}
    assert len(dead) == want.rejected
    # the ledger verifies, and every input event id is in it exactly once
    report = verify(ledger_dir)
    assert report.ok
    events = [e for part in ledger_events(ledger_dir).values() for e in part]
    counts = Counter(e["event_id"] for e in events)
    assert max(counts.values()) == 1
    assert want.tasks | want.decisions <= set(counts)
    assert sum(e["type"] == "input.rejected" for e in events) == want.rejected
    assert len(events) == len(want.tasks) + len(want.decisions) + want.rejected
    # each ledger entry on the ledger topic, in its partition, with its position
    entries = {(json.loads(r.value)["partition"], json.loads(r.value)["index"]): r
               for r in ledger_topic}
    assert {json.loads(r.value)["event"]["event_id"] for r in entries.values()} == set(counts)
    assert all(r.partition == p for (p, _), r in entries.items())
    # DuckDB has what the ledger has
    from projections import connect_readonly

    with connect_readonly(db_path) as db:
        tasks = db.execute("select count(*) from tasks").fetchone()[0]
        decided = db.execute("select count(*) from decisions").fetchone()[0]
        rejected = db.execute("select count(*) from rejected_input").fetchone()[0]
        projected = db.execute("select count(*) from events where producer <> 'ledger'"
                               ).fetchone()[0]
    assert (tasks, decided, rejected) == (len(want.tasks), len(want.decisions), want.rejected)
    assert projected == len(events)


BAD = [
    pytest.param(b"\xff\xfe not utf-8", "input.undecodable", id="undecodable"),
    pytest.param(b'{"task": "Deploy billing", "environment": "production"', "input.malformed_json",
                 id="malformed"),
    pytest.param(b'{"type": "task.teleported", "occurred_at": "2026-11-02T09:00:00Z", '
                 b'"producer": "m", "subject": "t", "payload": {}}', "input.unknown_type",
                 id="unknown type"),
    pytest.param(b'{"task": "Deploy search", "environment": 42}', "input.schema", id="schema"),
    pytest.param(json.dumps({"task": "x" * (MAX_EVENT_BYTES + 10)}).encode(), "input.oversize",
                 id="oversize"),
    pytest.param(b"", "input.malformed_json", id="empty"),
]


async def test_bad_input_is_dead_lettered_with_its_bytes_recorded_and_never_stops_the_agent(
        kafka_bootstrap, tmp_path):
    from aiokafka import AIOKafkaProducer

    good = json.dumps({"task_id": "after-the-bad-ones", "task": "Update README",
                       "environment": "local", "operations": ["documentation_update"]}).encode()
    bad = [(p.values[0], p.values[1]) for p in BAD]
    async with running_worker(kafka_bootstrap, tmp_path) as runtime:
        names = runtime.config.topics
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 << 20)
        await producer.start()
        try:
            for raw, _ in bad:  # no key, no certify-source header: named topic:partition:offset
                await producer.send_and_wait(names["tasks"], raw, partition=1)
            await producer.send_and_wait(names["tasks"], good, key=b"after-the-bad-ones")
        finally:
            await producer.stop()
        decisions = await read_topic(kafka_bootstrap, names["decisions"], timeout=60,
                                     until=lambda r: len(r) >= 1)
        dead = await read_topic(kafka_bootstrap, names["dead-letter"], timeout=60,
                                until=lambda r: len(r) >= len(bad))
        assert runtime.rejected == len(bad)
        ledger_dir = runtime.config.settings.ledger_dir

    assert json.loads(decisions[0].value)["subject"] == "after-the-bad-ones"
    rejections = {e["event_id"]: e for part in ledger_events(ledger_dir).values() for e in part
                  if e["type"] == "input.rejected"}
    assert len(rejections) == len(bad)
    for record, (raw, code) in zip(dead, bad, strict=True):
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value == raw  # the original bytes, all of them
        assert headers[H_REASON_CODE] == code
        assert headers[H_REASON]
        assert headers[H_SOURCE] == headers[H_ORIGIN] == f"{names['tasks']}:1:{record.offset}"
        recorded = rejections[headers[H_REJECTION_ID]]["payload"]
        assert (recorded["code"], recorded["source"], recorded["raw_size"]) == (
            code, headers[H_SOURCE], len(raw))
        assert record.partition == 1


async def test_intake_takes_monitoring_and_worker_events_through_the_same_handlers(
        kafka_bootstrap, tmp_path):
    metric = {"event_id": "metric-1", "type": "metric.sample", "occurred_at":
              "2026-11-02T09:00:00Z", "producer": "prometheus", "subject": "deploy-7",
              "payload": {"key": "deploy-7", "metric": "error_rate", "value": 0.02,
                          "observed_at": "2026-11-02T09:00:00Z"}}
    async with running_worker(kafka_bootstrap, tmp_path) as runtime:
        names = runtime.config.topics
        sent, _ = await produce(kafka_bootstrap, names["metrics"], [
            ("metrics.jsonl:1", json.dumps(metric).encode()),
            ("metrics.jsonl:2", b'{"type": "metric.sample", "payload": {"key": 1}}')])
        assert sent == 2
        dead = await read_topic(kafka_bootstrap, names["dead-letter"], timeout=60,
                                until=lambda r: len(r) >= 1)
        await asyncio.sleep(0.5)
        assert runtime.inbound == 2
        ledger_dir = runtime.config.settings.ledger_dir

    events = {e["event_id"]: e for part in ledger_events(ledger_dir).values() for e in part}
    assert events["metric-1"]["type"] == "metric.sample"
    assert {k: v.decode() for k, v in dead[0].headers}[H_SOURCE] == "metrics.jsonl:2"
    assert len(ledger_events(ledger_dir)) == PARTITIONS
