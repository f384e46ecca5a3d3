"""A rollback decided by the rollback service for a permit in execution (an alert naming a
trigger, or a metric the permit's running checks do not watch): the permit is revoked and the
rollback handed over once (automatic), or the permit suspended while the rollback awaits its
approval (docs/rollback.md §6). A replay of the ledger decides nothing again."""

from __future__ import annotations

from datetime import timedelta

from events import Envelope, format_time
from tests.test_permit_kit import T0, envelope, new_pipeline
from tests.test_rollback_wiring import executing_permit, stages


def alert(key: str, trigger: str, fingerprint: str = "f1") -> Envelope:
    body = {"key": key, "source": "alertmanager",
            "alert": {"status": "firing", "fingerprint": fingerprint,
                      "startsAt": format_time(T0), "endsAt": None,
                      "labels": {"alertname": "Broken", "permit_id": key,
                                 "rollback_trigger": trigger}, "annotations": {}}}
    return envelope("alert.received", key, body, T0)


def cpu(key: str, n: int, value: float = 0.95) -> Envelope:
    at = T0 + timedelta(seconds=30 * n)
    body = {"key": key, "metric": "cpu_usage", "value": value, "observed_at": format_time(at)}
    return Envelope(event_id=f"cpu:{key}:{n}", type="metric.sample", occurred_at=at,
                    producer="monitor", subject=key, payload=body)


def test_an_alert_for_a_permit_in_execution_revokes_it_and_rolls_back_once():
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe)
    out = pipe.handle_event(alert(pid, "data_inconsistency_detected"), T0).events
    assert pipe.permits.view(pid)["state"] == "revoked"
    assert stages(out) == ["triggered", "commanded"]
    triggered = recorder.of_type("rollback.event")[0]
    assert triggered.payload["rollback_id"] == f"rb-{pid}-data_inconsistency_detected"
    assert triggered.producer != "rollback-service"  # the permit service's hand-over
    assert triggered.payload["evidence"]["source"]["fingerprint"] == "f1"
    revoked = recorder.of_type("permit.revoked")
    assert len(revoked) == 1
    assert revoked[0].payload["details"]["revocation_reason"] == "safety_violation"
    assert [v.payload["action"] for v in recorder.of_type("violation.recorded")] == ["revoked"]
    # the same alert again, and a second trigger: no second rollback, the permit stays revoked
    pipe.handle_event(alert(pid, "data_inconsistency_detected"), T0)
    pipe.handle_event(alert(pid, "consecutive_health_check_failures", "f2"), T0)
    assert stages(recorder.events) == ["triggered", "commanded"]


def test_a_metric_the_permit_checks_do_not_watch_is_judged_for_the_permit():
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe)
    fired = []
    for n in range(9):
        if stages(pipe.handle_event(cpu(pid, n), cpu(pid, n).occurred_at).events):
            fired.append(n)
    assert fired == [6]  # cpu > 0.90 sustained 180 s: the 7th sample
    assert pipe.permits.view(pid)["state"] == "revoked"
    assert stages(recorder.events) == ["triggered", "commanded"]
    rollback_id = recorder.of_type("rollback.event")[0].payload["rollback_id"]
    assert rollback_id == f"rb-{pid}-cpu_usage_spike"
    assert len(recorder.of_type("metric.sample")) == 9  # a permit's samples: all recorded


def test_a_rollback_awaiting_approval_suspends_the_permit():
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe)
    pipe.handle_event(alert(pid, "conversion_rate_drop"), T0)
    assert pipe.permits.view(pid)["state"] == "suspended"
    (triggered,) = recorder.of_type("rollback.event")
    assert triggered.payload["approval"] == "manual" and triggered.payload["key"] == pid
    assert [v.payload["action"] for v in recorder.of_type("violation.recorded")] == \
        ["suspended"]
    codes = [e.payload["code"] for e in recorder.of_type("escalation.raised")]
    assert "rollback.approval_required" in codes


def test_a_permit_not_in_execution_is_not_moved():
    pipe, recorder = new_pipeline()
    from tests.test_permit_kit import issued_permit, register_all

    register_all(pipe)
    pid = issued_permit(pipe, 2, services=["api"], operations=["deploy"])["permit_id"]
    pipe.handle_event(alert(pid, "data_inconsistency_detected"), T0)
    assert pipe.permits.view(pid)["state"] == "issued"
    assert stages(recorder.events) == ["triggered", "commanded"]  # the rollback service's own
    assert recorder.of_type("rollback.event")[0].producer == "rollback-service"


def test_a_replay_of_the_ledger_decides_nothing_again():
    pipe, recorder = new_pipeline()
    pid = executing_permit(pipe)
    for n in range(8):
        pipe.handle_event(cpu(pid, n), cpu(pid, n).occurred_at)
    again, second = new_pipeline()
    again.load(recorder.events)
    assert again.permits.view(pid)["state"] == "revoked"
    record = again.rollbacks.tracker.records[f"rb-{pid}-cpu_usage_spike"]
    assert record.outcome == "commanded"
    again.handle_event(alert(pid, "data_inconsistency_detected"), T0)
    again.handle_event(cpu(pid, 9), cpu(pid, 9).occurred_at)
    assert stages(second.events) == []
