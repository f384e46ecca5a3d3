"""`certify rollback-plan ...` and `certify triggers ...`: plans and trigger replays.

    certify rollback-plan validate FILE [--level N] [--format text|json]
        exit 0 valid, 1 invalid (every problem as `path: message`), 2 unreadable / not JSON
    certify rollback-plan template [NAME]       print a shipped template (no NAME: list them)
    certify triggers evaluate --samples FILE [--permit-overrides FILE] [--plan FILE]
                              [--until TIME] [--format text|json]
        replays a recorded series: when each trigger would have fired, and why (exit 0)
    certify triggers list                       the policy's triggers and their semantics
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from events import InputError, decode_json, describe_validation_error
from events.payloads import MetricSample

TEXT_CROSSING_SHOWN = 5


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rollback-plan", help="rollback plans: validate one, print a template")
    psub = p.add_subparsers(dest="action", required=True)
    v = psub.add_parser("validate", help="check a plan against its level's requirements; "
                        "exit 0 valid, 1 invalid, 2 unreadable")
    v.add_argument("file", help="plan JSON file, or - for stdin")
    v.add_argument("--level", type=int, choices=range(5), metavar="N",
                   help="the operation's certification level (default: the plan's own)")
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.set_defaults(func=cmd_plan_validate)
    t = psub.add_parser("template", help="print a shipped plan template (no NAME: list them)")
    t.add_argument("name", nargs="?")
    t.set_defaults(func=cmd_plan_template)

    p = sub.add_parser("triggers", help="rollback triggers: replay a recorded metric series")
    tsub = p.add_subparsers(dest="action", required=True)
    e = tsub.add_parser("evaluate", help="when would the triggers have fired, and why")
    e.add_argument("--samples", required=True, help="JSON Lines or a JSON array of "
                   "{key, metric, value, observed_at[, baseline]}; - for stdin")
    e.add_argument("--permit-overrides", help="JSON: {constraint: value} for every key, or "
                   "{key: {constraint: value}}")
    e.add_argument("--plan", help="a rollback plan whose triggers (custom ones, tighter "
                   "thresholds) watch every key")
    e.add_argument("--until", help="RFC 3339 time: also report metrics silent until then")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(func=cmd_triggers_evaluate)
    lst = tsub.add_parser("list", help="the policy's triggers")
    lst.set_defaults(func=cmd_triggers_list)


# --- rollback-plan -----------------------------------------------------------------------------


def cmd_plan_validate(args: argparse.Namespace) -> int:
    from rules.rollback_plans import validate_plan
    from streams.cli import EXIT_FAIL, EXIT_OK, _policy, _print_json, _read_input

    plan = decode_json(_read_input(args.file, sys.stdin.buffer))
    level = args.level
    if level is None:
        declared = plan.get("metadata", {}).get("certification_level") \
            if isinstance(plan, dict) and isinstance(plan.get("metadata"), dict) else None
        level = declared if isinstance(declared, int) and 2 <= declared <= 4 else 2
    problems = validate_plan(plan, level, policy=_policy(args).governance.rollback)
    name = "stdin" if args.file in (None, "-") else args.file
    if args.format == "json":
        _print_json({"file": name, "level": level, "valid": not problems,
                     "problems": [{"path": p.path, "message": p.message} for p in problems]})
    elif problems:
        print(f"{name}: {len(problems)} problem{'s' if len(problems) > 1 else ''} "
              f"for level {level}")
        for problem in problems:
            print(f"  {problem}")
    else:
        print(f"{name}: valid rollback plan for level {level}")
    return EXIT_FAIL if problems else EXIT_OK


def cmd_plan_template(args: argparse.Namespace) -> int:
    from rules.rollback_plans import load_template, template_names
    from streams.cli import EXIT_OK, _print_json

    if args.name is None:
        for name in template_names():
            level = load_template(name)["metadata"]["certification_level"]
            print(f"{name}  (level {level})")
        return EXIT_OK
    try:
        _print_json(load_template(args.name))
    except KeyError as error:
        raise InputError("input.unknown_template", str(error.args[0])) from None
    return EXIT_OK


# --- triggers ----------------------------------------------------------------------------------


def read_samples(raw: bytes, name: str) -> list[MetricSample]:
    """A JSON array, or JSON Lines, of samples; `"baseline": true` marks a baseline."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("input.undecodable", f"{name}: not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        document = decode_json(raw, limit=max(len(raw), 1))
        items = [(f"{name}[{i}]", item) for i, item in enumerate(document)]
    else:
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((f"{name}:{number}", decode_json(line)))
                except InputError as error:
                    raise InputError(error.code, f"{name}:{number}: {error.message}") from None
    samples = []
    for where, item in items:
        if not isinstance(item, dict):
            raise InputError("input.schema", f"{where}: a sample must be a JSON object")
        item = dict(item)
        if item.pop("baseline", False) is True:
            item["labels"] = {**(item.get("labels") or {}), "baseline": "true"}
        try:
            samples.append(MetricSample.model_validate(item))
        except ValidationError as error:
            raise InputError("input.schema", describe_validation_error(error, f"{where}: "))\
                from None
        if samples[-1].observed_at.tzinfo is None:
            raise InputError("input.schema", f"{where}: observed_at needs a time zone (Z)")
    return samples


def _json_file(path: str, what: str) -> Any:
    from streams.cli import _read_input

    try:
        return decode_json(_read_input(path, sys.stdin.buffer))
    except InputError as error:
        raise InputError(error.code, f"{what}: {error.message}") from None


def replay(samples: list[MetricSample], policy: Any, overrides: dict[str, Any] | None = None,
           plan: Any = None, until: datetime | None = None) -> dict[str, Any]:
    """Feed a recorded series through the engine, in time order; decisions are taken at the
    time of the sample that caused them (and silent metrics are noticed as time passes)."""
    from rules.rollback_plans import plan_triggers
    from rules.triggers import (
        EngineSettings,
        apply_overrides,
        evaluate,
        overrides_for,
        state_key,
        tick,
    )

    settings = EngineSettings.from_policy(policy)
    base = plan_triggers(plan, policy) if plan is not None else policy.triggers
    per_key: dict[str, Any] = {}
    refused: list[dict[str, Any]] = []
    states: dict[str, Any] = {}
    decisions = []

    def triggers_of(key: str) -> Any:
        if key not in per_key:
            per_key[key], why = apply_overrides(base, overrides_for(overrides or {}, key),
                                                policy)
            refused.extend({"key": key, **r.model_dump(mode="json")} for r in why)
        return per_key[key]

    def tick_all(now: datetime) -> None:
        for name, state in list(states.items()):
            trigger = next(t for t in triggers_of(state.key) if t.name == state.trigger)
            states[name], found = tick(state, trigger, now, settings)
            decisions.extend(found)

    for sample in sorted(samples, key=lambda s: s.observed_at):
        tick_all(sample.observed_at)
        watching = [t for t in triggers_of(sample.key) if t.metric == sample.metric]
        names = [state_key(sample.key, t.name) for t in watching]
        updated, found = evaluate({n: states[n] for n in names if n in states}, sample,
                                  watching, sample.observed_at, settings)
        states.update(updated)
        decisions.extend(found)
    if until is not None:
        tick_all(until)
    decisions.sort(key=lambda d: (d.at, d.key, d.trigger))
    return {"samples": len(samples), "keys": sorted({s.key for s in samples}),
            "overrides_refused": refused,
            "decisions": [d.model_dump(mode="json") for d in decisions]}


def cmd_triggers_evaluate(args: argparse.Namespace) -> int:
    from rules.rollback_plans import parse_plan
    from streams.alertmanager import parse_time
    from streams.cli import EXIT_OK, _policy, _print_json, _read_input

    policy = _policy(args).governance.rollback
    name = "stdin" if args.samples == "-" else args.samples
    samples = read_samples(_read_input(args.samples, sys.stdin.buffer), name)
    overrides = _json_file(args.permit_overrides, "--permit-overrides") \
        if args.permit_overrides else {}
    if not isinstance(overrides, dict):
        raise InputError("input.schema", "--permit-overrides: expected a JSON object")
    plan = None
    if args.plan:
        document = _json_file(args.plan, "--plan")
        level = (document.get("metadata") or {}).get("certification_level", 2) \
            if isinstance(document, dict) else 2
        plan, problems = parse_plan(document, level if isinstance(level, int) else 2, policy)
        if plan is None:
            raise InputError("input.schema", "--plan: not a valid rollback plan: "
                             + "; ".join(str(p) for p in problems[:3]))
    until = parse_time(args.until, "--until") if args.until else None
    if args.until and until is None:
        raise InputError("input.schema", "--until: not a usable time")
    result = replay(samples, policy, overrides, plan, until)
    if args.format == "json":
        _print_json(result)
    else:
        print_text(result)
    return EXIT_OK


def _action(d: dict[str, Any]) -> str:
    if d["kind"] == "no_data":
        return "page (no data)"
    if d["kind"] == "alert":
        return "page (alert only)"
    return "ROLLBACK (automatic)" if d["automatic"] else f"rollback after {d['approval']} approval"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float | int) and not isinstance(value, bool) \
        else str(value)


def print_text(result: dict[str, Any]) -> None:
    decisions = result["decisions"]
    print(f"{result['samples']} samples, {len(result['keys'])} keys, "
          f"{len(decisions)} decisions")
    for r in result["overrides_refused"]:
        print(f"override refused for {r['key']}: {r['name']}={r['value']}: {r['reason']}")
    for d in decisions:
        ev = d["evidence"]
        print(f"{d['at']}  {d['key']}  {d['trigger']}  {_action(d)}  [{d['severity']}]")
        print(f"    {d['reason']}")
        window = f"{ev['window_start'] or '?'} .. {ev['window_end'] or '?'}"
        stats = ", ".join(f"{k} {_short(ev[k])}" for k in ("min", "max", "mean", "sum")
                          if ev.get(k) is not None)
        print(f"    window {window}; {ev['count']} samples{'; ' + stats if stats else ''}; "
              f"threshold {_short(ev['effective_threshold'])}")
        crossing = ev.get("crossing") or []
        if crossing:
            shown = ", ".join(f"{p['at'][11:19]}={_short(p['value'])}"
                              for p in crossing[-TEXT_CROSSING_SHOWN:])
            more = len(crossing) - TEXT_CROSSING_SHOWN
            print(f"    crossed: {shown}" + (f" (+{more} earlier)" if more > 0 else ""))


def cmd_triggers_list(args: argparse.Namespace) -> int:
    from rules.triggers import family
    from streams.cli import EXIT_OK, _policy

    policy = _policy(args).governance.rollback
    for t in policy.triggers:
        fam = family(t)
        window = {"sustained": f"held {t.sustained_seconds} s"
                  + (f", >= {t.consecutive} samples" if t.consecutive else ""),
                  "consecutive": f"{t.consecutive} in a row",
                  "count_window": f"sum per {t.window_seconds} s", "instant": "at once"}[fam]
        action = "alert only" if t.alert_only else (
            "automatic rollback" if t.automatic else f"rollback after {t.approval} approval")
        line = {"greater_than": ">", "less_than": "<", "equals": "="}[t.comparison]
        threshold = f"{_short(t.threshold)} x baseline" \
            if t.threshold_type == "baseline_multiplier" \
            else _short(t.threshold)
        print(f"{t.name:36} {t.metric} {line} {threshold}; {window}; {action} [{t.severity}]")
    return EXIT_OK
