"""System metrics from the projections (facts §13): certification accuracy, approval time by
level, success rate by level, safety violations, over- and under-certification rates.

* accuracy = reviewed tasks whose appropriate level equals the assigned one / reviewed tasks
  (`review.post_execution`); over-certification = appropriate level below the assigned one,
  under-certification = above it (the projection's `reviews.verdict`). No reviews: None.
* approval time = first `permit.approved` - request time, per permit level.
* success rate = executions whose last report is `completed` / those that finished
  (`completed` or `failed`), per level (the permit's, else the task's decision's).
* safety violations = `violation.recorded` events (target: 0).

`compute(con, governance=...)` gives a dict; `to_text` and `to_prometheus` render it. Inside a
report the same queries read the report's checkpoint cut (`prefix="r_"`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from events import format_time
from reports.sqlfiles import named
from rules.governance import Governance

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)
HOUR = 3600.0


def _rows(con: duckdb.DuckDBPyConnection, name: str, prefix: str, start: datetime,
          end: datetime) -> list[tuple[Any, ...]]:
    # the bounds as constants, not parameters: a constant filter reaches the table scans,
    # which skip the row groups whose min/max time lies outside it
    sql = (named("metrics")[name].replace("{t}", prefix)
           .replace("$start", _literal(start)).replace("$end", _literal(end)))
    return con.execute(sql).fetchall()


def _literal(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compute(con: duckdb.DuckDBPyConnection, *, governance: Governance,
            start: datetime | None = None, end: datetime | None = None, prefix: str = ""
            ) -> dict[str, Any]:
    start, end = start or EPOCH, end or FOREVER
    decisions = {str(level): int(n) for level, n in _rows(con, "decisions", prefix, start, end)}
    approval = {
        str(level): {"count": int(n), "mean_hours": mean / HOUR, "p50_hours": p50 / HOUR,
                     "p95_hours": p95 / HOUR, "max_hours": mx / HOUR,
                     "total_seconds": float(total)}
        for level, n, mean, p50, p95, mx, total in
        _rows(con, "approval_times", prefix, start, end)}
    success: dict[str, dict[str, Any]] = {}
    for level, status, n in _rows(con, "executions", prefix, start, end):
        entry = success.setdefault("unknown" if level is None else str(level),
                                   {"completed": 0, "failed": 0})
        entry[status] = entry.get(status, 0) + int(n)
    for entry in success.values():
        entry["rate"] = _ratio(entry["completed"], entry["completed"] + entry["failed"])
    by_severity: dict[str, int] = {}
    by_rule: dict[str, int] = {}
    for severity, rule, n in _rows(con, "violations", prefix, start, end):
        by_severity[severity] = by_severity.get(severity, 0) + int(n)
        by_rule[rule] = by_rule.get(rule, 0) + int(n)
    verdicts = {"appropriate": 0, "over_certified": 0, "under_certified": 0}
    reviews_by_level: dict[str, dict[str, int]] = {}
    for level, verdict, n in _rows(con, "reviews", prefix, start, end):
        verdicts[verdict] = verdicts.get(verdict, 0) + int(n)
        reviews_by_level.setdefault(str(level), {})[verdict] = int(n)
    reviewed = sum(verdicts.values())
    (emergency_total, emergency_max), = _rows(con, "emergency", prefix, start, end)
    (union_l2, with_plan), = _rows(con, "plans", prefix, start, end)
    states = {state: int(n) for state, n in _rows(con, "permit_states", prefix, start, end)}
    metrics: dict[str, Any] = {
        "period": {"from": format_time(start) if start != EPOCH else None,
                   "to": format_time(end) if end != FOREVER else None},
        "decisions_by_level": decisions,
        "approval_time_by_level": approval,
        "success_rate_by_level": success,
        "safety_violations": {"total": sum(by_severity.values()), "by_severity": by_severity,
                              "by_rule": by_rule},
        "reviews": {"total": reviewed, **verdicts, "by_level": reviews_by_level},
        "certification_accuracy": _ratio(verdicts["appropriate"], reviewed),
        "over_certification_rate": _ratio(verdicts["over_certified"], reviewed),
        "under_certification_rate": _ratio(verdicts["under_certified"], reviewed),
        "emergency_overrides": {"total": int(emergency_total),
                                "max_per_day": int(emergency_max)},
        "rollback_plan_coverage": _ratio(int(with_plan), int(union_l2)),
        "permits_by_state": states,
    }
    metrics["targets"] = targets(metrics, governance)
    return metrics


def targets(m: dict[str, Any], governance: Governance) -> list[dict[str, Any]]:
    """Each metric against its target (governance `metrics_targets`); `met` is None when there
    is nothing to measure yet."""
    t = governance.metrics_targets
    l2 = m["approval_time_by_level"].get("2")
    finished = sum(e["completed"] + e["failed"] for e in m["success_rate_by_level"].values())
    failed = sum(e["failed"] for e in m["success_rate_by_level"].values())
    rows = [
        ("certification_accuracy", f"> {t.accuracy_above:g}", m["certification_accuracy"],
         lambda v: v > t.accuracy_above),
        ("over_certification_rate", f"< {t.over_certification_rate_below:g}",
         m["over_certification_rate"], lambda v: v < t.over_certification_rate_below),
        ("under_certification_rate", f"< {t.under_certification_rate_below:g}",
         m["under_certification_rate"], lambda v: v < t.under_certification_rate_below),
        ("safety_violations", f"<= {t.safety_violations_max}", m["safety_violations"]["total"],
         lambda v: v <= t.safety_violations_max),
        ("level_2_mean_approval_hours", f"<= {t.level_2_average_approval_hours_max:g}",
         l2["mean_hours"] if l2 else None,
         lambda v: v <= t.level_2_average_approval_hours_max),
        ("execution_failure_rate", f"<= {t.permit_failure_rate_max:g}",
         _ratio(failed, finished), lambda v: v <= t.permit_failure_rate_max),
        ("emergency_overrides_per_day", f"<= {t.emergency_permits_per_day_max}",
         m["emergency_overrides"]["max_per_day"],
         lambda v: v <= t.emergency_permits_per_day_max),
        ("rollback_plan_coverage", f">= {t.rollback_plan_coverage_min:g}",
         m["rollback_plan_coverage"], lambda v: v >= t.rollback_plan_coverage_min),
    ]
    return [{"metric": name, "target": target, "value": value,
             "met": None if value is None else bool(check(value))}
            for name, target, value, check in rows]


# --- rendering -------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def to_text(m: dict[str, Any]) -> str:
    out = ["System metrics" + (f" {m['period']['from'] or '…'} – {m['period']['to'] or '…'}"
                               if any(m["period"].values()) else "")]
    out.append("  decisions by level: " + (", ".join(
        f"L{k} {v}" for k, v in sorted(m["decisions_by_level"].items())) or "none"))
    out.append(f"  certification accuracy: {_fmt(m['certification_accuracy'])} "
               f"({m['reviews']['total']} reviewed; over {_fmt(m['over_certification_rate'])}, "
               f"under {_fmt(m['under_certification_rate'])})")
    for level, a in sorted(m["approval_time_by_level"].items()):
        out.append(f"  approval time L{level}: mean {a['mean_hours']:.2f} h, p50 "
                   f"{a['p50_hours']:.2f} h, p95 {a['p95_hours']:.2f} h ({a['count']} permits)")
    for level, s in sorted(m["success_rate_by_level"].items()):
        out.append(f"  success rate L{level}: {_fmt(s['rate'])} ({s['completed']} completed, "
                   f"{s['failed']} failed)")
    v = m["safety_violations"]
    out.append(f"  safety violations: {v['total']}" + (
        " (" + ", ".join(f"{k} {n}" for k, n in sorted(v["by_severity"].items())) + ")"
        if v["total"] else ""))
    out.append(f"  emergency overrides: {m['emergency_overrides']['total']} (max "
               f"{m['emergency_overrides']['max_per_day']} a day)")
    out.append(f"  rollback plan coverage (L2+): {_fmt(m['rollback_plan_coverage'])}")
    out.append("  targets:")
    for t in m["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        out.append(f"    {t['metric']}: {_fmt(t['value'])} (target {t['target']}): {mark}")
    return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def to_prometheus(m: dict[str, Any], extra: dict[str, float] | None = None) -> str:
    """Prometheus text exposition format 0.0.4 (one HELP and TYPE per family)."""
    lines: list[str] = []

    def family(name: str, kind: str, help_: str,
               samples: list[tuple[str, dict[str, str], float | None]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            if value is None:
                continue
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{suffix}{{{text}}} {float(value):.10g}" if text
                         else f"{name}{suffix} {float(value):.10g}")

    family("certify_decisions_total", "counter", "Certification decisions by level.",
           [("", {"level": k}, v) for k, v in sorted(m["decisions_by_level"].items())])
    approval: list[tuple[str, dict[str, str], float | None]] = []
    for level, a in sorted(m["approval_time_by_level"].items()):
        approval += [("", {"level": level, "quantile": "0.5"}, a["p50_hours"] * HOUR),
                     ("", {"level": level, "quantile": "0.95"}, a["p95_hours"] * HOUR),
                     ("_sum", {"level": level}, a["total_seconds"]),
                     ("_count", {"level": level}, a["count"])]
    family("certify_approval_duration_seconds", "summary",
           "Time from permit request to approval, by permit level.", approval)
    executions = []
    for level, s in sorted(m["success_rate_by_level"].items()):
        executions += [("", {"level": level, "status": "completed"}, s["completed"]),
                       ("", {"level": level, "status": "failed"}, s["failed"])]
    family("certify_executions_total", "counter", "Finished executions by level and status.",
           executions)
    family("certify_execution_success_ratio", "gauge",
           "Completed / finished executions, by level.",
           [("", {"level": k}, s["rate"]) for k, s in sorted(m["success_rate_by_level"].items())])
    family("certify_safety_violations_total", "counter", "Safety violations by severity.",
           [("", {"severity": k}, v) for k, v in
            sorted(m["safety_violations"]["by_severity"].items())] or [("", {}, 0)])
    family("certify_reviews_total", "counter", "Post-execution reviews by verdict.",
           [("", {"verdict": k}, m["reviews"][k])
            for k in ("appropriate", "over_certified", "under_certified")])
    family("certify_certification_accuracy_ratio", "gauge",
           "Reviewed tasks certified at the appropriate level / reviewed tasks.",
           [("", {}, m["certification_accuracy"])])
    family("certify_over_certification_ratio", "gauge",
           "Reviewed tasks whose appropriate level is below the assigned one.",
           [("", {}, m["over_certification_rate"])])
    family("certify_under_certification_ratio", "gauge",
           "Reviewed tasks whose appropriate level is above the assigned one.",
           [("", {}, m["under_certification_rate"])])
    family("certify_emergency_overrides_total", "counter", "Emergency overrides granted.",
           [("", {}, m["emergency_overrides"]["total"])])
    family("certify_rollback_plan_coverage_ratio", "gauge",
           "Level 2+ permit requests that carry a rollback plan.",
           [("", {}, m["rollback_plan_coverage"])])
    family("certify_permits", "gauge", "Permits requested in the period, by current state.",
           [("", {"state": k}, v) for k, v in sorted(m["permits_by_state"].items())])
    family("certify_metric_target_met", "gauge",
           "1 when the metric meets its governance target, 0 when it misses it.",
           [("", {"metric": t["metric"]}, None if t["met"] is None else float(t["met"]))
            for t in m["targets"]])
    for name, value in (extra or {}).items():
        family(name, "gauge", name.replace("_", " ") + ".", [("", {}, value)])
    return "\n".join(lines) + "\n"
