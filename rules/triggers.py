"""Rollback triggers over a stream of metric samples: pure, deterministic, serialisable.

One `WindowState` per (key, trigger) -- a Faust table keyed `key|trigger` holds it in Kafka mode,
a dict rebuilt from the ledger holds it in embedded mode -- and `evaluate_one(state, sample,
trigger, now)` folds one sample into it, returning the new state and what fired. `evaluate`
does the same for every trigger that watches the sample's metric. Time is event time
(`observed_at`); `now` only stamps the decision and drives `tick` (the no-data rule).

Families (chosen from the trigger's fields; docs/rollback.md says the same in plain words):

- sustained (`sustained_seconds`): fires when every sample for at least `sustained_seconds` has
  crossed the line -- first crossing sample of the run to the current one, no gap longer than the
  no-data limit, at least `min_samples` samples and at least `consecutive` if that is also set.
- consecutive (`consecutive` only): fires on the N-th crossing sample in a row.
- count window (`window_seconds`): samples are counts (increments since the previous sample);
  fires when their sum within the sliding window crosses the line.
- instant (none of those): fires on the first crossing sample (data inconsistency, a critical
  security alert, an hourly ticket count).

Thresholds: absolute; `state` (equals a text such as "failed"); `baseline_multiplier`
(threshold x the key's baseline -- without a recorded baseline the trigger cannot fire, and says
so once with a `no_data` decision); `percentage_difference` (|value| compared, the value being
the relative difference already).

Hysteresis: a trigger that fired is disarmed for its key; it re-arms only after the metric has
been healthy (non-crossing samples, no data gap) for `rearm_healthy_seconds`. One incident,
however long or flappy, gives one decision.

No data: for sustained and consecutive triggers, no sample for `no_data_after_intervals` x the
check interval breaks the run and gives one `no_data` decision (page a human); silence never
rolls back by itself. Count-window and instant triggers watch event-like metrics that may
legitimately be silent, so they have no no-data rule.

Samples older than or as old as the newest one already seen for the (key, trigger) are ignored:
at-least-once delivery replays them, and order within a key is the producer's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from events.payloads import MetricSample
from rules.governance import RollbackPolicy, RollbackTrigger, TriggerEvaluation

Kind = Literal["rollback", "alert", "no_data"]
Family = Literal["sustained", "consecutive", "count_window", "instant"]
Reading = float | str

BASELINE_LABEL = "baseline"  # a sample labelled baseline="true" records the key's baseline
DEFAULT_CHECK_INTERVAL_SECONDS = 30
_SYMBOL = {"greater_than": ">", "less_than": "<", "equals": "="}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Point(_Frozen):
    at: datetime
    value: float | str


class WindowState(_Frozen):
    """Everything the engine remembers about one trigger on one key. JSON in, JSON out:
    `WindowState.model_validate(state.model_dump(mode="json")) == state`."""

    key: str
    trigger: str
    last_at: datetime | None = None  # newest sample folded in
    run_start: datetime | None = None  # first sample of the current unbroken crossing run
    run_count: int = 0
    run_min: float | None = None
    run_max: float | None = None
    run_sum: float = 0.0
    run_points: tuple[Point, ...] = ()  # the latest crossing samples of the run (evidence)
    window: tuple[Point, ...] = ()  # count-window triggers: the samples inside the window
    fired_at: datetime | None = None  # set = disarmed (fired for this incident)
    healthy_since: datetime | None = None  # while disarmed: start of the healthy stretch
    no_data_reported: bool = False
    baseline: float | None = None
    baseline_missing_reported: bool = False
    fired: int = 0  # incidents so far

    @property
    def armed(self) -> bool:
        return self.fired_at is None


class Evidence(_Frozen):
    """Why a decision was taken: goes whole into the rollback.event `triggered` payload."""

    metric: str
    comparison: str
    threshold_type: str
    threshold: float | str  # as configured (a multiplier for baseline thresholds)
    effective_threshold: float | str | None  # the value compared against (x baseline)
    baseline: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    sustained_seconds: int | None = None
    consecutive: int | None = None
    window_seconds: int | None = None
    count: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    sum: float | None = None  # count windows: what was compared
    crossing: tuple[Point, ...] = ()  # the samples that crossed the line (the latest kept)
    source: dict[str, Any] | None = None  # judged elsewhere: the monitoring system's alert


class TriggerDecision(_Frozen):
    kind: Kind
    trigger: str
    key: str
    metric: str
    at: datetime  # event time: when the condition held (or when the data went missing)
    decided_at: datetime  # the `now` of the evaluation
    severity: str
    automatic: bool  # roll back without a human
    approval: str  # "none", or the approval a rollback waits for (manual, executive, ...)
    security_incident: bool
    reason: str
    evidence: Evidence

    def evidence_dict(self) -> dict[str, Any]:
        return self.evidence.model_dump(mode="json")


@dataclass(frozen=True)
class EngineSettings:
    """The policy's knobs for the engine (rollback.check_interval_seconds, trigger_evaluation)."""

    check_interval_seconds: int = DEFAULT_CHECK_INTERVAL_SECONDS
    evaluation: TriggerEvaluation = field(default_factory=TriggerEvaluation)

    @classmethod
    def from_policy(cls, policy: RollbackPolicy) -> EngineSettings:
        return cls(policy.check_interval_seconds, policy.trigger_evaluation)

    @cached_property
    def no_data_after(self) -> timedelta:
        return timedelta(seconds=self.check_interval_seconds
                         * self.evaluation.no_data_after_intervals)

    @cached_property
    def rearm_after(self) -> timedelta:
        return timedelta(seconds=self.evaluation.rearm_healthy_seconds)


DEFAULT_SETTINGS = EngineSettings()


# --- small pure helpers ----------------------------------------------------------------------


def state_key(key: str, trigger: str) -> str:
    """The table key of a WindowState (Faust table / embedded dict)."""
    return f"{key}|{trigger}"


def family(trigger: RollbackTrigger) -> Family:
    if trigger.window_seconds:
        return "count_window"
    if trigger.sustained_seconds:
        return "sustained"
    if trigger.consecutive:
        return "consecutive"
    return "instant"


def continuous(trigger: RollbackTrigger) -> bool:
    """Watched as a steady stream (no-data rule applies)."""
    return family(trigger) in ("sustained", "consecutive")


def triggers_for(metric: str, triggers: Iterable[RollbackTrigger]) -> list[RollbackTrigger]:
    return [t for t in triggers if t.metric == metric]


def _t(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def reading_of(sample: MetricSample) -> Reading:
    return sample.value if sample.value is not None else str(sample.state)


def effective_threshold(trigger: RollbackTrigger, baseline: float | None) -> float | str | None:
    """The value a reading is compared against; None when a baseline is needed and missing."""
    if trigger.threshold_type == "state":
        return str(trigger.threshold)
    if trigger.threshold_type == "baseline_multiplier":
        return None if baseline is None else float(trigger.threshold) * baseline
    return float(trigger.threshold)


def crosses(trigger: RollbackTrigger, reading: Reading, threshold: float | str) -> bool | None:
    """True when the reading is on the bad side of the line; None when it cannot be compared
    (a number for a state trigger, a text for a numeric one)."""
    if trigger.comparison == "equals":
        return reading == threshold if isinstance(reading, str) else None
    if isinstance(reading, str) or isinstance(threshold, str):
        return None
    value = abs(reading) if trigger.threshold_type == "percentage_difference" else reading
    return value > threshold if trigger.comparison == "greater_than" else value < threshold


def _line(trigger: RollbackTrigger, threshold: float | str | None) -> str:
    subject = (f"|{trigger.metric}|" if trigger.threshold_type == "percentage_difference"
               else trigger.metric)
    shown = threshold if not isinstance(threshold, float) else f"{threshold:g}"
    if trigger.threshold_type == "baseline_multiplier":
        shown = f"{shown} ({trigger.threshold:g} x baseline)"
    return f"{subject} {_SYMBOL[trigger.comparison]} {shown}"


def _stats(values: Sequence[Reading]) -> dict[str, float | None]:
    numbers = [v for v in values if isinstance(v, float | int)]
    if not numbers:
        return {"min": None, "max": None, "mean": None}
    return {"min": min(numbers), "max": max(numbers), "mean": sum(numbers) / len(numbers)}


def _evidence(trigger: RollbackTrigger, state: WindowState, threshold: float | str | None,
              **fields: Any) -> Evidence:
    return Evidence(
        metric=trigger.metric, comparison=trigger.comparison,
        threshold_type=trigger.threshold_type, threshold=trigger.threshold,
        effective_threshold=threshold, baseline=state.baseline,
        sustained_seconds=trigger.sustained_seconds, consecutive=trigger.consecutive,
        window_seconds=trigger.window_seconds, **fields)


def _decision(kind: Kind, trigger: RollbackTrigger, key: str, at: datetime, now: datetime,
              reason: str, evidence: Evidence) -> TriggerDecision:
    acting = kind == "rollback"
    return TriggerDecision(
        kind=kind, trigger=trigger.name, key=key, metric=trigger.metric, at=at,
        decided_at=_utc(now), severity=trigger.severity if kind != "no_data" else "medium",
        automatic=trigger.automatic and acting,
        approval=trigger.approval if acting else "none",
        security_incident=trigger.security_incident and acting, reason=reason,
        evidence=evidence)


def _no_data(trigger: RollbackTrigger, state: WindowState, now: datetime,
             settings: EngineSettings) -> TriggerDecision:
    assert state.last_at is not None
    limit = settings.no_data_after
    at = state.last_at + limit
    reason = (f"no data: no {trigger.metric} sample for {limit.total_seconds():g} s after "
              f"{_t(state.last_at)}; the run is broken, silence never rolls back")
    evidence = _evidence(trigger, state, effective_threshold(trigger, state.baseline),
                         window_start=state.last_at, window_end=at, count=0)
    return _decision("no_data", trigger, state.key, at, now, reason, evidence)


def _broken_run(state: WindowState) -> WindowState:
    return state.model_copy(update={
        "run_start": None, "run_count": 0, "run_min": None, "run_max": None, "run_sum": 0.0,
        "run_points": (), "healthy_since": None})


# --- the fold ----------------------------------------------------------------------------------


def evaluate_one(state: WindowState | None, sample: MetricSample, trigger: RollbackTrigger,
                 now: datetime, settings: EngineSettings = DEFAULT_SETTINGS,
                 ) -> tuple[WindowState, list[TriggerDecision]]:
    """Fold one sample into one trigger's state for the sample's key."""
    if sample.metric != trigger.metric:
        raise ValueError(f"sample metric {sample.metric!r} is not watched by {trigger.name}")
    state = state or WindowState(key=sample.key, trigger=trigger.name)
    at, reading = _utc(sample.observed_at), reading_of(sample)

    if sample.labels.get(BASELINE_LABEL) == "true":
        if isinstance(reading, str) or reading <= 0:
            return state, []
        return state.model_copy(update={"baseline": float(reading),
                                        "baseline_missing_reported": False}), []
    if state.last_at is not None and at <= state.last_at:
        return state, []  # a replay or an out-of-order sample

    decisions: list[TriggerDecision] = []
    threshold = effective_threshold(trigger, state.baseline)
    if threshold is None:
        if not state.baseline_missing_reported:
            reason = (f"no baseline: {trigger.name} compares {trigger.metric} with "
                      f"{trigger.threshold:g} x baseline, and no baseline is recorded for "
                      f"{sample.key}; it cannot fire until one is")
            decisions.append(_decision("no_data", trigger, sample.key, at, now, reason,
                                       _evidence(trigger, state, None, window_end=at, count=1)))
        return state.model_copy(update={"last_at": at, "baseline_missing_reported": True}), \
            decisions

    if continuous(trigger) and state.last_at is not None and \
            at - state.last_at > settings.no_data_after:
        if not state.no_data_reported:
            decisions.append(_no_data(trigger, state, now, settings))
        state = _broken_run(state).model_copy(update={"no_data_reported": True})

    if family(trigger) == "count_window":
        new, fired = _fold_count(state, trigger, at, reading, threshold, now, settings)
    else:
        new, fired = _fold_run(state, trigger, at, reading, threshold, now, settings)
    if new is None:
        return state, decisions  # not comparable: ignored, not counted as data
    return new, decisions + fired


def _fold_run(state: WindowState, trigger: RollbackTrigger, at: datetime, reading: Reading,
              threshold: float | str, now: datetime, settings: EngineSettings,
              ) -> tuple[WindowState | None, list[TriggerDecision]]:
    crossed = crosses(trigger, reading, threshold)
    if crossed is None:
        return None, []
    if not crossed and state.run_count == 0 and state.fired_at is None and \
            state.healthy_since is not None and not state.no_data_reported:
        # healthy on a healthy, armed window (the common case): only the newest time moves
        return state.model_copy(update={"last_at": at}), []
    update: dict[str, Any] = {"last_at": at, "no_data_reported": False}
    if crossed:
        number = reading if not isinstance(reading, str) else None
        keep = settings.evaluation.max_evidence_samples
        update.update(
            run_start=state.run_start or at, run_count=state.run_count + 1,
            run_min=number if state.run_min is None or number is None
            else min(state.run_min, number),
            run_max=number if state.run_max is None or number is None
            else max(state.run_max, number),
            run_sum=state.run_sum + (number or 0.0),
            run_points=(*state.run_points, Point(at=at, value=reading))[-keep:],
            healthy_since=None)
    else:
        update.update(run_start=None, run_count=0, run_min=None, run_max=None, run_sum=0.0,
                      run_points=(), healthy_since=state.healthy_since or at)
    new = state.model_copy(update=update)
    if new.fired_at is not None and new.healthy_since is not None and \
            at - new.healthy_since >= settings.rearm_after:
        new = new.model_copy(update={"fired_at": None, "healthy_since": None})
    if not crossed or not new.armed or not _run_complete(new, trigger, at, settings):
        return new, []

    assert new.run_start is not None
    span = (at - new.run_start).total_seconds()
    fam = family(trigger)
    if fam == "sustained":
        how = f"for {span:g} s ({new.run_count} samples; {trigger.sustained_seconds} s required)"
    elif fam == "consecutive":
        how = f"in {new.run_count} consecutive samples"
    else:
        how = "observed"
    stats: dict[str, float | None] = {"min": new.run_min, "max": new.run_max,
                                      "mean": new.run_sum / new.run_count}
    if isinstance(reading, str):
        stats = {"min": None, "max": None, "mean": None}
    evidence = _evidence(trigger, new, threshold, window_start=new.run_start, window_end=at,
                         count=new.run_count, crossing=new.run_points, **stats)
    kind: Kind = "alert" if trigger.alert_only else "rollback"
    decision = _decision(kind, trigger, new.key, at, now,
                         f"{_line(trigger, threshold)} {how}", evidence)
    fired = _broken_run(new).model_copy(update={"fired_at": at, "fired": new.fired + 1})
    return fired, [decision]


def _run_complete(state: WindowState, trigger: RollbackTrigger, at: datetime,
                  settings: EngineSettings) -> bool:
    fam = family(trigger)
    if fam == "instant":
        return state.run_count >= 1
    if fam == "consecutive":
        return state.run_count >= (trigger.consecutive or 1)
    assert state.run_start is not None and trigger.sustained_seconds is not None
    needed = max(trigger.consecutive or 1, settings.evaluation.min_samples)
    held = at - state.run_start >= timedelta(seconds=trigger.sustained_seconds)
    return held and state.run_count >= needed


def _fold_count(state: WindowState, trigger: RollbackTrigger, at: datetime, reading: Reading,
                threshold: float | str, now: datetime, settings: EngineSettings,
                ) -> tuple[WindowState | None, list[TriggerDecision]]:
    if isinstance(reading, str) or reading < 0:
        return None, []
    assert trigger.window_seconds is not None
    start = at - timedelta(seconds=trigger.window_seconds)
    window = [p for p in state.window if p.at > start] + [Point(at=at, value=reading)]
    while len(window) > settings.evaluation.max_window_points:
        # Coalesce the two oldest into the later one: the count stays, it leaves the window a
        # little later (errs towards rolling back, never loses errors). Documented cap.
        first, second = window[0], window[1]
        window[:2] = [Point(at=second.at, value=float(first.value) + float(second.value))]
    total = float(sum(float(p.value) for p in window))
    crossed = crosses(trigger, total, threshold)
    update: dict[str, Any] = {"last_at": at, "window": tuple(window)}
    update["healthy_since"] = None if crossed else (state.healthy_since or at)
    new = state.model_copy(update=update)
    if new.fired_at is not None and new.healthy_since is not None and \
            at - new.healthy_since >= settings.rearm_after:
        new = new.model_copy(update={"fired_at": None, "healthy_since": None})
    if not crossed or not new.armed:
        return new, []
    values = [float(p.value) for p in window]
    keep = settings.evaluation.max_evidence_samples
    evidence = _evidence(
        trigger, new, threshold, window_start=start, window_end=at, count=len(window),
        sum=total, crossing=tuple(p for p in window if float(p.value) > 0)[-keep:],
        **_stats(values))
    kind: Kind = "alert" if trigger.alert_only else "rollback"
    reason = (f"{_line(trigger, threshold)} within {trigger.window_seconds} s: "
              f"{total:g} counted over {len(window)} samples")
    return new.model_copy(update={"fired_at": at, "fired": new.fired + 1}), [
        _decision(kind, trigger, new.key, at, now, reason, evidence)]


def tick(state: WindowState, trigger: RollbackTrigger, now: datetime,
         settings: EngineSettings = DEFAULT_SETTINGS) -> tuple[WindowState, list[TriggerDecision]]:
    """The clock's turn: a continuous trigger whose data stopped gives one no-data decision."""
    if not continuous(trigger) or state.last_at is None or state.no_data_reported:
        return state, []
    if _utc(now) - state.last_at <= settings.no_data_after:
        return state, []
    decision = _no_data(trigger, state, now, settings)
    return _broken_run(state).model_copy(update={"no_data_reported": True}), [decision]


def evaluate(states: Mapping[str, WindowState], sample: MetricSample,
             triggers: Iterable[RollbackTrigger], now: datetime,
             settings: EngineSettings = DEFAULT_SETTINGS,
             ) -> tuple[dict[str, WindowState], list[TriggerDecision]]:
    """Fold one sample into every trigger watching its metric. `states` maps
    `state_key(key, trigger)` to WindowState (missing = fresh); the result holds the new
    states of the touched keys only -- merge them back (`table[k] = v`)."""
    updated: dict[str, WindowState] = {}
    decisions: list[TriggerDecision] = []
    for trigger in triggers_for(sample.metric, triggers):
        name = state_key(sample.key, trigger.name)
        new, fired = evaluate_one(states.get(name), sample, trigger, now, settings)
        updated[name] = new
        decisions.extend(fired)
    return updated, decisions


def material(old: WindowState | None, new: WindowState) -> bool:
    """Did folding a sample change more than the time of the newest sample (or, on a disarmed
    window, more than its run)? A sample that did not (a healthy reading on a healthy, armed
    window; a bad one while disarmed; a replayed or late one) can be dropped
    without changing what a refold of the recorded samples decides, except that the refold's
    `last_at` is older -- which only the no-data rule reads (the service records a healthy
    sample now and then for that: streams.rollback_service.SAMPLE_HEARTBEAT_SECONDS)."""
    if old is None:
        return True
    if old is new:
        return False
    if old.fired_at is not None and new.fired_at == old.fired_at:
        # Disarmed: the run goes on being counted, but it cannot fire before the trigger
        # re-arms, and re-arming takes a healthy sample, which breaks the run. What a refold
        # must know is the rest (no-data flag, healthy stretch, count window, baseline).
        return {**old.__dict__, **_RUN_IGNORED} != {**new.__dict__, **_RUN_IGNORED}
    return {**old.__dict__, "last_at": None} != {**new.__dict__, "last_at": None}


_RUN_IGNORED = {"last_at": None, "run_start": None, "run_count": 0, "run_min": None,
                "run_max": None, "run_sum": 0.0, "run_points": ()}


def external_fire(state: WindowState | None, key: str, trigger: RollbackTrigger, at: datetime,
                  now: datetime, evidence: Mapping[str, Any] | None = None,
                  settings: EngineSettings = DEFAULT_SETTINGS,
                  ) -> tuple[WindowState, list[TriggerDecision]]:
    """A trigger condition already judged elsewhere (an Alertmanager alert naming the trigger):
    same hysteresis as samples -- no second decision while disarmed; re-armed when the alert
    was resolved for the clear period before it fires again."""
    state = state or WindowState(key=key, trigger=trigger.name)
    at = _utc(at)
    if state.fired_at is not None:
        healed = state.healthy_since is not None and at - state.healthy_since >= \
            settings.rearm_after
        if not healed:
            return state.model_copy(update={"healthy_since": None}), []
    threshold = effective_threshold(trigger, state.baseline)
    ev = _evidence(trigger, state, threshold, window_end=at, count=0,
                   source=dict(evidence) if evidence else None)
    reason = f"{_line(trigger, threshold)} reported by the monitoring system"
    if evidence:
        reason += f" ({', '.join(f'{k}={v}' for k, v in sorted(evidence.items())[:3])})"
    kind: Kind = "alert" if trigger.alert_only else "rollback"
    new = state.model_copy(update={"fired_at": at, "healthy_since": None,
                                   "fired": state.fired + 1})
    return new, [_decision(kind, trigger, key, at, now, reason, ev)]


def external_resolve(state: WindowState | None, key: str, trigger: RollbackTrigger,
                     at: datetime) -> WindowState:
    """The monitoring system says the condition cleared: the healthy stretch starts."""
    state = state or WindowState(key=key, trigger=trigger.name)
    return state.model_copy(update={"healthy_since": state.healthy_since or _utc(at)})


# --- per-permit threshold overrides ------------------------------------------------------------


class OverrideRefused(_Frozen):
    name: str
    value: Any
    reason: str


def apply_overrides(triggers: Sequence[RollbackTrigger], overrides: Mapping[str, Any],
                    policy: RollbackPolicy,
                    ) -> tuple[tuple[RollbackTrigger, ...], list[OverrideRefused]]:
    """A permit's thresholds (max_error_rate, max_latency_p99_ms, or a trigger's own name) in
    place of the policy's. Tightening (firing sooner) is allowed; loosening only within the
    policy's `permit_override_bounds`; windows never change (C-17). Refusals keep the policy
    threshold and say why."""
    by_name = {t.name: t for t in triggers}
    new: dict[str, float] = {}
    refused: list[OverrideRefused] = []
    for name, value in overrides.items():
        target = policy.permit_threshold_overrides.get(name, name)
        trigger = by_name.get(target)
        constraint = name if name in policy.permit_threshold_overrides else \
            policy.override_constraint(target)
        reason = override_problem(trigger, value, policy, constraint)
        if reason:
            refused.append(OverrideRefused(name=name, value=value, reason=reason))
        elif trigger is not None:
            new[trigger.name] = float(value)
    result = tuple(t.model_copy(update={"threshold": new[t.name]}) if t.name in new else t
                   for t in triggers)
    return result, refused


def override_problem(trigger: RollbackTrigger | None, value: Any, policy: RollbackPolicy,
                      constraint: str | None) -> str | None:
    if trigger is None:
        return "not a permit constraint or a rollback trigger"
    if trigger.threshold_type == "state":
        return "a state trigger's threshold cannot be overridden"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "only a number may replace a threshold; windows never change (C-17)"
    if value != value or value in (float("inf"), float("-inf")):
        return "not a finite number"
    current = float(trigger.threshold)
    bound = policy.permit_override_bounds.get(constraint or "")
    if bound is not None:
        if not bound.min <= value <= bound.max:
            return (f"{value:g} is outside the policy bounds [{bound.min:g}, {bound.max:g}] "
                    f"for {trigger.name} (policy threshold {current:g})")
        return None
    if value <= 0:
        return "a threshold must be greater than 0"
    tighter = value <= current if trigger.comparison == "greater_than" else value >= current
    if not tighter:
        return (f"{value:g} would loosen {trigger.name} (policy threshold {current:g}); the "
                "policy sets no bound that allows loosening it")
    return None


def overrides_for(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Overrides file: {constraint: value} for every key, or {key: {constraint: value}}."""
    if document and all(isinstance(v, Mapping) for v in document.values()):
        return dict(document.get(key, {}))
    return dict(document)
