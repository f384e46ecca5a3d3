"""`certify check` and `certify authorize`: the seed's JSON paths, exit codes, one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from streams.cli import main

P = pytest.param


def run_cli(args, stdin: bytes, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_keeps_the_seed_paths(monkeypatch, capsys):
    task = {"task": "Migrate customer data schema", "environment": "production",
            "data": "customer_pii"}
    code, out, err = run_cli(["check", "-"], json.dumps(task).encode(), monkeypatch, capsys)
    assert code == 0, err
    report = json.loads(out)
    decision = report["certification_decision"]
    assert decision["worker_type"] == "union"
    assert decision["certification_level_required"] == 3
    assert decision["approvals_required"] == 2
    assert "security_lead" in decision["approver_roles"]
    assert {b["rule"] for b in decision["hard_blocks"]} >= {"non_union.production",
                                                            "non_union.sensitive_data"}
    assert report["risk_score"]["total"] == sum(
        f["points"] for f in report["risk_score"]["factors"].values())
    assert report["explanation"]
    assert set(report["policy"]) == {"version", "sha256"}


def test_check_reads_a_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"task": "Write docs", "environment": "local"}))
    code, out, _ = run_cli(["check", str(path)], b"", monkeypatch, capsys)
    assert code == 0
    assert json.loads(out)["certification_decision"]["worker_type"] == "non-union"


@pytest.mark.parametrize(("stdin", "message"), [
    P(b'{"task": "x", "environment": ', "input: malformed JSON", id="truncated JSON"),
    P(b'{"task": "x", "environment": 42}', "task.environment: expected text", id="wrong type"),
    P(b"\xff\xfe", "input: not UTF-8", id="not utf-8"),
    P(b"[1]", "task: expected a JSON object", id="array"),
])
def test_check_invalid_input_exits_2_with_one_line(stdin, message, monkeypatch, capsys):
    code, out, err = run_cli(["check"], stdin, monkeypatch, capsys)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_check_missing_file_exits_2(monkeypatch, capsys):
    code, _, err = run_cli(["check", "/nonexistent/task.json"], b"", monkeypatch, capsys)
    assert code == 2 and "/nonexistent/task.json" in err


def request(level, op_type="deploy", environment="production", permit=None, **flags):
    return {"worker": {"id": "w-1", "certification_level": level, "active_permit": permit},
            "operation": {"type": op_type, "environment": environment, "service": "scheduler",
                          **flags}}


# Level rules alone (no permit named): the stateless check of the seed's `can_execute`.
AUTHORIZE = [
    P(request(0, environment="development", op_type="feature_implementation"), True,
      "authorized", id="L0 dev feature work"),
    P(request(0), False, "production_requires_union", id="L0 in production"),
    P(request(1), False, "production_requires_level_2", id="L1 deploy to prod"),
    P(request(2, has_pii=True), False, "sensitive_data_requires_level_3", id="L2 with PII"),
    P(request(2), False, "no_active_permit", id="L2 without permit"),
    P(request(2, op_type="database_migration", environment="test"), False, "insufficient_level",
      id="migration needs L3 even in test (C-29)"),
    P({"worker": {"id": "w", "certification_level": 3, "status": "suspended"},
       "operation": {"type": "deploy", "environment": "development"}}, False,
      "certification_suspended", id="suspended worker"),
    P({"worker": {"id": "w", "certification_level": 0},
       "task": {"task": "Write docs", "environment": "local"}}, True, "authorized",
      id="task form"),
]


@pytest.mark.parametrize(("req", "allowed", "code"), AUTHORIZE)
def test_authorize(req, allowed, code, monkeypatch, capsys):
    exit_code, out, err = run_cli(["authorize"], json.dumps(req).encode(), monkeypatch, capsys)
    verdict = json.loads(out)
    assert (verdict["allowed"], verdict["reason_code"]) == (allowed, code), verdict
    assert exit_code == (0 if allowed else 1)
    assert verdict["message"]


@pytest.fixture
def live_permit(tmp_path, monkeypatch):
    """A standard (L2) permit issued through signed approvals into a real ledger on disk."""
    from tests.test_permit_kit import APPROVERS, Clock, embedded_runner, issued_permit

    now = datetime.now(UTC)
    runner = embedded_runner(tmp_path, Clock(now))
    for approver in APPROVERS.values():
        runner.pipeline.record(approver.registration(valid_from=now - timedelta(days=30)))
    view = issued_permit(runner.pipeline, 2, at=now)
    runner.close()
    monkeypatch.setenv("CERTIFY_KEY_DIR", str(tmp_path / "keys"))
    return tmp_path / "data", view


def test_authorize_checks_a_named_permit_live_in_the_ledger(live_permit, monkeypatch, capsys):
    data_dir, view = live_permit
    scope = view["scope"]
    ok = {"worker": {"id": view["worker_id"], "certification_level": 2},
          "permit_id": view["permit_id"],
          "operation": {"type": "deploy", "environment": scope["environment"],
                        "service": "api"}}
    assert "deploy" in scope["operations"] and "api" in scope["services"]
    args = ["--data-dir", str(data_dir), "--partitions", "3", "authorize"]
    code, out, err = run_cli(args, json.dumps(ok).encode(), monkeypatch, capsys)
    assert (code, json.loads(out)["reason_code"]) == (0, "authorized"), (out, err)

    outside = {**ok, "operation": {**ok["operation"], "service": "billing"}}
    code, out, _ = run_cli(args, json.dumps(outside).encode(), monkeypatch, capsys)
    assert code == 1 and not json.loads(out)["allowed"]

    forged = {**ok, "permit_id": None, "worker": {**ok["worker"], "active_permit": {
        "permit_id": "PRM-forged", "status": "active", "operations": ["deploy"],
        "environment": "production"}}}
    code, out, _ = run_cli(args, json.dumps(forged).encode(), monkeypatch, capsys)
    assert code == 1, "a permit body the worker made up is never trusted"


@pytest.mark.parametrize(("req", "message"), [
    P({"operation": {"type": "x", "environment": "dev"}}, "worker: field required", id="no worker"),
    P({"worker": {"id": "w", "certification_level": 9}, "operation": {"type": "x",
      "environment": "dev"}}, "worker.certification_level", id="level 9"),
    P({"worker": {"id": "w", "certification_level": 2}}, "operation: field required",
      id="no operation"),
    P({"worker": {"id": "w", "certification_level": 2}, "operation": {"environment": "dev"}},
      "operation.type: Field required", id="no operation type"),
])
def test_authorize_invalid_input_exits_2(req, message, monkeypatch, capsys):
    code, out, err = run_cli(["authorize"], json.dumps(req).encode(), monkeypatch, capsys)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_console_script_is_installed():
    """The real entry point, as masters' scripts call it."""
    result = subprocess.run([sys.executable, "-m", "streams.cli", "check", "-"],
                            input=b'{"task": "Write docs", "environment": "local"}',
                            capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["certification_decision"]["certification_level_required"] == 0
