"""Executors report rollback stages (`rollback.stage_reported`, docs/rollback.md §6): each report
is checked against the rollback's state, taken as the `rollback.event` stage the tracker folds,
or refused with a stable code and recorded (`input.rejected`), never a crash. Embedded (the
Pipeline) and over HTTP (POST /v1/rollbacks/{id}/stages)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from events import Envelope, format_time
from tests.test_permit_kit import T0, LiveServer, envelope, new_pipeline

KEY = "deploy-stages"
LATER = T0 + timedelta(minutes=3)


def breach(pipe, key: str = KEY) -> str:  # type: ignore[no-untyped-def]
    """Five bad error-rate samples 30 s apart: the rollback service triggers and commands."""
    for n in range(5):
        at = T0 + timedelta(seconds=30 * n)
        body = {"key": key, "metric": "error_rate", "value": 0.02, "observed_at": format_time(at)}
        pipe.handle_event(Envelope(event_id=f"s:{key}:{n}", type="metric.sample",
                                   occurred_at=at, producer="monitor", subject=key,
                                   payload=body), at)
    records = [r for r in pipe.rollbacks.tracker.records.values() if r.key == key]
    assert len(records) == 1 and records[0].outcome == "commanded"
    return records[0].rollback_id


def report(rollback_id: str, stage: str, event_id: str | None = None, **fields: Any
           ) -> Envelope:
    body = {"rollback_id": rollback_id, "stage": stage, "executor": "argo-1", **fields}
    event = envelope("rollback.stage_reported", KEY, body, LATER, producer="argo-1")
    return event.model_copy(update={"event_id": event_id}) if event_id else event


def send(pipe, event: Envelope):  # type: ignore[no-untyped-def]
    raw = json.dumps(event.to_record()).encode()
    return pipe.handle_raw(raw, "test", LATER)


OK = None
SEQUENCES = [
    pytest.param([("started", {}), ("step", {"step": "pre_rollback"}),
                  ("step", {"step": "rollback"}), ("completed", {}),
                  ("verified", {"passed": True})], [OK] * 5, "verified", id="valid"),
    pytest.param([("started", {}), ("failed", {"reason": "helm timeout"}), ("started", {}),
                  ("completed", {}), ("verified", {"passed": True})], [OK] * 5, "verified",
                 id="failed, retried, verified"),
    pytest.param([("started", {}), ("completed", {}), ("verified", {"passed": False}),
                  ("verified", {"passed": True})], [OK] * 4, "verified",
                 id="verification failed, then passed"),
    pytest.param([("completed", {})], ["rollback.stage_out_of_order"], "commanded",
                 id="completed before started"),
    pytest.param([("step", {"step": "rollback"})], ["rollback.stage_out_of_order"],
                 "commanded", id="step before started"),
    pytest.param([("started", {}), ("verified", {"passed": True})],
                 [OK, "rollback.stage_out_of_order"], "running", id="verified before completed"),
    pytest.param([("started", {}), ("completed", {}), ("started", {})],
                 [OK, OK, "rollback.stage_out_of_order"], "completed",
                 id="started after completed"),
    pytest.param([("started", {}), ("started", {})], [OK, "rollback.stage_duplicate"],
                 "running", id="started twice"),
    pytest.param([("started", {}), ("step", {"step": "a"}), ("step", {"step": "a"})],
                 [OK, OK, "rollback.stage_duplicate"], "running", id="same step twice"),
    pytest.param([("started", {}), ("failed", {}), ("failed", {})],
                 [OK, OK, "rollback.stage_duplicate"], "failed", id="failed twice"),
    pytest.param([("started", {}), ("completed", {}), ("verified", {"passed": True}),
                  ("step", {"step": "late"})], [OK, OK, OK, "rollback.finished"], "verified",
                 id="after verification"),
]


@pytest.mark.parametrize(("reports", "codes", "outcome"), SEQUENCES)
def test_stage_sequences(reports, codes, outcome):
    pipe, recorder = new_pipeline()
    rollback_id = breach(pipe)
    got = []
    for stage, fields in reports:
        result = send(pipe, report(rollback_id, stage, **fields))
        got.append(result.rejected.code if result.rejected else None)
    assert got == codes
    assert pipe.rollbacks.tracker.records[rollback_id].outcome == outcome
    taken = [e for e in recorder.of_type("rollback.event")
             if e.payload["stage"] not in ("triggered", "commanded")]
    assert len(taken) == codes.count(None)  # one stage event per accepted report
    assert all(e.causation_id and e.producer == "rollback-service" for e in taken)
    refused = recorder.of_type("input.rejected")
    assert [r.payload["code"] for r in refused] == [c for c in codes if c]
    # a refused report is not on record as a report (only its rejection, with the reason)
    assert len(recorder.of_type("rollback.stage_reported")) == codes.count(None)


def test_unknown_rollback_is_refused_and_recorded():
    pipe, recorder = new_pipeline()
    result = send(pipe, report("rb-nope", "started"))
    assert result.rejected is not None and result.rejected.code == "rollback.unknown"
    assert "rb-nope" in result.rejected.message
    assert [e.type for e in recorder.events] == ["input.rejected"]


def test_a_redelivered_report_is_taken_once():
    pipe, recorder = new_pipeline()
    rollback_id = breach(pipe)
    started = report(rollback_id, "started", event_id="exec-report-1")
    for _ in range(3):
        result = send(pipe, started)
        assert result.rejected is None
    assert len(recorder.of_type("rollback.stage_reported")) == 1
    assert [e.payload["stage"] for e in recorder.of_type("rollback.event")] == \
        ["triggered", "commanded", "started"]


def test_a_report_whose_stage_event_was_lost_is_completed_on_redelivery():
    """A crash after the report was recorded but before its stage event: the redelivery makes
    the stage event (ids derive from the report's), nothing twice."""
    pipe, recorder = new_pipeline()
    rollback_id = breach(pipe)
    started = report(rollback_id, "started", event_id="exec-report-2")
    recorder(started)  # recorded, then the process died
    result = send(pipe, started)
    assert result.rejected is None
    assert [e.payload["stage"] for e in recorder.of_type("rollback.event")][-1] == "started"
    assert pipe.rollbacks.tracker.records[rollback_id].outcome == "running"


def test_not_commanded_rollback_refuses_executor_stages():
    pipe, _ = new_pipeline()
    alert = {"key": KEY, "source": "alertmanager",
             "alert": {"status": "firing", "fingerprint": "f1", "startsAt": format_time(T0),
                       "labels": {"alertname": "Conversion", "deployment": KEY,
                                  "rollback_trigger": "conversion_rate_drop"},
                       "annotations": {}}}
    pipe.handle_event(envelope("alert.received", KEY, alert), T0)
    (record,) = pipe.rollbacks.tracker.records.values()
    assert record.approval == "manual" and record.commanded_at is None
    result = send(pipe, report(record.rollback_id, "started"))
    assert result.rejected is not None and result.rejected.code == "rollback.not_commanded"


def test_reported_failure_starts_the_failure_path_and_a_restart_keeps_it():
    pipe, recorder = new_pipeline()
    rollback_id = breach(pipe)
    send(pipe, report(rollback_id, "started"))
    send(pipe, report(rollback_id, "failed", reason="kubectl rollout undo: timeout"))
    codes = [e.payload["code"] for e in recorder.of_type("escalation.raised")]
    assert "rollback.failure_escalation" in codes
    # a restart: the ledger's stage events rebuild the tracker (the reports are not refolded)
    again, _ = new_pipeline()
    again.load(recorder.events)
    record = again.rollbacks.tracker.records[rollback_id]
    assert record.outcome == "failed" and record.failures == 1
    result = send(again, report(rollback_id, "failed"))
    assert result.rejected is not None and result.rejected.code == "rollback.stage_duplicate"


# --- HTTP ----------------------------------------------------------------------------------------


@pytest.fixture
def live():
    pipe, recorder = new_pipeline()
    server = LiveServer(pipe)
    server.pipe, server.recorder = pipe, recorder
    yield server
    server.stop()


def test_http_stage_reports(live):
    rollback_id = breach(live.pipe)
    path = f"/v1/rollbacks/{rollback_id}/stages"
    status, _, body = live.call("POST", path, {"stage": "started", "executor": "argo-1"})
    assert status == 202, body
    assert body["rollback"]["outcome"] == "running" and len(body["event_ids"]) == 2
    status, _, body = live.call("POST", path, {"stage": "started", "executor": "argo-1"})
    assert status == 202, body  # the same body again: a retry, taken once
    status, _, body = live.call("POST", path, {"stage": "started", "executor": "argo-2"})
    assert status == 409 and body["error"]["code"] == "rollback.stage_duplicate", body
    status, _, body = live.call("POST", path, {"stage": "verified", "executor": "argo-1",
                                               "passed": True})
    assert status == 409 and body["error"]["code"] == "rollback.stage_out_of_order"
    for stage in ("completed", "verified"):
        status, _, body = live.call("POST", path, {"stage": stage, "executor": "argo-1",
                                                   "passed": True if stage == "verified"
                                                   else None, "report_id": f"r-{stage}"})
        assert status == 202, body
    assert body["rollback"]["outcome"] == "verified"
    status, _, body = live.call("GET", f"/v1/rollbacks/{rollback_id}")
    assert status == 200 and body["rollback"]["verified_at"]
    status, _, body = live.call("POST", "/v1/rollbacks/rb-none/stages",
                                {"stage": "started", "executor": "argo-1"})
    assert status == 404 and body["error"]["code"] == "rollback.unknown"
    status, _, body = live.call("POST", path, {"stage": "triggered", "executor": "argo-1"})
    assert status == 400 and body["error"]["code"] == "input.schema"
    status, _, body = live.call("GET", "/v1/rollbacks/rb-none")
    assert status == 404
    stages = [e.payload["stage"] for e in live.recorder.of_type("rollback.event")]
    assert stages == ["triggered", "commanded", "started", "completed", "verified"]
    codes = [e.payload["code"] for e in live.recorder.of_type("input.rejected")]
    assert codes == ["rollback.stage_duplicate", "rollback.stage_out_of_order",
                     "rollback.unknown", "input.schema"]
