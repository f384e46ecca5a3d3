"""permit.expiry_warning at the policy's marks (governance permit_lifecycle
expiry_warning_minutes = 30, 15, 5; facts §9.2 "warnings 30, 15 and 5 minutes before"), from
event time with the clock passed in, once per mark and end, also across a restart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import Envelope
from tests.test_permit_kit import (
    POLICY,
    T0,
    Clock,
    embedded_runner,
    issued_permit,
    ledger_records,
    new_pipeline,
    register_all,
)

P = pytest.param
HOURS = 2
END = T0 + timedelta(hours=HOURS)


def test_the_marks_are_policy_data():
    assert POLICY.governance.permit_lifecycle.expiry_warning_minutes == (30, 15, 5)


def _warnings(events):
    return [(e.type, e.payload.get("minutes_left")) for e in events
            if e.type in ("permit.expiry_warning", "permit.expired")]


W = "permit.expiry_warning"
# ticks, as minutes before the end -> what each tick emits (warnings and the expiry)
TABLE = [
    P([-31, -30, -29, -16, -15, -6, -5, -1, 0],
      [[], [(W, 30)], [], [], [(W, 15)], [], [(W, 5)], [], [("permit.expired", None)]],
      id="every mark once, at its instant"),
    P([-30, -30, -30], [[(W, 30)], [], []], id="the same tick again warns once"),
    P([-20, -10, -3], [[(W, 30)], [(W, 15)], [(W, 5)]], id="between the marks"),
    P([-4], [[(W, 5)]], id="a late first tick sends only the nearest mark"),
    P([-14, -2], [[(W, 15)], [(W, 5)]], id="30 skipped, then 5"),
    P([-50, -40], [[], []], id="nothing before the first mark"),
    P([1], [[("permit.expired", None)]], id="after the end: expired, no warning"),
]


@pytest.mark.parametrize(("ticks", "expected"), TABLE)
def test_expiry_warnings_at_the_marks(ticks, expected):
    pipe, recorder = new_pipeline()
    register_all(pipe)
    view = issued_permit(pipe, 2, hours=HOURS)
    got = [_warnings(pipe.tick(END + timedelta(minutes=m))) for m in ticks]
    assert got == expected
    warned = recorder.of_type(W)
    for event in warned:
        assert event.payload["permit_id"] == view["permit_id"]
        assert event.payload["expires_at"].startswith("2030-01-07T11:00:00")
        assert event.payload["notify"] == ["master-1", "worker-7", "tom"]  # requester, worker,
        # approvers


def test_an_executing_permit_is_warned_too_and_a_denied_one_never():
    pipe, _ = new_pipeline()
    register_all(pipe)
    view = issued_permit(pipe, 2, hours=HOURS)
    verdict = pipe.authorize({"worker": {"id": "worker-7", "certification_level": 3,
                                         "status": "active"}, "permit_id": view["permit_id"],
                              "operation": {"type": "deploy", "environment": "production",
                                            "service": "api"}}, T0 + timedelta(minutes=1))
    assert verdict.verdict.allowed
    assert pipe.permits.view(view["permit_id"])["state"] == "executing"
    assert _warnings(pipe.tick(END - timedelta(minutes=15))) == [(W, 15)]
    # a permit still in review is not warned about (it is not in force)
    from tests.test_permit_kit import certify, permit_request, request_envelope

    req = permit_request(pipe, certify(pipe, 2), hours=1)
    assert pipe.handle_event(request_envelope(req), T0).refusal is None
    assert [e for e in pipe.tick(T0 + timedelta(minutes=59)) if e.type == W] == []


def test_a_renewed_permit_is_warned_again_for_its_new_end():
    pipe, recorder = new_pipeline()
    register_all(pipe)
    view = issued_permit(pipe, 1, hours=HOURS)  # read_only: renews without approval
    assert _warnings(pipe.tick(END - timedelta(minutes=30))) == [(W, 30)]
    at = END - timedelta(minutes=20)
    body = {"permit_id": view["permit_id"], "requested_by": "master-1", "extension_hours": 1,
            "justification": "still reading"}
    outcome = pipe.handle_event(Envelope(type="permit.renewal_requested", occurred_at=at,
                                         producer="m", subject=view["permit_id"], payload=body),
                                at)
    assert outcome.refusal is None
    new_end = END + timedelta(hours=1)
    assert _warnings(pipe.tick(END - timedelta(minutes=5))) == []  # the old end is gone
    assert _warnings(pipe.tick(new_end - timedelta(minutes=30))) == [(W, 30)]
    warned = [e.payload for e in recorder.of_type(W)]
    assert [w["expires_at"][:19] for w in warned] == ["2030-01-07T11:00:00",
                                                      "2030-01-07T12:00:00"]


def test_warnings_survive_a_restart_without_duplicates(tmp_path):
    clock = Clock()
    runner = embedded_runner(tmp_path, clock)
    register_all(runner.pipeline)
    view = issued_permit(runner.pipeline, 2, hours=HOURS)
    pid = view["permit_id"]
    clock.now = END - timedelta(minutes=30)
    assert _warnings(runner.tick()) == [(W, 30)]
    timers_before = runner.pipeline.permits.timers()
    runner.close()

    runner = embedded_runner(tmp_path, clock)  # rebuilt from the ledger
    try:
        permits = runner.pipeline.permits
        assert permits.timers() == timers_before
        assert ("expiry_warning", pid) in [(k, s) for _, k, s in timers_before]
        assert _warnings(runner.tick()) == []  # the 30-minute mark was sent before
        clock.now = END - timedelta(minutes=29)
        assert _warnings(runner.tick()) == []
        runner.close()
        clock.now = END - timedelta(minutes=10)  # down across the 15-minute mark
        runner = embedded_runner(tmp_path, clock)
        assert _warnings(runner.tick()) == [(W, 15)]
        runner.close()
        runner = embedded_runner(tmp_path, clock)
        assert _warnings(runner.tick()) == []
        clock.now = END - timedelta(minutes=5)
        assert _warnings(runner.tick()) == [(W, 5)]
    finally:
        runner.close()
    marks = [r["payload"]["minutes_left"] for r in ledger_records(tmp_path)
             if r["type"] == W and r["payload"]["permit_id"] == pid]
    assert marks == [30, 15, 5]
