"""`certify rollback-plan ...` and `certify triggers ...` through streams.cli.main: exit codes
and output."""

from __future__ import annotations

import io
import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from rules.rollback_plans import load_template
from streams.cli import main

P = pytest.param
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def run_cli(args, monkeypatch, capsys, stdin: bytes = b""):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path, name: str, document) -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


# --- rollback-plan validate ------------------------------------------------------------------


def test_valid_plan_exits_0(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "plan.json", load_template("database_migration"))
    code, out, _ = run_cli(["rollback-plan", "validate", path], monkeypatch, capsys)
    assert code == 0
    assert out.strip() == f"{path}: valid rollback plan for level 3"


def test_invalid_plan_exits_1_with_every_problem(tmp_path, monkeypatch, capsys):
    plan = load_template("kubernetes_deployment")
    del plan["verification_procedure"]
    plan["rollback_procedure"]["sla_minutes"] = 30
    path = write(tmp_path, "plan.json", plan)
    code, out, _ = run_cli(["rollback-plan", "validate", path, "--level", "2"], monkeypatch,
                           capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{path}: 2 problems for level 2"
    assert "  verification_procedure: required section is missing" in lines
    assert any(line.startswith("  rollback_procedure.sla_minutes: 30 exceeds") for line in lines)


def test_level_option_raises_the_bar(monkeypatch, capsys):
    raw = json.dumps(load_template("kubernetes_deployment")).encode()
    code, out, _ = run_cli(["rollback-plan", "validate", "-", "--level", "3", "--format", "json"],
                           monkeypatch, capsys, raw)
    report = json.loads(out)
    assert code == 1 and report["level"] == 3 and not report["valid"]
    assert {"path": "testing_evidence.production_like_test_date",
            "message": "required at this level (C-16)"} in report["problems"]


@pytest.mark.parametrize(("content", "message"), [
    P("{\"metadata\": ", "malformed JSON", id="truncated"),
    P(None, "No such file", id="missing file"),
])
def test_unreadable_plan_exits_2(tmp_path, monkeypatch, capsys, content, message):
    path = write(tmp_path, "plan.json", content) if content else str(tmp_path / "nope.json")
    code, out, err = run_cli(["rollback-plan", "validate", path], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_json_array_is_invalid_not_unreadable(tmp_path, monkeypatch, capsys):
    code, out, _ = run_cli(["rollback-plan", "validate", write(tmp_path, "p.json", [])],
                           monkeypatch, capsys)
    assert code == 1 and "plan: a rollback plan must be a JSON object" in out


# --- rollback-plan template ------------------------------------------------------------------


def test_template_list_and_print(monkeypatch, capsys):
    code, out, _ = run_cli(["rollback-plan", "template"], monkeypatch, capsys)
    assert code == 0 and "terraform_infrastructure  (level 3)" in out.splitlines()
    code, out, _ = run_cli(["rollback-plan", "template", "n8n_workflow"], monkeypatch, capsys)
    assert code == 0 and json.loads(out) == load_template("n8n_workflow")


def test_printed_template_validates(tmp_path, monkeypatch, capsys):
    _, out, _ = run_cli(["rollback-plan", "template", "kubernetes_deployment"], monkeypatch,
                        capsys)
    path = write(tmp_path, "k8s.json", out)
    assert run_cli(["rollback-plan", "validate", path], monkeypatch, capsys)[0] == 0


def test_unknown_template_exits_2(monkeypatch, capsys):
    code, _, err = run_cli(["rollback-plan", "template", "helm"], monkeypatch, capsys)
    assert code == 2 and "no rollback plan template 'helm'" in err


# --- triggers evaluate -----------------------------------------------------------------------


def lines(*samples) -> str:
    return "\n".join(json.dumps(s) for s in samples) + "\n"


def s(key, metric, seconds, value, **extra):
    return {"key": key, "metric": metric, "value": value,
            "observed_at": (T0 + timedelta(seconds=seconds)).isoformat(), **extra}


SERIES = lines(
    *[s("deploy-1", "error_rate", t, 0.002 if t < 60 else 0.03) for t in range(0, 301, 30)],
    s("deploy-2", "requests_per_second", -3600, 100, baseline=True),
    *[s("deploy-2", "requests_per_second", t, 20) for t in range(0, 241, 30)],
)


def test_evaluate_says_when_and_why_in_json(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "samples.jsonl", SERIES)
    code, out, _ = run_cli(["triggers", "evaluate", "--samples", path, "--format", "json"],
                           monkeypatch, capsys)
    assert code == 0
    result = json.loads(out)
    fired = [(d["key"], d["trigger"], d["at"], d["kind"]) for d in result["decisions"]]
    assert fired == [("deploy-1", "error_rate_threshold", "2025-03-01T12:03:00Z", "rollback"),
                     ("deploy-2", "throughput_drop", "2025-03-01T12:03:00Z", "rollback")]
    evidence = result["decisions"][0]["evidence"]
    assert (evidence["count"], evidence["window_start"]) == (5, "2025-03-01T12:01:00Z")
    assert result["decisions"][1]["evidence"]["effective_threshold"] == 50.0


def test_evaluate_text_table(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "samples.jsonl", SERIES)
    code, out, _ = run_cli(["triggers", "evaluate", "--samples", path], monkeypatch, capsys)
    assert code == 0
    assert out.splitlines()[0] == "21 samples, 2 keys, 2 decisions"
    assert "2025-03-01T12:03:00Z  deploy-1  error_rate_threshold  ROLLBACK (automatic)" in out
    assert "crossed: " in out


def test_evaluate_reads_a_json_array_from_stdin(monkeypatch, capsys):
    series = [s("k", "liveness_probe_status", t, "failed") for t in (0, 10)]
    code, out, _ = run_cli(["triggers", "evaluate", "--samples", "-", "--format", "json"],
                           monkeypatch, capsys, json.dumps(series).encode())
    assert code == 0 and json.loads(out)["decisions"][0]["trigger"] == "liveness_probe_failures"


def test_overrides_tighten_and_out_of_bound_ones_are_refused(tmp_path, monkeypatch, capsys):
    series = lines(*[s("a", "error_rate", t, 0.007) for t in range(0, 181, 30)],
                   *[s("b", "error_rate", t, 0.007) for t in range(0, 181, 30)])
    overrides = {"a": {"max_error_rate": 0.005}, "b": {"max_error_rate": 0.5}}
    code, out, _ = run_cli(["triggers", "evaluate", "--samples",
                            write(tmp_path, "s.jsonl", series), "--permit-overrides",
                            write(tmp_path, "o.json", overrides), "--format", "json"],
                           monkeypatch, capsys)
    result = json.loads(out)
    assert code == 0
    assert [d["key"] for d in result["decisions"]] == ["a"]
    assert result["overrides_refused"][0]["key"] == "b"
    assert "outside the policy bounds" in result["overrides_refused"][0]["reason"]


def test_plan_triggers_and_until(tmp_path, monkeypatch, capsys):
    plan = write(tmp_path, "plan.json", load_template("n8n_workflow"))
    series = lines(*[s("wf", "workflow_execution_failure_rate", t, 0.2) for t in range(0, 121,
                                                                                      30)])
    code, out, _ = run_cli(["triggers", "evaluate", "--samples",
                            write(tmp_path, "s.jsonl", series), "--plan", plan, "--until",
                            "2025-03-01T13:00:00Z", "--format", "json"], monkeypatch, capsys)
    kinds = [(d["trigger"], d["kind"]) for d in json.loads(out)["decisions"]]
    assert code == 0
    assert kinds == [("workflow_execution_failure_rate", "rollback"),
                     ("workflow_execution_failure_rate", "no_data")]


@pytest.mark.parametrize(("content", "message"), [
    P('{"key": "k", "metric": "m", "value": 1}\n', "observed_at", id="missing field"),
    P('{"key": "k"\n', "samples.jsonl:1: input: malformed JSON", id="bad line"),
    P('{"key": "k", "metric": "m", "value": 1, "observed_at": "2025-03-01T12:00:00"}\n',
      "time zone", id="naive time"),
    P("[1, 2]", "a sample must be a JSON object", id="array of numbers"),
])
def test_evaluate_bad_samples_exit_2(tmp_path, monkeypatch, capsys, content, message):
    path = write(tmp_path, "samples.jsonl", content)
    code, _, err = run_cli(["triggers", "evaluate", "--samples", path], monkeypatch, capsys)
    assert code == 2 and message in err


def test_triggers_list(monkeypatch, capsys):
    code, out, _ = run_cli(["triggers", "list"], monkeypatch, capsys)
    assert code == 0 and len(out.splitlines()) == 20
    assert "latency_p50_threshold" in out and "alert only" in out
