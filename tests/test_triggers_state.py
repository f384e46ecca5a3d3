"""Trigger engine contracts: state survives JSON (a restart mid-window changes nothing),
evidence tells the truth, per-permit overrides stay within policy bounds, policy shape."""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events.payloads import MetricSample
from rules.governance import Governance
from rules.policy import default_policy
from rules.triggers import (
    EngineSettings,
    WindowState,
    apply_overrides,
    crosses,
    evaluate,
    evaluate_one,
    external_fire,
    external_resolve,
    overrides_for,
    state_key,
)

P = pytest.param
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = default_policy().governance.rollback
SETTINGS = EngineSettings.from_policy(POLICY)
GOV_RAW = tomllib.loads((Path(__file__).resolve().parents[1] / "rules" / "policy"
                         / "governance.toml").read_text())


def sample(metric: str, seconds: float, value: float | str, key: str = "k") -> MetricSample:
    return MetricSample(key=key, metric=metric, value=value,
                        observed_at=T0 + timedelta(seconds=seconds))


# --- state is JSON, and a restart in the middle of a window changes nothing -----------------

series = st.lists(
    st.tuples(st.integers(min_value=1, max_value=120),  # seconds since the previous sample
              st.sampled_from([0.0, 0.005, 0.02, 0.5, 3.0, 12.0])),
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(steps=series, restart_every=st.integers(min_value=1, max_value=7))
def test_restart_mid_window_gives_the_same_decisions(steps, restart_every):
    triggers = [POLICY.trigger(n) for n in ("error_rate_threshold", "database_connection_errors",
                                            "cpu_usage_spike")]
    plain: dict = {}
    restarted: dict = {}
    got_plain, got_restarted = [], []
    at = 0
    for i, (gap, value) in enumerate(steps):
        at += gap
        for metric in ("error_rate", "db_connection_errors", "cpu_usage"):
            s = sample(metric, at, value)
            now = s.observed_at
            updated, found = evaluate(plain, s, triggers, now, SETTINGS)
            plain.update(updated)
            got_plain += found
            updated, found = evaluate(restarted, s, triggers, now, SETTINGS)
            restarted.update(updated)
            got_restarted += found
        if i % restart_every == 0:  # the table is rebuilt from its changelog: JSON text
            restarted = {k: WindowState.model_validate(json.loads(json.dumps(
                v.model_dump(mode="json")))) for k, v in restarted.items()}
    assert got_restarted == got_plain
    assert restarted == plain


@settings(max_examples=60, deadline=None)
@given(steps=series)
def test_evidence_tells_the_truth(steps):
    trigger = POLICY.trigger("error_rate_threshold")
    state, at = None, 0
    for gap, value in steps:
        at += gap
        s = sample("error_rate", at, value)
        state, found = evaluate_one(state, s, trigger, s.observed_at, SETTINGS)
        for d in (d for d in found if d.kind == "rollback"):
            ev = d.evidence
            assert ev.window_end - ev.window_start >= timedelta(seconds=120)
            assert ev.count >= max(trigger.consecutive, SETTINGS.evaluation.min_samples)
            assert all(crosses(trigger, p.value, 0.01) for p in ev.crossing)
            assert ev.min > 0.01 and ev.min <= ev.mean <= ev.max


def test_state_key_and_json_round_trip():
    trigger = POLICY.trigger("consecutive_health_check_failures")
    state, _ = evaluate_one(None, sample("health_check_status", 0, "failed"), trigger, T0)
    assert state_key("deploy-1", trigger.name) == "deploy-1|consecutive_health_check_failures"
    text = json.dumps(state.model_dump(mode="json"))
    assert WindowState.model_validate_json(text) == state


def test_evaluate_touches_only_the_triggers_of_the_metric():
    updated, _ = evaluate({}, sample("error_rate", 0, 0.5), POLICY.triggers, T0)
    assert list(updated) == ["k|error_rate_threshold"]


def test_decision_evidence_is_what_the_ledger_gets():
    trigger = POLICY.trigger("error_rate_threshold")
    state, decisions = None, []
    for t in range(0, 121, 30):
        state, found = evaluate_one(state, sample("error_rate", t, 0.02 + t / 10_000), trigger,
                                    T0 + timedelta(seconds=t))
        decisions += found
    (d,) = decisions
    evidence = d.evidence_dict()
    assert (evidence["count"], evidence["threshold"], evidence["sustained_seconds"]) == (5, 0.01,
                                                                                        120)
    assert evidence["window_start"] == "2025-03-01T12:00:00Z"
    assert evidence["window_end"] == "2025-03-01T12:02:00Z"
    assert (evidence["min"], evidence["max"]) == (0.02, 0.032)
    assert [p["value"] for p in evidence["crossing"]] == pytest.approx([0.02, 0.023, 0.026, 0.029,
                                                                      0.032])
    assert d.automatic and d.approval == "none" and d.severity == "critical"


def test_evidence_keeps_only_the_latest_crossing_samples():
    trigger = POLICY.trigger("latency_p99_threshold")
    state, decisions = None, []
    for t in range(0, 301, 10):
        state, found = evaluate_one(state, sample("latency_p99", t, 900.0), trigger,
                                    T0 + timedelta(seconds=t))
        decisions += found
    (d,) = decisions
    assert d.evidence.count == 31
    assert len(d.evidence.crossing) == SETTINGS.evaluation.max_evidence_samples


# --- triggers judged elsewhere (Alertmanager) keep the same hysteresis -------------------------


def test_external_fire_once_per_incident_and_rearm_after_resolution():
    trigger = POLICY.trigger("error_rate_threshold")
    state, first = external_fire(None, "k", trigger, T0, T0, {"alertname": "HighErrors"})
    state, again = external_fire(state, "k", trigger, T0 + timedelta(minutes=1), T0)
    state = external_resolve(state, "k", trigger, T0 + timedelta(minutes=2))
    state, soon = external_fire(state, "k", trigger, T0 + timedelta(minutes=4), T0)
    state = external_resolve(state, "k", trigger, T0 + timedelta(minutes=5))
    state, later = external_fire(state, "k", trigger, T0 + timedelta(minutes=11), T0)
    assert [len(first), len(again), len(soon), len(later)] == [1, 0, 0, 1]
    assert first[0].evidence.source == {"alertname": "HighErrors"}


# --- per-permit overrides --------------------------------------------------------------------

OVERRIDES = [
    P({"max_error_rate": 0.005}, "error_rate_threshold", 0.005, None, id="tighten within bounds"),
    P({"max_error_rate": 0.03}, "error_rate_threshold", 0.03, None, id="loosen within bounds"),
    P({"max_error_rate": 0.2}, "error_rate_threshold", 0.01, "outside the policy bounds",
      id="loosen beyond the bound"),
    P({"max_error_rate": 0.0001}, "error_rate_threshold", 0.01, "outside the policy bounds",
      id="tighten below the floor"),
    P({"max_latency_p99_ms": 300}, "latency_p99_threshold", 300, None, id="latency tighter"),
    P({"cpu_usage_spike": 0.8}, "cpu_usage_spike", 0.8, None, id="unbounded trigger: tighten"),
    P({"cpu_usage_spike": 0.95}, "cpu_usage_spike", 0.9, "would loosen",
      id="unbounded trigger: never loosen"),
    P({"throughput_drop": 0.6}, "throughput_drop", 0.6, None, id="less-than: tighten = raise"),
    P({"throughput_drop": 0.4}, "throughput_drop", 0.5, "would loosen",
      id="less-than: lower is looser"),
    P({"consecutive_health_check_failures": "degraded"}, "consecutive_health_check_failures",
      "failed", "state trigger", id="state thresholds are fixed"),
    P({"max_error_rate": "0.005"}, "error_rate_threshold", 0.01, "only a number",
      id="text is not a number"),
    P({"max_error_rate": {"sustained_seconds": 10}}, "error_rate_threshold", 0.01, "C-17",
      id="windows never change"),
    P({"max_cpu": 0.5}, "cpu_usage_spike", 0.9, "not a permit constraint", id="unknown name"),
]


@pytest.mark.parametrize(("overrides", "trigger", "threshold", "refusal"), OVERRIDES)
def test_permit_overrides_stay_within_policy(overrides, trigger, threshold, refusal):
    triggers, refused = apply_overrides(POLICY.triggers, overrides, POLICY)
    got = next(t for t in triggers if t.name == trigger)
    assert got.threshold == threshold
    assert got.sustained_seconds == POLICY.trigger(trigger).sustained_seconds
    if refusal is None:
        assert refused == []
    else:
        assert len(refused) == 1 and refusal in refused[0].reason


def test_tighter_permit_threshold_fires_where_the_policy_would_not():
    (tight,), _ = apply_overrides([POLICY.trigger("error_rate_threshold")],
                                  {"max_error_rate": 0.005}, POLICY)
    state, fired = None, []
    for t in range(0, 181, 30):
        state, found = evaluate_one(state, sample("error_rate", t, 0.008), tight,
                                    T0 + timedelta(seconds=t))
        fired += found
    assert [int((d.at - T0).total_seconds()) for d in fired] == [120]  # same 120 s window


def test_overrides_file_per_key_or_for_all():
    assert overrides_for({"max_error_rate": 0.005}, "a") == {"max_error_rate": 0.005}
    per_key = {"a": {"max_error_rate": 0.005}, "b": {}}
    assert overrides_for(per_key, "a") == {"max_error_rate": 0.005}
    assert overrides_for(per_key, "c") == {}


# --- the policy refuses trigger nonsense -------------------------------------------------------


def _broken(path, value):
    raw = copy.deepcopy(GOV_RAW)
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(("path", "value", "message"), [
    P(["rollback", "triggers", 7, "sustained_seconds"], 60, "counting window cannot",
      id="count window and sustained"),
    P(["rollback", "permit_override_bounds", "max_error_rate", "max"], 0.005,
      "lies outside", id="bound excludes the policy threshold"),
    P(["rollback", "permit_override_bounds", "max_cpu"], {"min": 0, "max": 1},
      "not a permit override", id="bound for an unknown constraint"),
    P(["rollback", "permit_override_bounds", "max_error_rate", "min"], 0.9, "min > max",
      id="bound reversed"),
    P(["rollback", "trigger_evaluation", "min_samples"], 0, "greater than 0",
      id="zero min samples"),
])
def test_broken_trigger_policy_is_refused(path, value, message):
    assert GOV_RAW["rollback"]["triggers"][7]["name"] == "database_connection_errors"
    with pytest.raises(ValidationError, match=message):
        Governance.model_validate(_broken(path, value))


@pytest.mark.parametrize(("document", "message"), [
    P({"key": "k", "metric": "m", "observed_at": "2025-01-01T00:00:00Z"}, "exactly one",
      id="no reading"),
    P({"key": "k", "metric": "m", "value": 1, "state": "failed",
       "observed_at": "2025-01-01T00:00:00Z"}, "exactly one", id="two readings"),
    P({"key": "k", "metric": "m", "value": float("nan"), "observed_at": "2025-01-01T00:00:00Z"},
      "finite", id="not a number"),
])
def test_metric_sample_needs_one_reading(document, message):
    with pytest.raises(ValidationError, match=message):
        MetricSample.model_validate(document)


def test_text_value_is_read_as_a_state():
    s = MetricSample.model_validate({"key": "k", "metric": "health_check_status",
                                     "value": "failed", "observed_at": "2025-01-01T00:00:00Z"})
    assert (s.value, s.state) == (None, "failed")
