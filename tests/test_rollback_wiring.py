"""The rollback service wired into the Pipeline (docs/rollback.md §6): one owner per breach,
samples recorded as the evidence, window state rebuilt from the ledger across a restart, alerts
and executors' rollback stages routed, handed-over rollbacks commanded."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from events import Envelope, format_time
from tests.test_permit_kit import (
    T0,
    Clock,
    embedded_runner,
    envelope,
    issued_permit,
    ledger_records,
    new_pipeline,
    register_all,
)

EVERY = 30  # seconds between samples; error_rate fires on the 5th bad one (120 s sustained)
OP = {"type": "deploy", "environment": "production", "service": "api"}


def sample_event(key: str, value: float, n: int) -> Envelope:
    at = T0 + timedelta(seconds=EVERY * n)
    body = {"key": key, "metric": "error_rate", "value": value, "observed_at": format_time(at)}
    return Envelope(event_id=f"s:{key}:{n}", type="metric.sample", occurred_at=at,
                    producer="monitor", subject=key, payload=body)


def executing_permit(pipe, level: int = 2) -> str:  # type: ignore[no-untyped-def]
    register_all(pipe)
    view = issued_permit(pipe, level, services=["api"], operations=["deploy"])
    result = pipe.authorize({"worker": {"id": "worker-7", "certification_level": level},
                             "operation": OP, "permit_id": view["permit_id"]}, T0)
    assert result.verdict.allowed
    assert pipe.permits.view(view["permit_id"])["state"] == "executing"
    return view["permit_id"]


def stages(events, key=None):  # type: ignore[no-untyped-def]
    return [(e["payload"] if isinstance(e, dict) else e.payload)["stage"] for e in events
            if (e["type"] if isinstance(e, dict) else e.type) == "rollback.event"
            and (key is None or (e["subject"] if isinstance(e, dict) else e.subject) == key)]


# --- one owner per breach ------------------------------------------------------------------------


def test_a_permit_breach_is_triggered_once_revoked_and_commanded():
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe)
    fired_at = []
    for n in range(8):
        event = sample_event(pid, 0.02, n)
        out = pipe.handle_event(event, event.occurred_at).events
        if any(e.type == "rollback.event" for e in out):
            fired_at.append(n)
    assert fired_at == [4]  # the 5th bad sample, 120 s after the first
    rollbacks = recorder.of_type("rollback.event")
    assert [e.payload["stage"] for e in rollbacks] == ["triggered", "commanded"]
    triggered = rollbacks[0].payload
    assert triggered["trigger"] == "error_rate_threshold" and triggered["key"] == pid
    assert triggered["evidence"]["count"] == 5
    assert rollbacks[1].payload["rollback_id"] == triggered["rollback_id"]
    assert rollbacks[1].payload["level"] == 2  # the permit's context survives the revocation
    assert pipe.permits.view(pid)["state"] == "revoked"
    assert len(recorder.of_type("metric.sample")) == 8  # every sample is evidence
    # the rollback service did not watch the permit's metric itself
    assert not any(w.key == pid for w in pipe.rollbacks.windows.values())
    assert pipe.rollbacks.tracker.records[triggered["rollback_id"]].outcome == "commanded"


@pytest.mark.parametrize("level, approval, stages_recorded", [
    (2, "none", ["triggered", "commanded"]),
    (3, "none", ["triggered", "commanded"]),
    (4, "manual", ["triggered"]),  # C-14: level 4 rollbacks pass a human gate
])
def test_a_permit_breach_rollback_waits_for_a_human_where_the_level_has_human_gates(
        level, approval, stages_recorded):  # type: ignore[no-untyped-def]
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe, level)
    for n in range(8):
        event = sample_event(pid, 0.02, n)
        pipe.handle_event(event, event.occurred_at)
    assert pipe.permits.view(pid)["state"] == "revoked"  # the work stops at once, whatever level
    rollbacks = recorder.of_type("rollback.event")
    assert [e.payload["stage"] for e in rollbacks] == stages_recorded
    triggered = rollbacks[0].payload
    assert triggered["approval"] == approval and triggered["level"] == level
    record = pipe.rollbacks.tracker.records[triggered["rollback_id"]]
    assert record.outcome == ("commanded" if approval == "none" else record.outcome)
    if approval != "none":
        assert record.commanded_at is None
        paged = pipe.tick(T0 + timedelta(minutes=4))  # the approvers are paged at the next tick
        assert [e.payload["code"] for e in paged] == ["rollback.approval_required"]
        commanded = pipe.rollbacks.command(triggered["rollback_id"], T0 + timedelta(minutes=5),
                                           actor="sre-lead")
        assert [e.payload["stage"] for e in commanded] == ["commanded"]


def test_a_deployment_breach_is_the_rollback_services():
    pipe, recorder = new_pipeline()
    fired_at = []
    for n in range(8):
        event = sample_event("deploy-api-42", 0.02, n)
        out = pipe.handle_event(event, event.occurred_at).events
        if any(e.type == "rollback.event" and e.payload["stage"] == "triggered" for e in out):
            fired_at.append(n)
    assert fired_at == [4]
    assert stages(recorder.events) == ["triggered", "commanded"]
    assert recorder.of_type("rollback.event")[0].producer == "rollback-service"
    # later bad samples while the rollback runs: evidence for it, never a second rollback
    assert all(e.payload["code"] == "rollback.trigger_during_rollback"
               for e in recorder.of_type("escalation.raised"))


def test_executors_report_stages_and_triggered_is_not_input():
    pipe, recorder = new_pipeline()
    for n in range(5):
        event = sample_event("deploy-x", 0.02, n)
        pipe.handle_event(event, event.occurred_at)
    rollback_id = recorder.of_type("rollback.event")[0].payload["rollback_id"]
    at = T0 + timedelta(minutes=3)
    for stage in ("started", "completed", "verified"):
        body = {"rollback_id": rollback_id, "permit_id": None, "stage": stage,
                "key": "deploy-x", "actor": "executor-1"}
        if stage == "verified":
            body["passed"] = True
        raw = json.dumps(envelope("rollback.event", "deploy-x", body, at,
                                  producer="executor-1").to_record()).encode()
        outcome = pipe.handle_raw(raw, "test", at)
        assert outcome.rejected is None, outcome.rejected
    assert pipe.rollbacks.tracker.records[rollback_id].outcome == "verified"
    forged = {"rollback_id": "rb-forged", "permit_id": None, "stage": "triggered",
              "key": "deploy-x"}
    raw = json.dumps(envelope("rollback.event", "deploy-x", forged, at).to_record()).encode()
    outcome = pipe.handle_raw(raw, "test", at)
    assert outcome.rejected is not None and outcome.rejected.code == "input.not_inbound"
    assert "rb-forged" not in pipe.rollbacks.tracker.records


def test_an_alert_naming_a_trigger_fires_it_once():
    pipe, recorder = new_pipeline()
    alert = {"key": "deploy-web", "source": "alertmanager",
             "alert": {"status": "firing", "fingerprint": "f1",
                       "startsAt": format_time(T0), "endsAt": None,
                       "labels": {"alertname": "DataBroken", "deployment": "deploy-web",
                                  "rollback_trigger": "data_inconsistency_detected"},
                       "annotations": {}}}
    first = pipe.handle_event(envelope("alert.received", "deploy-web", alert), T0).events
    again = pipe.handle_event(envelope("alert.received", "deploy-web", alert), T0).events
    assert stages(first) == ["triggered", "commanded"]
    assert stages(again) == []
    assert stages(recorder.events) == ["triggered", "commanded"]


# --- a restart in the middle of the window (embedded, ledger on disk) ------------------------


def _feed(runner, clock, key, start, stop):  # type: ignore[no-untyped-def]
    fired = []
    for n in range(start, stop):
        event = sample_event(key, 0.02, n)
        clock.now = event.occurred_at
        before = len(stages(ledger_events(runner)))
        runner.process([("test", json.dumps(event.to_record()).encode())])
        if len(stages(ledger_events(runner))) > before:
            fired.append(n)
    return fired


def ledger_events(runner):  # type: ignore[no-untyped-def]
    from streams.embedded import ledger_events as read

    return [e.to_record() for e in read(runner.settings.ledger_dir, runner.ledger.partitions)]


def test_a_restart_mid_window_still_fires_once_at_the_fifth_sample(tmp_path):
    clock = Clock()
    runner = embedded_runner(tmp_path, clock)
    pid = executing_permit(runner.pipeline)
    assert _feed(runner, clock, pid, 0, 3) == []
    assert _feed(runner, clock, "deploy-api-7", 0, 3) == []
    runner.close()

    runner = embedded_runner(tmp_path, clock)  # the window is rebuilt from recorded samples
    try:
        assert runner.pipeline.permits.view(pid)["state"] == "executing"
        assert _feed(runner, clock, pid, 3, 7) == [4]
        assert _feed(runner, clock, "deploy-api-7", 3, 7) == [4]
    finally:
        runner.close()

    records = ledger_records(tmp_path)
    for key in (pid, "deploy-api-7"):
        triggered = [r for r in records if r["type"] == "rollback.event" and
                     r["payload"]["key"] == key and r["payload"]["stage"] == "triggered"]
        assert len(triggered) == 1, key
        evidence = triggered[0]["payload"]["evidence"]
        assert evidence["count"] == 5
        assert evidence["window_start"].startswith(format_time(T0)[:19])
        assert stages([r for r in records if r["payload"].get("key") == key]) == \
            ["triggered", "commanded"]
        assert sum(1 for r in records if r["type"] == "metric.sample" and
                   r["payload"]["key"] == key) == 7
    revoked = [r for r in records if r["type"] == "permit.revoked" and r["subject"] == pid]
    assert len(revoked) == 1

    runner = embedded_runner(tmp_path, clock)  # a second restart replays without emitting
    try:
        assert stages(runner.tick(clock.now)) == []
        assert len(stages(ledger_events(runner))) == 4
    finally:
        runner.close()
