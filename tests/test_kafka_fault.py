"""SIGKILL a `certify worker` in the middle of a stream, start it again: the ledger verifies and
every input is recorded exactly once, with no gaps; every entry still reaches the ledger topic
and every decision the decisions topic (at least once)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter

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
RECORDS = 2_500


def _recorded(ledger_dir) -> int:
    return sum(len(part) for part in ledger_events(ledger_dir).values())


def test_a_worker_killed_mid_stream_loses_nothing_and_records_nothing_twice(
        kafka_bootstrap, tmp_path):
    sample = write_sample(tmp_path / "sample.jsonl", RECORDS)
    want = expected(sample)
    total = 2 * len(want.tasks) + want.rejected
    data, keys, ledger_dir = tmp_path / "data", tmp_path / "keys", tmp_path / "data" / "ledger"
    prefix = unique("fault")
    first = start_worker(kafka_bootstrap, data, keys, prefix, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: "assigned" in first.output(), 60, "the worker's partitions", first)
        assert main(["--data-dir", str(data), "--partitions", str(PARTITIONS), "produce",
                     "--broker", kafka_bootstrap, "--topic-prefix", prefix, "--topic", "tasks",
                     str(sample)]) == 0
        wait_for(lambda: _recorded(ledger_dir) >= total // 3, 240, "a third of the stream",
                 first, every=0.2)
        first.kill()
        at_kill = _recorded(ledger_dir)
        assert at_kill < total, "the stream was done before the kill: make it longer"

        second = start_worker(kafka_bootstrap, data, keys, prefix, tmp_path / "second.log",
                              "--snapshot", str(tmp_path / "snapshot" / "certify.duckdb"))
        wait_for(lambda: _recorded(ledger_dir) >= total, 240, f"{total} entries", second,
                 every=0.5)
        ledger_topic = asyncio.run(read_topic(
            kafka_bootstrap, f"{prefix}.ledger", timeout=60,
            until=lambda r: len({(x.partition, json.loads(x.value)["index"]) for x in r})
            >= total))
        decisions = asyncio.run(read_topic(
            kafka_bootstrap, f"{prefix}.decisions", timeout=60,
            until=lambda r: len({x.value for x in r}) >= len(want.decisions)))
        assert second.stop() == 0, second.output()[-3000:]
    finally:
        for worker in (first, second):
            if worker is not None and worker.proc.poll() is None:
                worker.kill()
        asyncio.run(delete_topics(kafka_bootstrap, prefix))

    report = verify(ledger_dir)
    assert report.ok
    events = [e for part in ledger_events(ledger_dir).values() for e in part]
    counts = Counter(e["event_id"] for e in events)
    assert max(counts.values()) == 1  # nothing twice
    assert want.tasks | want.decisions <= set(counts)  # nothing lost
    assert len(events) == total  # nothing else
    # entries published at least once each (a replay re-publishes what the ledger kept),
    # ledger topic partition = ledger partition; every decision reached its topic
    positions = {(r.partition, json.loads(r.value)["index"]) for r in ledger_topic}
    assert all(r.partition == json.loads(r.value)["partition"] for r in ledger_topic)
    assert len(positions) == total
    assert {json.loads(r.value)["event_id"] for r in decisions} == want.decisions
    # DuckDB (projected by the worker, killed mid-way too) has it all, once
    from projections import connect_readonly

    with connect_readonly(data / "certify.duckdb") as db:
        projected = db.execute("select count(*), count(distinct event_id) from events "
                               "where producer <> 'ledger'").fetchone()
        decided = db.execute("select count(*) from decisions").fetchone()[0]
    assert projected == (total, total)
    assert decided == len(want.decisions)
    with connect_readonly(tmp_path / "snapshot" / "certify.duckdb") as db:  # for readers elsewhere
        assert db.execute("select count(*) from decisions").fetchone()[0] == decided
    summary = re.search(r"(\d+) ledger entries appended, (\d+) duplicates refused",
                        second.output())
    assert summary is not None, second.output()[-3000:]
    appended, refused = map(int, summary.groups())
    assert appended == total - at_kill
    print(f"killed at {at_kill}/{total} entries; the restarted worker appended {appended} and "
          f"refused {refused} replayed duplicates")
