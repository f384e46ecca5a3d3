"""The embedded rollback service: samples and alerts in, rollback and escalation events out,
rebuilt from what it recorded (a restart in the middle of a window changes nothing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events import Envelope
from events.payloads import (
    AlertReceived,
    MetricSample,
    PermitRequested,
    PermitScope,
    PermitTransition,
    RollbackEvent,
)
from rules.policy import default_policy
from rules.rollback_plans import load_template
from streams.rollback_service import RollbackService

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = default_policy()
KEY = "permit-7"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(metric: str, seconds: float, value: float | str, key: str = KEY) -> Envelope:
    payload = MetricSample(key=key, metric=metric, value=value, observed_at=at(seconds))
    return Envelope(event_id=f"s:{key}:{metric}:{seconds}", type="metric.sample",
                    occurred_at=at(seconds), producer="monitor", subject=key,
                    payload=payload.model_dump(mode="json"))


def permit(template: str, level: int, key: str = KEY) -> Envelope:
    payload = PermitRequested(
        permit_id=key, permit_type="standard_production", task_id="t-1", decision_event_id="d-1",
        level=level, requested_by="master-1",
        scope=PermitScope(operations=["deploy"], environment="production", not_before=T0,
                          not_after=T0 + timedelta(hours=4)),
        justification="release", rollback_plan=load_template(template), request_sha256="0" * 64)
    return Envelope(event_id=f"permit:{key}", type="permit.requested", occurred_at=T0,
                    producer="permits", subject=key, payload=payload.model_dump(mode="json"))


def executor(stage: str, rollback_id: str, seconds: float, **fields) -> Envelope:
    payload = RollbackEvent(rollback_id=rollback_id, permit_id=KEY, stage=stage, key=KEY,
                            **fields)
    return Envelope(event_id=f"{rollback_id}:{stage}:{seconds}", type="rollback.event",
                    occurred_at=at(seconds), producer="executor", subject=KEY,
                    payload=payload.model_dump(mode="json"))


def feed(service: RollbackService, events: list[Envelope]) -> list[Envelope]:
    out = []
    for e in events:
        out += service.handle(e, e.occurred_at)
    return out


def kinds(events: list[Envelope]) -> list[str]:
    return [e.payload.get("stage") or e.payload.get("code") for e in events]


def test_sustained_errors_roll_back_under_the_plan_and_the_executor_closes_it():
    recorded: list[Envelope] = []
    service = RollbackService(POLICY, recorded.append)
    service.handle(permit("kubernetes_deployment", 2), T0)
    out = feed(service, [sample("error_rate", s, 0.05) for s in range(0, 181, 30)])
    assert kinds(out) == ["triggered", "commanded"] and recorded == out
    triggered, commanded = (e.payload for e in out)
    assert triggered["evidence"]["count"] == 5 and triggered["level"] == 2
    assert commanded["phases"][0] == "rollback_deployment" and commanded["sla_minutes"] == 10
    rid = triggered["rollback_id"]
    feed(service, [executor("started", rid, 130), executor("completed", rid, 300),
                   executor("verified", rid, 400, passed=True)])
    assert service.tracker.records[rid].outcome == "verified"
    assert kinds(service.tick(at(3600))) == ["trigger.no_data"]  # the metric went silent


def test_a_closed_permit_is_no_longer_watched():
    service = RollbackService(POLICY)
    feed(service, [permit("kubernetes_deployment", 2), sample("error_rate", 0, 0.05)])
    closed = PermitTransition(permit_id=KEY, from_state="validated", to_state="closed")
    service.handle(Envelope(type="permit.closed", occurred_at=at(60), producer="permits",
                            subject=KEY, payload=closed.model_dump(mode="json")), at(60))
    assert service.windows == {} and service.tick(at(3600)) == []


def test_one_rollback_per_key_a_second_trigger_is_evidence_for_it():
    service = RollbackService(POLICY)
    feed(service, [sample("error_rate", s, 0.05) for s in range(0, 121, 30)])
    out = feed(service, [sample("liveness_probe_status", s, "failed") for s in (130, 140)])
    assert kinds(out) == ["rollback.trigger_during_rollback"]
    assert len(service.tracker.records) == 1


def test_alert_only_and_silence_page_but_never_roll_back():
    service = RollbackService(POLICY)
    out = feed(service, [sample("latency_p50", s, 450.0) for s in range(0, 301, 30)])
    out += service.tick(at(600))
    assert kinds(out) == ["trigger.alert", "trigger.no_data"]
    assert out[0].payload["escalate_to"] == ["engineer_on_call"]
    assert not service.tracker.records


def test_semi_automated_plan_waits_for_the_incident_commander():
    service = RollbackService(POLICY)
    service.handle(permit("database_migration", 3), T0)
    out = feed(service, [sample("data_consistency_check", 10, "inconsistent")])
    assert kinds(out) == ["triggered", "rollback.approval_required"]
    rid = out[0].payload["rollback_id"]
    command = service.command(rid, at(120), actor="ic-1", decided_at=at(60))
    assert kinds(command) == ["commanded"]
    assert command[0].payload["scope"] == "database_only"
    record = service.tracker.records[rid]
    assert record.deadline(service.policy) == at(60) + timedelta(minutes=15)


def test_security_trigger_opens_an_incident():
    service = RollbackService(POLICY)
    out = feed(service, [sample("security_alert_level", 5, "critical")])
    assert kinds(out) == ["triggered", "commanded", "security.incident"]


def test_permit_overrides_are_bounded():
    service = RollbackService(POLICY)
    refused = service.set_overrides(KEY, {"max_error_rate": 0.004, "cpu_usage_spike": 0.99})
    assert [r.name for r in refused] == ["cpu_usage_spike"]
    out = feed(service, [sample("error_rate", s, 0.006) for s in range(0, 121, 30)])
    assert kinds(out) == ["triggered", "commanded"]


def alert(status: str, trigger: str | None, seconds: float, name: str = "HighErrorRate"
          ) -> Envelope:
    labels = {"alertname": name, "permit_id": KEY, "severity": "critical"}
    if trigger:
        labels["rollback_trigger"] = trigger
    body = {"status": status, "labels": labels, "annotations": {}, "fingerprint": "f1",
            "startsAt": at(seconds).isoformat(),
            "endsAt": at(seconds).isoformat() if status == "resolved" else None}
    payload = AlertReceived(key=KEY, alert=body)
    return Envelope(event_id=f"a:{status}:{seconds}", type="alert.received",
                    occurred_at=at(seconds), producer="alertmanager", subject=KEY,
                    payload=payload.model_dump(mode="json"))


def test_alertmanager_alert_naming_a_trigger_fires_it_once():
    service = RollbackService(POLICY)
    out = feed(service, [alert("firing", "error_rate_threshold", 0),
                         alert("firing", "error_rate_threshold", 60)])
    assert kinds(out) == ["triggered", "commanded"]
    assert out[0].payload["evidence"]["source"]["alertname"] == "HighErrorRate"


def test_unmapped_alert_pages_and_never_rolls_back():
    service = RollbackService(POLICY)
    out = feed(service, [alert("firing", None, 0, name="DiskFull"),
                         alert("resolved", None, 60, name="DiskFull")])
    assert kinds(out) == ["alert.received"]
    assert out[0].payload["severity"] == "critical" and not service.tracker.records


def test_restart_in_the_middle_of_a_window_rebuilds_from_the_ledger():
    stream = [permit("kubernetes_deployment", 2)] + \
        [sample("error_rate", s, 0.05) for s in range(0, 301, 30)] + \
        [sample("cpu_usage", s, 0.95) for s in range(0, 301, 30)]
    stream.sort(key=lambda e: e.occurred_at)

    ledger: list[Envelope] = []
    straight = RollbackService(POLICY, ledger.append)
    straight_out = feed(straight, stream)

    cut = 9  # mid-window for both triggers
    first_ledger: list[Envelope] = []
    before = RollbackService(POLICY, first_ledger.append)
    feed(before, stream[:cut])
    after = RollbackService(POLICY)
    after.load(stream[:cut] + first_ledger)  # inputs and what was derived, as the ledger has them
    rest = feed(after, stream[cut:])
    assert [e.event_id for e in first_ledger + rest] == [e.event_id for e in straight_out]
    assert after.windows == straight.windows
    assert after.tracker == straight.tracker


def test_permit_constraints_set_the_thresholds_within_bounds():
    service = RollbackService(POLICY)
    request = permit("kubernetes_deployment", 2)
    payload = {**request.payload, "constraints": {"max_error_rate": 0.004}}
    service.handle(request.model_copy(update={"payload": payload}), T0)
    out = feed(service, [sample("error_rate", s, 0.006) for s in range(0, 121, 30)])
    assert kinds(out) == ["triggered", "commanded"]
    assert out[0].payload["evidence"]["threshold"] == 0.004
