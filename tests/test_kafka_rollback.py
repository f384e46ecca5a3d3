"""Kafka mode, a real `certify worker`: a sustained error-rate breach streamed on <p>.metrics,
the worker SIGKILLed in the middle of the window and started again on the same data dir. The
window is rebuilt from the recorded samples (docs/rollback.md §6): exactly one rollback is
triggered, at the 5th bad sample, with its evidence, and commanded once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from events import Envelope, format_time
from ledger import verify
from streams.cli import main
from tests.test_kafka_pipeline_helpers import (
    PARTITIONS,
    delete_topics,
    ledger_events,
    start_worker,
    unique,
    wait_for,
)

pytestmark = pytest.mark.kafka
KEY = "deploy-checkout-9"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def _samples(path, start, stop):  # type: ignore[no-untyped-def]
    with path.open("w") as out:
        for n in range(start, stop):
            at = T0 + timedelta(seconds=30 * n)
            body = {"key": KEY, "metric": "error_rate", "value": 0.02,
                    "observed_at": format_time(at)}
            event = Envelope(event_id=f"sample:{KEY}:{n}", type="metric.sample", occurred_at=at,
                             producer="monitoring", subject=KEY, payload=body)
            out.write(json.dumps(event.to_record()) + "\n")
    return path


def _events(ledger_dir, kind=None):  # type: ignore[no-untyped-def]
    return [e for part in ledger_events(ledger_dir).values() for e in part
            if kind is None or e["type"] == kind]


def _produce(bootstrap, data, prefix, path):  # type: ignore[no-untyped-def]
    assert main(["--data-dir", str(data), "--partitions", str(PARTITIONS), "produce",
                 "--broker", bootstrap, "--topic-prefix", prefix, "--topic", "metrics",
                 str(path)]) == 0


def test_a_worker_killed_mid_window_fires_once_at_the_fifth_sample(kafka_bootstrap, tmp_path):
    data, keys, ledger_dir = tmp_path / "data", tmp_path / "keys", tmp_path / "data" / "ledger"
    prefix = unique("rollback")
    first = start_worker(kafka_bootstrap, data, keys, prefix, tmp_path / "first.log")
    second = None
    try:
        wait_for(lambda: "assigned" in first.output(), 60, "the worker's partitions", first)
        _produce(kafka_bootstrap, data, prefix, _samples(tmp_path / "a.jsonl", 0, 3))
        wait_for(lambda: len(_events(ledger_dir, "metric.sample")) >= 3, 120,
                 "3 samples recorded", first, every=0.2)
        first.kill()  # mid-window: 3 bad samples, 60 s of the 120 s
        assert _events(ledger_dir, "rollback.event") == []

        second = start_worker(kafka_bootstrap, data, keys, prefix, tmp_path / "second.log")
        wait_for(lambda: "assigned" in second.output(), 60, "the second worker's partitions",
                 second)
        _produce(kafka_bootstrap, data, prefix, _samples(tmp_path / "b.jsonl", 3, 7))
        wait_for(lambda: len(_events(ledger_dir, "metric.sample")) >= 7 and
                 len(_events(ledger_dir, "rollback.event")) >= 2, 120,
                 "7 samples and the rollback", second, every=0.2)
        assert second.stop() == 0, second.output()[-3000:]
    finally:
        for worker in (first, second):
            if worker is not None and worker.proc.poll() is None:
                worker.kill()
        asyncio.run(delete_topics(kafka_bootstrap, prefix))

    assert verify(ledger_dir).ok
    events = _events(ledger_dir)
    assert max(Counter(e["event_id"] for e in events).values()) == 1
    assert len(_events(ledger_dir, "metric.sample")) == 7  # replays refused, none lost
    rollbacks = _events(ledger_dir, "rollback.event")
    assert [r["payload"]["stage"] for r in rollbacks] == ["triggered", "commanded"]
    triggered = rollbacks[0]["payload"]
    assert triggered["key"] == KEY and triggered["trigger"] == "error_rate_threshold"
    evidence = triggered["evidence"]
    assert evidence["count"] == 5  # 0..4: the samples before and after the kill, one window
    assert datetime.fromisoformat(evidence["window_start"]) == T0
    assert datetime.fromisoformat(evidence["window_end"]) == T0 + timedelta(seconds=120)
    # the bad samples after the 5th are evidence for the running rollback, not a second one
    assert all(e["payload"]["code"] == "rollback.trigger_during_rollback"
               for e in _events(ledger_dir, "escalation.raised"))


def _record(kind: str, subject: str, payload: dict, event_id: str) -> bytes:  # type: ignore[type-arg]
    event = Envelope(event_id=event_id, type=kind, occurred_at=T0, producer="executor-1",
                     subject=subject, payload=payload)
    return json.dumps(event.to_record()).encode()


async def test_an_executor_stage_on_the_executions_topic_reaches_the_ledger(kafka_bootstrap,
                                                                            tmp_path):
    """The rollback command goes out on <p>.rollbacks for executors; their stage reports come
    back on <p>.executions, are checked, and become rollback.event stages in the ledger; a
    report out of order is dead-lettered with its reason."""
    from streams.cli_kafka import produce
    from streams.topics import H_REASON_CODE
    from tests.test_kafka_pipeline_helpers import read_topic, running_worker

    key = "deploy-exec-1"
    async with running_worker(kafka_bootstrap, tmp_path) as runtime:
        names, ledger_dir = runtime.config.topics, runtime.config.settings.ledger_dir
        samples = []
        for n in range(5):
            at = T0 + timedelta(seconds=30 * n)
            body = {"key": key, "metric": "error_rate", "value": 0.02,
                    "observed_at": format_time(at)}
            samples.append((f"m:{n}", _record("metric.sample", key, body, f"s:{key}:{n}")))
        await produce(kafka_bootstrap, names["metrics"], samples)
        commands = await read_topic(
            kafka_bootstrap, names["rollbacks"], timeout=90,
            until=lambda rs: any(b'"commanded"' in r.value for r in rs))
        command = next(json.loads(r.value) for r in commands if b'"commanded"' in r.value)
        rollback_id = command["payload"]["rollback_id"]
        assert command["payload"]["key"] == key and command["subject"] == key

        def report(stage: str, event_id: str) -> tuple[str, bytes]:
            body = {"rollback_id": rollback_id, "stage": stage, "executor": "executor-1"}
            if stage == "verified":
                body["passed"] = True
            return f"x:{event_id}", _record("rollback.stage_reported", key, body, event_id)

        await produce(kafka_bootstrap, names["executions"],
                      [report("started", "rep-1"), report("verified", "rep-2")])
        dead = await read_topic(kafka_bootstrap, names["dead-letter"], timeout=60,
                                until=lambda rs: len(rs) >= 1)
        await asyncio.to_thread(wait_for, lambda: any(
            e["payload"].get("stage") == "started" for e in _events(ledger_dir, "rollback.event")),
            60, "the started stage in the ledger")
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers[H_REASON_CODE] == "rollback.stage_out_of_order"
    stages = [e["payload"]["stage"] for e in _events(ledger_dir, "rollback.event")]
    assert stages == ["triggered", "commanded", "started"]
    started = _events(ledger_dir, "rollback.event")[-1]
    assert started["causation_id"] == "rep-1" and started["payload"]["actor"] == "executor-1"
    assert [e["event_id"] for e in _events(ledger_dir, "rollback.stage_reported")] == ["rep-1"]
