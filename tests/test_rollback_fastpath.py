"""Samples of keys the rollback service owns (deployments) are recorded only when they matter
(docs/rollback.md §6): every sample that changes a window beyond its newest time (crossing
ones, the first healthy one after a run, re-arming), every one that decides, and one healthy
sample per key and metric every SAMPLE_HEARTBEAT_SECONDS. The refold of what was recorded
decides exactly what the live run decided, whatever the point of the restart."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from events import Envelope, format_time
from streams.rollback_service import SAMPLE_HEARTBEAT_SECONDS
from tests.test_permit_kit import T0, new_pipeline

KEY = "deploy-fast"


def sample(n: int, value: float, every: float = 1.0, key: str = KEY,
           metric: str = "error_rate") -> Envelope:
    at = T0 + timedelta(seconds=every * n)
    body = {"key": key, "metric": metric, "value": value, "observed_at": format_time(at)}
    return Envelope(event_id=f"s:{key}:{metric}:{n}", type="metric.sample", occurred_at=at,
                    producer="monitor", subject=key, payload=body)


def test_healthy_samples_are_recorded_as_a_heartbeat():
    pipe, recorder = new_pipeline()
    for n in range(100):  # 100 s of healthy samples, one a second
        pipe.handle_event(sample(n, 0.001), T0)
    recorded = recorder.of_type("metric.sample")
    assert len(recorded) == 100 // SAMPLE_HEARTBEAT_SECONDS
    assert len(recorder.events) == len(recorded)


def test_every_crossing_sample_and_the_first_healthy_one_are_recorded():
    pipe, recorder = new_pipeline()
    values = [0.001] * 3 + [0.02] * 4 + [0.001] * 3
    for n, value in enumerate(values):
        pipe.handle_event(sample(n, value), T0)
    kept = [e.event_id for e in recorder.of_type("metric.sample")]
    assert kept == [f"s:{KEY}:error_rate:{n}" for n in (0, 3, 4, 5, 6, 7)]


def test_a_metric_no_trigger_watches_is_not_recorded():
    pipe, recorder = new_pipeline()
    for n in range(20):
        pipe.handle_event(sample(n, 5.0, metric="queue_depth"), T0)
    assert recorder.events == []


def _run(values: list[float], every: float, cut: int | None):  # type: ignore[no-untyped-def]
    """Feed the series; with `cut`, restart after `cut` samples (a new pipeline that loads
    only what was recorded). Returns the triggered payloads, in order."""
    pipe, recorder = new_pipeline()
    for n, value in enumerate(values):
        if n == cut:
            pipe, _ = new_pipeline(recorder)
            pipe.load(list(recorder.events))
        event = sample(n, value, every)
        pipe.handle_event(event, event.occurred_at)
        pipe.tick(event.occurred_at)
    return [(e.payload["rollback_id"], e.payload["evidence"]["count"],
             e.payload["evidence"]["window_start"])
            for e in recorder.of_type("rollback.event") if e.payload["stage"] == "triggered"], \
        [e.payload["code"] for e in recorder.of_type("escalation.raised")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_restart_anywhere_decides_what_the_live_run_decided(seed):
    rng = random.Random(seed)
    values, bad = [], False
    for _ in range(300):  # flapping: runs of bad and healthy samples, 5 s apart
        if rng.random() < 0.03:
            bad = not bad
        values.append(0.03 if bad else 0.002)
    live = _run(values, 5.0, None)
    assert live[0], "the series should fire at least once"
    for cut in range(1, len(values), 7):
        assert _run(values, 5.0, cut) == live, cut


def test_the_metrics_readers_fast_path_records_what_the_general_path_records():
    """streams.metrics_intake.fast_sample + RollbackService.sample == Pipeline.handle_raw."""
    import json

    from streams.metrics_intake import fast_sample

    values = [0.001] * 30 + [0.03] * 30 + [0.001] * 70
    raws = [json.dumps(sample(n, v, every=5.0).to_record()).encode()
            for n, v in enumerate(values)]
    general, first = new_pipeline()
    for raw in raws:
        general.handle_raw(raw, "test", T0)
    fast, second = new_pipeline()
    for raw in raws:
        found = fast_sample(fast.permits.permits, raw)
        assert found is not None
        fast.rollbacks.sample(found[0], T0, found[1])
    assert [e.event_id for e in second.events] == [e.event_id for e in first.events]
    assert any(e.type == "rollback.event" for e in first.events)


@pytest.mark.parametrize("raw", [
    b'{"type": "metric.sample", "payload": {"key": 1}}',  # bad payload: rejected elsewhere
    b'{"type": "metric.sample"',  # not JSON
    b'{"key": "deploy-1", "metric": "error_rate"}',  # a bare document
    b'{"type": "alert.received", "payload": {}}',
    b"",
])
def test_the_fast_path_leaves_everything_else_to_the_general_path(raw):
    from streams.metrics_intake import fast_sample

    assert fast_sample({}, raw) is None


def test_the_fast_path_leaves_permit_keys_to_the_permit_service():
    import json

    from streams.metrics_intake import fast_sample

    raw = json.dumps(sample(0, 0.5, key="permit-9").to_record()).encode()
    assert fast_sample({"permit-9": object()}, raw) is None
    assert fast_sample({}, raw) is not None
