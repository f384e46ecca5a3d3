"""`certify run` on the embedded default: sample stream -> decisions -> ledger -> DuckDB."""

from __future__ import annotations

import json

import duckdb
import pytest

from ledger import iter_entries, verify
from streams.cli import main
from streams.sample import BAD_RECORDS, sample_records

COUNT = 600


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CERTIFY_KEY_DIR", str(tmp_path / "keys"))
    return tmp_path / "data"


def run(data_dir, *extra):
    return main(["--data-dir", str(data_dir), "--partitions", "3", "run", *extra])


def ledger_events(data_dir):
    return [entry.event for p in range(3) for entry in iter_entries(data_dir / "ledger", p)]


def test_sample_run_certifies_records_and_keeps_the_bad_ones(dirs, capsys):
    assert run(dirs, "--count", str(COUNT)) == 0
    out = capsys.readouterr().out
    events = ledger_events(dirs)
    by_type = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    records = list(sample_records(COUNT))
    bad = sum(1 for r in records if r in BAD_RECORDS) + 1  # + the oversize record
    assert len(by_type["input.rejected"]) == bad
    assert len(by_type["certification.decided"]) == COUNT - bad
    assert len(by_type["task.submitted"]) == COUNT - bad
    levels = {e["payload"]["level"] for e in by_type["certification.decided"]}
    assert levels == {0, 1, 2, 3, 4}
    codes = {e["payload"]["code"] for e in by_type["input.rejected"]}
    assert codes >= {"input.malformed_json", "input.unknown_type", "input.schema",
                     "input.undecodable", "input.oversize"}
    assert "Rejected records" in out and "verified:" in out
    with duckdb.connect(str(dirs / "certify.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from decisions").fetchone()[0] == COUNT - bad
        assert db.execute("select count(*) from rejected_input").fetchone()[0] == bad
        assert db.execute("select count(distinct level) from decisions").fetchone()[0] == 5


def test_a_second_run_is_idempotent(dirs, capsys):
    assert run(dirs, "--count", "200") == 0
    first = ledger_events(dirs)
    assert run(dirs, "--count", "200") == 0
    assert "already in ledger: " in capsys.readouterr().out
    assert ledger_events(dirs) == first
    verify(dirs / "ledger")


def test_events_file_and_stdin(dirs, tmp_path, monkeypatch, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        json.dumps({"task": "Write docs", "environment": "local", "task_id": "t-docs"}),
        "",
        "{not json",
        json.dumps({"task": "Deploy api", "environment": "production", "task_id": "t-api"}),
    ]) + "\n")
    assert run(dirs, "--events", str(path)) == 0
    out = capsys.readouterr().out
    assert "decisions: 2   rejected: 1" in out
    assert f"{path}:3: input: malformed JSON" in out
    decided = {e["subject"]: e["payload"]["level"] for e in ledger_events(dirs)
               if e["type"] == "certification.decided"}
    assert decided == {"t-docs": 0, "t-api": 2}


def test_missing_events_file_is_a_clear_error(dirs, capsys):
    assert run(dirs, "--events", "/nonexistent.jsonl") == 2
    err = capsys.readouterr().err
    assert err.startswith("certify: /nonexistent.jsonl") and err.count("\n") == 1


def test_flipped_byte_in_the_ledger_is_named(dirs, capsys):
    assert run(dirs, "--count", "120") == 0
    capsys.readouterr()
    segment = next((dirs / "ledger" / "p1").glob("seg-*"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    code = main(["--data-dir", str(dirs), "ledger", "verify"])
    err = capsys.readouterr().err
    assert code == 1
    assert "partition" in err and "index" in err
