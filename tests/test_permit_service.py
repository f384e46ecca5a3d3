"""The permit service as a fold: rebuilding from the recorded events gives the same permits,
registry and timers; redelivered events are no-ops; `handle(envelope, now)` is the entry point
an agent calls; envelope-level problems become recorded rejections."""

from __future__ import annotations

import json
from datetime import timedelta

from events import Envelope
from streams.embedded import ledger_record
from streams.handlers import Pipeline, handle_inbound
from tests.test_permit_kit import (
    APPROVERS,
    POLICY,
    T0,
    TASKS,
    Recorder,
    approval_envelope,
    certify,
    envelope,
    issued_permit,
    new_pipeline,
    permit_request,
    register_all,
    request_envelope,
)


def busy_pipeline():
    """Permits in most states, an override, refusals and timers: a realistic ledger."""
    pipe, recorder = new_pipeline()
    register_all(pipe)
    running = issued_permit(pipe, 2, hours=3)["permit_id"]
    pipe.authorize({"worker": {"id": "worker-7", "certification_level": 2},
                    "permit_id": running, "operation": {"type": "deploy",
                                                        "environment": "production",
                                                        "service": "api"}}, T0)
    issued_permit(pipe, 3)
    pending = permit_request(pipe, certify(pipe, 4), hours=4)
    pipe.handle_event(request_envelope(pending))
    view = pipe.permits.view(pending.permit_id)
    pipe.handle_event(approval_envelope(APPROVERS["cto"].sign(view)))
    pipe.handle_event(approval_envelope(APPROVERS["tech_lead"].sign(view)))  # refused
    override = APPROVERS["incident_commander"].override("worker-9")
    pipe.handle_event(envelope("override.requested", override["override_id"], override))
    sample = {"key": running, "metric": "error_rate", "value": 0.5,
              "observed_at": "2030-01-07T09:00:30Z"}
    pipe.handle_event(envelope("metric.sample", running, sample))
    return pipe, recorder


def test_rebuilding_from_the_recorded_events_gives_the_same_state():
    live, recorder = busy_pipeline()
    rebuilt = Pipeline(POLICY, Recorder(), now_fn=lambda: T0)
    assert rebuilt.load(recorder.events) == len(recorder.events)
    a, b = live.permits, rebuilt.permits
    assert a.query(limit=1000) == b.query(limit=1000)
    assert a.timers() == b.timers()
    assert a.registry == b.registry and a.signatures == b.signatures and a.seen == b.seen
    assert {k: vars(v) for k, v in a.overrides.items()} == \
        {k: vars(v) for k, v in b.overrides.items()}
    assert {k: p.windows for k, p in a.permits.items()} == \
        {k: p.windows for k, p in b.permits.items()}
    later = T0 + timedelta(days=8)
    assert [e.event_id for e in a.tick(later)] == [e.event_id for e in b.tick(later)]


def test_a_redelivered_inbound_event_after_a_restart_is_a_no_op():
    live, recorder = busy_pipeline()
    rebuilt = Pipeline(POLICY, recorder, now_fn=lambda: T0)
    rebuilt.load(list(recorder.events))
    before = len(recorder.events)
    for event in [e for e in recorder.events if e.producer != "permits"]:
        if event.type in ("permit.requested", "approval.signed", "override.requested"):
            outcome = rebuilt.handle_event(event, T0)
            assert outcome.events == [] and outcome.result.duplicate
    assert len(recorder.events) == before


def test_the_agent_entry_point_takes_envelopes():
    pipe, recorder = new_pipeline()
    register_all(pipe)
    req = permit_request(pipe, certify(pipe, 2))
    events = pipe.handle(request_envelope(req), T0)
    assert [e.type for e in events] == ["permit.requested", "permit.review_started"]
    assert all(e.subject == req.permit_id for e in events)  # one partition per permit
    raw = json.dumps(approval_envelope(APPROVERS["tech_lead"].sign(
        pipe.permits.view(req.permit_id))).to_record()).encode()
    outcome = pipe.handle_raw(raw, "topic:approvals/0/17", T0)
    assert [e.type for e in outcome.events] == ["approval.signed", "permit.approved",
                                                "permit.issued"]


def test_envelope_problems_are_recorded_rejections():
    pipe, recorder = new_pipeline()
    req = permit_request(pipe, certify(pipe, 2))
    wrong_subject = request_envelope(req).model_copy(update={"subject": "elsewhere"})
    outcome = pipe.handle_raw(json.dumps(wrong_subject.to_record()).encode(), "topic", T0)
    assert outcome.rejected is not None and outcome.rejected.code == "input.subject_mismatch"
    derived = envelope("permit.issued", "p", {"permit_id": "p", "from_state": "approved",
                                              "to_state": "issued"})
    outcome = pipe.handle_raw(json.dumps(derived.to_record()).encode(), "topic", T0)
    assert outcome.rejected.code == "input.not_inbound"
    assert [e.type for e in recorder.events[-2:]] == ["input.rejected", "input.rejected"]


def test_handle_inbound_still_certifies_tasks_and_records_nothing():
    outcome = handle_inbound(json.dumps(TASKS[2]).encode(), "stdin:1", POLICY, T0)
    assert [e.type for e in outcome.events] == ["task.submitted", "certification.decided"]
    assert outcome.decision is not None and outcome.decision.decided.level == 2


def test_the_ledger_record_is_the_envelope_record():
    _, recorder = busy_pipeline()
    for event in recorder.events:
        assert ledger_record(event) == event.to_record(), event.type
    assert Envelope.model_validate(ledger_record(recorder.events[-1])) == recorder.events[-1]


def test_decision_info_from_the_record_equals_the_validated_one():
    from events.payloads import CertificationDecided
    from rules.permits import DecisionInfo

    _, recorder = busy_pipeline()
    for event in recorder.of_type("certification.decided"):
        model = CertificationDecided.model_validate(event.payload)
        assert DecisionInfo.from_record(event.event_id, event.payload) == \
            DecisionInfo.from_payload(event.event_id, model)
