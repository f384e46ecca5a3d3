"""`certify approver keygen|add` and `certify permit request|approve|deny|revoke|show|list`, on the
local ledger and against a running server (--url); exit codes and one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from streams.cli import main
from tests.test_permit_kit import (
    APPROVERS,
    PLAN,
    TASKS,
    Clock,
    LiveServer,
    embedded_runner,
    ledger_records,
    register_all,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("CERTIFY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("CERTIFY_URL", raising=False)
    return tmp_path


def cli(data, *args):
    return main(["--data-dir", str(data / "data"), "--partitions", "3", *args])


def out_json(capsys):
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_keygen_writes_a_0600_key_outside_the_repository(data, capsys):
    path = data / "approvers" / "tom.key"
    assert cli(data, "approver", "keygen", "tom", "--out", str(path)) == 0
    printed, _ = out_json(capsys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(printed) == {"approver_id", "public_key", "key_id"}
    assert cli(data, "approver", "keygen", "tom", "--out", str(path)) == 3  # never overwrites
    assert "exists" in capsys.readouterr().err
    inside = REPO / "tom.key"
    assert cli(data, "approver", "keygen", "tom", "--out", str(inside)) == 3
    err = capsys.readouterr().err
    assert "inside the git repository" in err and err.count("\n") == 1
    assert not inside.exists()


def test_the_whole_flow_on_the_local_ledger(data, capsys):
    key = data / "keys-approvers" / "tom.key"
    assert cli(data, "approver", "keygen", "tom", "--out", str(key)) == 0
    public = out_json(capsys)[0]["public_key"]
    assert cli(data, "approver", "add", "tom", "--role", "tech_lead", "--public-key", public) == 0
    capsys.readouterr()
    events = data / "tasks.jsonl"
    events.write_text(json.dumps({**TASKS[2], "task_id": "cli-task"}) + "\n")
    assert cli(data, "run", "--events", str(events)) == 0
    capsys.readouterr()
    plan = data / "plan.json"
    plan.write_text(json.dumps(PLAN))
    assert cli(data, "permit", "request", "--task-id", "cli-task", "--requested-by", "master-1",
               "--worker", "worker-7", "--operations", "deploy", "--services", "api",
               "--environment", "production", "--justification", "release",
               "--rollback-plan", f"@{plan}") == 0
    permit, _ = out_json(capsys)
    pid = permit["permit_id"]
    assert permit["state"] == "in_review"
    assert cli(data, "permit", "list", "--state", "pending") == 0
    assert [p["permit_id"] for p in out_json(capsys)[0]] == [pid]

    sign = ("--approver", "tom", "--role", "tech_lead", "--key", str(key))
    assert cli(data, "permit", "approve", pid, *sign) == 0
    approved, err = out_json(capsys)
    assert approved["state"] == "issued" and "signing approve" in err
    assert cli(data, "permit", "approve", pid, *sign) == 1  # a second approval: refused
    assert "refused (approval.not_in_review)" in capsys.readouterr().err
    assert cli(data, "permit", "revoke", pid, *sign) == 0  # an approver revokes
    assert out_json(capsys)[0]["state"] == "revoked"
    assert cli(data, "permit", "show", pid) == 0
    assert out_json(capsys)[0]["state"] == "revoked"
    types = [r["type"] for r in ledger_records(data)]
    assert types.count("approval.signed") == 2 and "approval.refused" in types


def test_permit_commands_against_a_running_server(data, capsys):
    runner = embedded_runner(data / "server", Clock())
    register_all(runner.pipeline)
    server = LiveServer(runner.pipeline)
    try:
        key = data / "tom.pem"
        key.write_bytes(APPROVERS["tech_lead"].key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        status, _, decision = server.call("POST", "/v1/tasks", {**TASKS[2], "task_id": "srv-1"})
        assert status == 200
        url = ("--url", server.url)
        assert cli(data, "permit", "request", *url, "--task-id", "srv-1", "--requested-by", "m-1",
                   "--operations", "deploy", "--environment", "production",
                   "--justification", "release", "--rollback-plan", json.dumps(PLAN)) == 0
        pid = out_json(capsys)[0]["permit_id"]
        wrong = ("--approver", "tom", "--role", "cto", "--key", str(key))
        assert cli(data, "permit", "approve", pid, *url, *wrong) == 1
        err = capsys.readouterr().err
        assert "refused (approval.role_not_held)" in err and err.count("\n") == 2
        assert cli(data, "permit", "deny", pid, *url, "--approver", "tom", "--role",
                   "tech_lead", "--key", str(key), "--comments", "not this week") == 0
        assert out_json(capsys)[0]["state"] == "denied"
        assert cli(data, "permit", "show", "prm-nope", *url) == 1
        assert "permit.unknown" in capsys.readouterr().err
        # the server holds the ledger of its data dir: a local command there is told why not
        assert main(["--data-dir", str(data / "server" / "data"), "permit", "list"]) == 3
        assert "--url" in capsys.readouterr().err
    finally:
        server.stop()
        runner.close()


def test_a_missing_key_file_is_an_environment_error(data, capsys):
    assert cli(data, "permit", "approve", "prm-1", "--approver", "a", "--role", "r", "--key",
               str(data / "missing.key")) == 3
    assert "--key" in capsys.readouterr().err


def test_a_standard_renewal_is_approved_with_a_signature_on_the_local_ledger(data, capsys):
    from datetime import UTC, datetime, timedelta

    from events import format_time

    key = data / "keys-approvers" / "tom.key"
    assert cli(data, "approver", "keygen", "tom", "--out", str(key)) == 0
    public = out_json(capsys)[0]["public_key"]
    assert cli(data, "approver", "add", "tom", "--role", "tech_lead", "--public-key", public) == 0
    events = data / "tasks.jsonl"
    events.write_text(json.dumps({**TASKS[2], "task_id": "cli-renew"}) + "\n")
    assert cli(data, "run", "--events", str(events)) == 0
    capsys.readouterr()
    end = datetime.now(UTC) + timedelta(hours=1)  # inside the 2 h renewal window
    assert cli(data, "permit", "request", "--task-id", "cli-renew", "--requested-by", "master-1",
               "--operations", "deploy", "--environment", "production", "--justification",
               "release", "--not-after", format_time(end), "--rollback-plan",
               json.dumps(PLAN)) == 0
    pid = out_json(capsys)[0]["permit_id"]
    sign = ("--approver", "tom", "--role", "tech_lead", "--key", str(key))
    assert cli(data, "permit", "approve", pid, *sign) == 0
    issued, _ = out_json(capsys)
    assert cli(data, "permit", "approve", pid, *sign, "--renewal") == 1  # nothing pending
    assert "approval.no_pending_renewal" in capsys.readouterr().err
    assert cli(data, "permit", "renew", pid, "--requested-by", "master-1",
               "--extension-hours", "4", "--justification", "rollout slower") == 0
    pending, _ = out_json(capsys)
    assert pending["pending_renewal"]["renewal"] == 1
    assert pending["scope"]["not_after"] == issued["scope"]["not_after"]
    assert cli(data, "permit", "approve", pid, *sign, "--renewal") == 0
    renewed, err = out_json(capsys)
    assert "signing approve of renewal 1" in err
    assert renewed["renewals"] == 1 and renewed["pending_renewal"] is None
    extended = datetime.fromisoformat(renewed["scope"]["not_after"])
    assert extended - datetime.fromisoformat(issued["scope"]["not_after"]) == timedelta(hours=4)
    types = [r["type"] for r in ledger_records(data)]
    assert types.count("permit.renewal_requested") == 1 and types.count("permit.renewed") == 1
