"""The trigger table: each family fires exactly when its condition has held for its window --
not on a single spike, not twice for one incident, never a rollback from an alert-only trigger,
never a rollback from silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events.payloads import MetricSample
from rules.policy import default_policy
from rules.triggers import EngineSettings, TriggerDecision, evaluate_one, tick

P = pytest.param
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = default_policy().governance.rollback
SETTINGS = EngineSettings.from_policy(POLICY)


def every(step: int, start: int, stop: int, value: float | str) -> list[tuple[int, float | str]]:
    """Samples every `step` seconds in [start, stop]."""
    return [(t, value) for t in range(start, stop + 1, step)]


def run(trigger: str, series: list[tuple[int, float | str]], key: str = "deploy-1",
        baseline: float | None = None, tick_at: list[int] = ()) -> list[TriggerDecision]:
    t = POLICY.trigger(trigger)
    state, out = None, []
    if baseline is not None:
        sample = MetricSample(key=key, metric=t.metric, value=baseline,
                              observed_at=T0 - timedelta(hours=1), labels={"baseline": "true"})
        state, _ = evaluate_one(state, sample, t, T0, SETTINGS)
    events = sorted([(s, "sample", v) for s, v in series] + [(s, "tick", None) for s in tick_at],
                    key=lambda e: (e[0], e[1]))
    for seconds, what, value in events:
        now = T0 + timedelta(seconds=seconds)
        if what == "tick":
            if state is not None:
                state, found = tick(state, t, now, SETTINGS)
                out += found
            continue
        sample = MetricSample(key=key, metric=t.metric, value=value, observed_at=now)
        state, found = evaluate_one(state, sample, t, now, SETTINGS)
        out += found
    return out


def fired(decisions: list[TriggerDecision], kind: str = "rollback") -> list[int]:
    return [int((d.at - T0).total_seconds()) for d in decisions if d.kind == kind]


BAD, OK = 0.05, 0.001  # error rates either side of 1 %

TABLE = [
    # --- sustained threshold: error_rate > 0.01 held 120 s, >= 4 samples -------------------
    P("error_rate_threshold", every(30, 0, 600, BAD), None, [120], "rollback",
      id="sustained: fires once after 120 s, not again while it lasts"),
    P("error_rate_threshold", every(30, 0, 600, OK)[:5] + [(150, BAD)] + every(30, 180, 600, OK),
      None, [], "rollback", id="sustained: a single spike never fires"),
    P("error_rate_threshold", every(30, 0, 90, BAD) + [(120, OK)] + every(30, 150, 240, BAD)
      + [(270, OK)], None, [], "rollback", id="sustained: two 90 s bursts are not 120 s"),
    P("error_rate_threshold", every(30, 0, 300, 0.01), None, [], "rollback",
      id="sustained: at the threshold is not over it"),
    P("error_rate_threshold", every(60, 0, 300, BAD), None, [180], "rollback",
      id="sustained: 120 s held with 3 samples waits for the 4th (consecutive 4)"),
    P("error_rate_threshold", every(30, 0, 60, BAD) + every(30, 200, 400, BAD), None, [320],
      "rollback", id="sustained: a data gap breaks the run, it starts again"),
    P("error_rate_threshold", every(30, 0, 60, BAD) + every(30, 200, 400, BAD), None, [150],
      "no_data", id="sustained: the gap itself is reported once as no data"),
    P("cpu_usage_spike", every(30, 0, 400, 0.95), None, [180], "rollback",
      id="sustained: cpu > 0.9 for 180 s"),
    # --- consecutive failures --------------------------------------------------------------
    P("consecutive_health_check_failures",
      [(0, "failed"), (10, "failed"), (20, "ok"), (30, "failed"), (40, "failed"),
       (50, "failed"), (60, "failed")], None, [50], "rollback",
      id="consecutive: 3 failures in a row, a success resets the count"),
    P("consecutive_health_check_failures", [(0, "failed"), (10, "failed"), (20, "ok")] * 1,
      None, [], "rollback", id="consecutive: 2 failures are not 3"),
    P("liveness_probe_failures", every(10, 0, 100, "failed"), None, [10], "rollback",
      id="consecutive: liveness 2 in a row, once"),
    # --- count within a window: db_connection_errors > 10 per 60 s ------------------------
    P("database_connection_errors", every(10, 0, 120, 3), None, [30], "rollback",
      id="count: 3+3+3+3 = 12 within 60 s fires on the 4th sample"),
    P("database_connection_errors", every(40, 0, 400, 5), None, [], "rollback",
      id="count: 5 every 40 s never sums over 10 in 60 s"),
    P("database_connection_errors", [(0, 11)], None, [0], "rollback",
      id="count: 11 errors in one report are 11 errors"),
    P("user_complaints_threshold", every(300, 0, 3000, 1), None, [3000], "alert",
      id="count: 11 complaints within the hour page, never roll back"),
    P("user_complaints_threshold", every(300, 0, 3000, 1), None, [], "rollback",
      id="count: alert-only complaints never roll back"),
    # --- baseline multiplier ---------------------------------------------------------------
    P("throughput_drop", every(30, 0, 400, 40.0), 100.0, [180], "rollback",
      id="baseline: rps 40 < 0.5 x 100 held 180 s"),
    P("throughput_drop", every(30, 0, 400, 60.0), 100.0, [], "rollback",
      id="baseline: rps 60 is above half of 100"),
    P("throughput_drop", every(30, 0, 400, 1.0), None, [], "rollback",
      id="baseline: without a baseline it cannot fire"),
    P("throughput_drop", every(30, 0, 400, 1.0), None, [0], "no_data",
      id="baseline: ... and says so once"),
    P("support_ticket_spike", [(0, 20.0), (3600, 31.0)], 10.0, [3600], "rollback",
      id="baseline: tickets > 3 x baseline (instant, manual approval)"),
    # --- state equals ---------------------------------------------------------------------
    P("data_inconsistency_detected", [(0, "consistent"), (30, "inconsistent"),
                                      (60, "inconsistent"), (90, "consistent")],
      None, [30], "rollback", id="state: inconsistent fires at once, once"),
    P("suspicious_activity_detected", [(0, "low"), (30, "high")], None, [], "rollback",
      id="state: only 'critical' is critical"),
    # --- percentage difference --------------------------------------------------------------
    P("record_count_mismatch", [(0, 0.005), (60, -0.02)], None, [60], "rollback",
      id="difference: |-2 %| > 1 %"),
    # --- alert-only sustained ---------------------------------------------------------------
    P("latency_p50_threshold", every(30, 0, 900, 350.0), None, [300], "alert",
      id="alert-only: p50 > 200 ms for 300 s pages once"),
    P("latency_p50_threshold", every(30, 0, 900, 350.0), None, [], "rollback",
      id="alert-only: p50 never rolls back"),
]


@pytest.mark.parametrize(("trigger", "series", "baseline", "expected", "kind"), TABLE)
def test_trigger_table(trigger, series, baseline, expected, kind):
    assert fired(run(trigger, series, baseline=baseline), kind) == expected


def test_flapping_metric_rolls_back_once():
    series = every(30, 0, 150, BAD)  # fires at 120
    flap = [(t, BAD if (t // 30) % 2 else OK) for t in range(180, 1800, 30)]
    series += flap + every(30, 1800, 2100, BAD)  # never 300 s healthy in between
    assert fired(run("error_rate_threshold", series)) == [120]


def test_rearms_after_five_healthy_minutes_then_fires_again():
    series = every(30, 0, 150, BAD) + every(30, 180, 480, OK) + every(30, 510, 700, BAD)
    # healthy from 180 to 480 = 300 s: re-armed; the new run starts at 510 and holds at 630
    assert fired(run("error_rate_threshold", series)) == [120, 630]


def test_healthy_stretch_broken_by_silence_does_not_rearm():
    series = every(30, 0, 150, BAD) + every(30, 180, 300, OK) + every(30, 450, 600, OK) \
        + every(30, 630, 800, BAD)
    # 180-300 healthy, then a 150 s gap (no data), 450-600 healthy is only 150 s: still disarmed
    assert fired(run("error_rate_threshold", series)) == [120]


def test_silence_never_rolls_back_and_is_reported_once():
    decisions = run("error_rate_threshold", every(30, 0, 90, BAD), tick_at=[100, 200, 300, 900])
    assert [(d.kind, int((d.at - T0).total_seconds())) for d in decisions] == [("no_data", 180)]


def test_silence_then_data_starts_a_fresh_run():
    decisions = run("error_rate_threshold", every(30, 0, 90, BAD) + every(30, 400, 520, BAD),
                    tick_at=[300])
    assert [d.kind for d in decisions] == ["no_data", "rollback"]
    assert decisions[1].evidence.window_start == T0 + timedelta(seconds=400)


def test_count_and_instant_triggers_have_no_no_data_rule():
    decisions = run("database_connection_errors", [(0, 1)], tick_at=[10_000])
    decisions += run("data_inconsistency_detected", [(0, "consistent")], tick_at=[10_000])
    assert decisions == []


def test_replayed_and_out_of_order_samples_are_ignored():
    series = every(30, 0, 120, BAD)
    doubled = [s for s in series for _ in range(2)] + [(15, BAD), (45, BAD)]
    assert fired(run("error_rate_threshold", doubled)) == fired(run("error_rate_threshold",
                                                                    series)) == [120]


def test_sample_of_the_wrong_type_is_not_data():
    decisions = run("consecutive_health_check_failures",
                    [(0, "failed"), (10, 1.0), (20, "failed"), (30, "failed")])
    assert fired(decisions) == [30]
