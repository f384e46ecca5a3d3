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


NOW = datetime.now(UTC)
PERMIT = {"permit_id": "PRM-1", "status": "active", "operations": ["deploy"],
          "environment": "production", "not_before": (NOW - timedelta(hours=1)).isoformat(),
          "not_after": (NOW + timedelta(hours=1)).isoformat()}


def request(level, op_type="deploy", environment="production", permit=None, **flags):
    return {"worker": {"id": "w-1", "certification_level": level, "active_permit": permit},
            "operation": {"type": op_type, "environment": environment, "service": "scheduler",
                          **flags}}


AUTHORIZE = [
    P(request(0, environment="development", op_type="feature_implementation"), True,
      "authorized", id="L0 dev feature work"),
    P(request(0), False, "production_requires_union", id="L0 in production"),
    P(request(1, permit=PERMIT), False, "production_requires_level_2", id="L1 deploy to prod"),
    P(request(2, permit=PERMIT, has_pii=True), False, "sensitive_data_requires_level_3",
      id="L2 with PII"),
    P(request(2, permit=PERMIT), True, "authorized", id="L2 deploy with covering permit"),
    P(request(2), False, "no_active_permit", id="L2 without permit"),
    P(request(2, permit="PRM-1"), False, "permit_not_inspectable", id="permit id only"),
    P(request(2, permit={**PERMIT, "operations": ["health_check"]}), False,
      "operation_not_in_permit", id="operation outside permit"),
    P(request(2, permit={**PERMIT, "environment": "staging"}), False, "environment_mismatch",
      id="environment outside permit"),
    P(request(2, permit={**PERMIT, "status": "revoked"}), False, "permit_not_active",
      id="revoked permit"),
    P(request(2, permit={**PERMIT, "not_after": (NOW - timedelta(minutes=1)).isoformat()}),
      False, "permit_expired", id="expired permit"),
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
