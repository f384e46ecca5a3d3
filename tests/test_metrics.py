"""System metrics over the generated history: each number recomputed independently from the
ledger's own records; the Prometheus text format; GET /metrics on the live server; the CLI."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from reports import compute_metrics, to_prometheus, to_text
from rules.policy import default_policy
from tests.test_permit_kit import LiveServer, ledger_records
from tests.test_reports_kit import build_history

POLICY = default_policy()
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*)?\})? -?[0-9.]+(e[+-]?[0-9]+)?$')


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    h = build_history(tmp_path_factory.mktemp("metrics"))
    yield h
    h.close()


@pytest.fixture(scope="module")
def metrics(history):
    return compute_metrics(history.runner.projector.cursor(), governance=POLICY.governance)


@pytest.fixture(scope="module")
def records(history):
    return ledger_records(history.path)


def at(record):
    return datetime.fromisoformat(record["occurred_at"])


def test_over_and_under_certification_come_from_post_execution_reviews(metrics, records):
    reviews = [r["payload"] for r in records if r["type"] == "review.post_execution"]
    over = sum(r["appropriate_level"] < r["assigned_level"] for r in reviews)
    under = sum(r["appropriate_level"] > r["assigned_level"] for r in reviews)
    assert (len(reviews), over, under) == (4, 1, 1)
    assert metrics["reviews"]["total"] == len(reviews)
    assert metrics["over_certification_rate"] == over / len(reviews)
    assert metrics["under_certification_rate"] == under / len(reviews)
    assert metrics["certification_accuracy"] == (len(reviews) - over - under) / len(reviews)


def test_decisions_approval_times_and_success_rates_by_level(metrics, records):
    decisions = Counter(str(r["payload"]["level"]) for r in records
                        if r["type"] == "certification.decided")
    assert metrics["decisions_by_level"] == dict(decisions)
    requested = {r["payload"]["permit_id"]: (r["payload"]["level"], at(r))
                 for r in records if r["type"] == "permit.requested"}
    approved: dict[str, datetime] = {}
    for r in records:
        if r["type"] == "permit.approved":
            pid = r["payload"]["permit_id"]
            approved[pid] = min(approved.get(pid, at(r)), at(r))
    hours = defaultdict(list)
    for pid, moment in approved.items():
        level, asked = requested[pid]
        hours[str(level)].append((moment - asked).total_seconds() / 3600)
    for level, values in hours.items():
        got = metrics["approval_time_by_level"][level]
        assert got["count"] == len(values)
        assert got["mean_hours"] == pytest.approx(sum(values) / len(values))
        assert got["max_hours"] == pytest.approx(max(values))
    finished = {}
    for r in sorted((r for r in records if r["type"] == "execution.reported"), key=at):
        if r["payload"]["status"] in ("completed", "failed"):
            finished[r["payload"]["execution_id"]] = r["payload"]
    completed = sum(x["status"] == "completed" for x in finished.values())
    assert sum(s["completed"] for s in metrics["success_rate_by_level"].values()) == completed
    assert all(s["rate"] == 1.0 for s in metrics["success_rate_by_level"].values())


def test_safety_violations_and_targets(metrics, records):
    violations = [r for r in records if r["type"] == "violation.recorded"]
    assert metrics["safety_violations"]["total"] == len(violations) == 1
    targets = {t["metric"]: t for t in metrics["targets"]}
    assert targets["safety_violations"]["met"] is False  # target: 0
    assert targets["over_certification_rate"]["met"] is False  # 0.25, target < 0.10
    assert targets["under_certification_rate"]["met"] is False  # 0.25, target < 0.01
    assert targets["level_2_mean_approval_hours"]["met"] is True
    assert "certification accuracy: 0.500" in to_text(metrics)


def test_a_period_limits_every_metric(history):
    empty = compute_metrics(history.runner.projector.cursor(), governance=POLICY.governance,
                            start=datetime.fromisoformat("2031-01-01T00:00:00+00:00"))
    assert empty["decisions_by_level"] == {} and empty["reviews"]["total"] == 0
    assert empty["certification_accuracy"] is None
    assert {t["met"] for t in empty["targets"]} <= {None, True}


def test_the_prometheus_text_format(metrics):
    text = to_prometheus(metrics)
    seen_help, seen_type = set(), set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in seen_help
            seen_help.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "summary") and name not in seen_type
            seen_type.add(name)
        else:
            assert SAMPLE.match(line), line
            family = re.sub(r"(_sum|_count)$", "", line.split("{")[0].split()[0])
            assert family in seen_type, line
    assert 'certify_reviews_total{verdict="over_certified"} 1' in text
    assert "certify_certification_accuracy_ratio 0.5" in text
    assert 'certify_approval_duration_seconds_count{level="2"}' in text


def test_the_server_exports_prometheus_metrics(history):
    server = LiveServer(history.pipe)
    try:
        status, headers, body = server.call("GET", "/metrics")
    finally:
        server.stop()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'certify_safety_violations_total{severity="high"} 1' in body
    assert "certify_projected_entries " in body


def test_certify_metrics_on_the_command_line(tmp_path, capsys):
    from streams.cli import main

    build_history(tmp_path).close()
    base = ["--data-dir", str(tmp_path / "data"), "--key-dir", str(tmp_path / "keys"),
            "--partitions", "3", "metrics"]
    assert main([*base, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["reviews"]["over_certified"] == 1
    assert main([*base, "--format", "prometheus", "--from", "2030-01-01"]) == 0
    assert "certify_decisions_total" in capsys.readouterr().out
    assert main([*base, "--to", "2029-01-01"]) == 0
    assert "decisions by level: none" in capsys.readouterr().out
