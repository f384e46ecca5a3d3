"""Projections against a real ledger and a real DuckDB file.

One valid example per event type (checked against its payload model), projected through the
ledger's own files; then counts, catch-up, replay, rebuild, bad input, crashes and retention.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from events import EVENT_TYPES, Envelope, parse_event
from ledger import Ledger, SigningKey, iter_entries
from ledger.checkpoint import Checkpoint
from ledger.layout import list_segments, partition_dir, read_frames
from projections import (
    PROJECTORS,
    TABLES,
    ProjectionError,
    Projector,
    apply_retention,
    connect_readonly,
    project,
    rebuild,
)
from projections.projector import prefetched
from projections.schema import PROJECTED_TABLES
from projections.source import LedgerDirectory

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PARTITIONS = 3
SIGNER = SigningKey.generate("test")
SHA = "ab" * 32


def decided(task_id: str, level: int = 3, retention_days: int = 365) -> dict[str, Any]:
    return {
        "task_id": task_id, "worker_type": "union" if level else "non-union", "level": level,
        "score": 31, "score_level": level, "risk_level": "high",
        "factors": [
            {"factor": "environment", "points": 10, "value": "production",
             "rule": "scoring.environment.production", "evidence": ["hostname prod-db-1"]},
            {"factor": "data_sensitivity", "points": 8, "value": "pii",
             "rule": "scoring.data.pii", "evidence": ["data_types: pii"]},
        ],
        "minimums": [{"rule": "minimum.data.pii", "level": 3, "reason": "PII present",
                      "evidence": ["data_types: pii"]}],
        "hard_blocks": [], "approvals_required": 2,
        "approver_roles": ["senior_engineer", "security_lead"],
        "approval_time_limit_hours": 24.0, "change_advisory_board": False,
        "required_artefacts": ["rollback_plan"], "audit_fields": ["worker_id", "timestamp"],
        "retention_days": retention_days, "retention_class": "security",
        "compliance_frameworks": ["SOC2", "HIPAA"], "environment": "production",
        "environment_confidence": 0.9, "uncertainties": [], "policy_version": "2025.1",
        "policy_sha256": SHA,
    }


def transition(to_state: str, from_state: str) -> dict[str, Any]:
    return {"permit_id": "permit-1", "from_state": from_state, "to_state": to_state,
            "reason": f"to {to_state}", "actor": "permit-service", "details": {"n": 1}}


# type -> (payload, table, column, value that row must have). One row per event type.
EXAMPLES: dict[str, tuple[dict[str, Any], str, str, Any]] = {
    "task.submitted": ({"task_id": "task-1", "master_id": "m-1",
                        "task": {"description": "migrate users", "environment": "prod"}},
                       "tasks", "master_id", "m-1"),
    "certification.decided": (decided("task-1"), "decisions", "policy_sha256", SHA),
    "task.blocked": ({"task_id": "task-2", "rule": "hard_block.drop_database",
                      "message": "no", "required_level": 4}, "task_blocks", "required_level", 4),
    "permit.requested": ({
        "permit_id": "permit-1", "permit_type": "standard", "task_id": "task-1",
        "decision_event_id": "ev-certification.decided", "level": 3, "requested_by": "m-1",
        "worker_id": "w-1",
        "scope": {"operations": ["db.migrate"], "services": ["users"],
                  "environment": "production", "not_before": "2025-03-01T09:00:00Z",
                  "not_after": "2025-03-01T17:00:00Z"},
        "justification": "schema change", "rollback_plan": {"steps": ["down"]},
        "request_sha256": SHA}, "permit_requests", "environment", "production"),
    **{name: (transition(name.removeprefix("permit."), "requested"), "permit_transitions",
              "to_state", name.removeprefix("permit."))
       for name, model in EVENT_TYPES.items() if model.__name__ == "PermitTransition"},
    "permit.request_refused": ({"permit_id": "permit-9", "requested_by": "m-1",
                                "code": "permit.rollback_plan_missing", "message": "no plan",
                                "request": {"permit_id": "permit-9"}},
                               "permit_refusals", "code", "permit.rollback_plan_missing"),
    "permit.renewal_requested": ({"permit_id": "permit-1", "requested_by": "m-1",
                                  "extension_hours": 2, "justification": "more time"},
                                 "permit_followups", "kind", "renewal"),
    "permit.closure_requested": ({"permit_id": "permit-1", "requested_by": "w-1",
                                  "summary": {"ok": True}}, "permit_followups", "kind", "closure"),
    "authorization.requested": ({"request_id": "r-1", "worker": {"worker_id": "w-1"},
                                 "permit_id": "permit-1",
                                 "operation": {"operation_type": "db.migrate"}},
                                "authorization_requests", "worker_id", "w-1"),
    "override.requested": ({"override_id": "ov-1", "incident_ticket": "INC-9",
                            "trigger": "production_outage", "commander_id": "dave",
                            "commander_role": "incident_commander", "worker_id": "w-9",
                            "scope": {"operations": ["service.restart"],
                                      "environment": "production"},
                            "reason": "outage", "requested_at": "2025-03-01T12:00:00Z",
                            "request_sha256": SHA, "key_id": "k2", "signature": "c2ln"},
                           "overrides", "stage", "requested"),
    "override.review_submitted": ({"override_id": "ov-1", "reviewer_id": "erin",
                                   "report": {"lessons": "more runbooks"}},
                                  "overrides", "reviewer_id", "erin"),
    "approval.signed": ({"permit_id": "permit-1", "request_sha256": SHA, "decision": "approve",
                         "approver_id": "alice", "approver_role": "security_lead",
                         "decided_at": "2025-03-01T10:00:00Z", "key_id": "k1",
                         "signature": "c2ln"}, "approvals", "approver_id", "alice"),
    "approval.refused": ({"permit_id": "permit-1", "approver_id": "bob",
                          "code": "approval.self_approval", "message": "own request",
                          "approval": {"decision": "approve"}},
                         "approvals", "refusal_code", "approval.self_approval"),
    "approver.registered": ({"approver_id": "alice", "roles": ["security_lead"],
                             "public_key": "cGs=", "valid_from": "2025-01-01T00:00:00Z"},
                            "approvers", "roles", ["security_lead"]),
    "operation.authorized": ({"worker_id": "w-1", "permit_id": "permit-1",
                              "operation": {"operation": "db.migrate", "target": "users"},
                              "allowed": True, "reason_code": "allow.in_scope",
                              "message": "ok"}, "operations", "operation_name", "db.migrate"),
    "execution.reported": ({"execution_id": "x-1", "permit_id": "permit-1",
                            "task_id": "task-1", "worker_id": "w-1", "status": "completed",
                            "operations": ["db.migrate"]}, "executions", "status", "completed"),
    "review.post_execution": ({"task_id": "task-1", "assigned_level": 3,
                               "appropriate_level": 2, "reviewer": "carol"},
                              "reviews", "verdict", "over_certified"),
    "metric.sample": ({"key": "permit-1", "metric": "error_rate", "value": 0.07,
                       "observed_at": "2025-03-01T11:00:00Z"}, "metric_samples", "value", 0.07),
    "alert.received": ({"key": "permit-1", "alert": {"labels": {"alertname": "HighErrors"}}},
                       "alerts", "source", "alertmanager"),  # the model's default
    "rollback.event": ({"rollback_id": "rb-1", "permit_id": "permit-1", "stage": "triggered",
                        "trigger": "error_rate>5%", "sla_minutes": 15},
                       "rollbacks", "sla_minutes", 15.0),
    "escalation.raised": ({"subject_kind": "permit", "subject_id": "permit-1",
                           "reason": "approval overdue", "escalate_to": ["cto"],
                           "severity": "high"}, "escalations", "escalate_to", ["cto"]),
    "violation.recorded": ({"worker_id": "w-1", "permit_id": "permit-1",
                            "rule": "scope.operation", "message": "outside scope",
                            "severity": "critical", "action": "suspended"},
                           "violations", "action", "suspended"),
    "override.event": ({"override_id": "ov-1", "stage": "granted", "incident_ticket": "INC-9",
                        "commander_id": "dave", "commander_role": "incident_commander",
                        "expires_at": "2025-03-01T13:00:00Z"},
                       "overrides", "incident_ticket", "INC-9"),
    "ledger.key_added": ({"action": "added", "new_vkey": "ledger-1+abcd0123+AQID",
                          "sig_new": "c2ln"}, "keys", "key_name", "ledger-1"),
    "ledger.key_rotated": ({"action": "rotated", "new_vkey": "ledger-2+bcde1234+AQID",
                            "old_vkey": "ledger-1+abcd0123+AQID", "sig_new": "c2ln",
                            "sig_old": "c2ln"}, "keys", "previous_key_id", "abcd0123"),
    "input.rejected": ({"source": "stdin:3", "code": "input.malformed_json", "message": "bad",
                        "raw_sha256": SHA, "raw_excerpt": "{nope", "raw_size": 5},
                       "rejected_input", "raw_size", 5),
    "ledger.tail_truncated": ({"segment": "00000000000000000000.seg", "offset": 4096,
                               "bytes_cut": 17, "sha256": SHA, "reason": "short",
                               "quarantine": "quarantine/00000000000000000000-4096.bin",
                               "next_index": 12},
                              "ledger_truncations", "cut_at_offset", 4096),
    "rollback.stage_reported": ({"rollback_id": "rb-1", "stage": "step", "executor": "ex-1",
                                 "step": "scale down"}, "rollback_reports", "executor", "ex-1"),
    "permit.expiry_warning": ({"permit_id": "permit-1", "expires_at": "2026-01-01T10:00:00Z",
                               "minutes_left": 15, "notify": ["m-1"]},
                              "permit_warnings", "minutes_left", 15),
    "report.generated": ({"report_id": "rep-1", "framework": "sox",
                          "period_from": "2026-01-01T00:00:00Z",
                          "period_to": "2026-02-01T00:00:00Z", "format": "json",
                          "report_sha256": SHA, "checkpoint": {"size": 3}, "population": 3,
                          "exceptions": 1, "key_id": "kid-1", "signature": "c2ln",
                          "generated_by": "auditor-1"}, "reports", "population", 3),
    "subject.erased": ({"data_subject": "user-42", "requested_by": "dpo"},
                       "erasures", "legal_basis", "GDPR Art. 17"),
}


def envelope(event_type: str, payload: Any, *, event_id: str | None = None,
             at: datetime = T0, subject: str = "task-1") -> dict[str, Any]:
    return {"event_id": event_id or f"ev-{event_type}", "type": event_type,
            "schema_version": 1, "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "producer": "test", "subject": subject, "correlation_id": "corr-1",
            "causation_id": None, "payload": payload}


def example_events() -> list[dict[str, Any]]:
    """As producers write them: the payload model's JSON (defaults filled in)."""
    return [envelope(name, EVENT_TYPES[name].model_validate(payload).model_dump(mode="json"),
                     at=T0 + timedelta(minutes=i))
            for i, (name, (payload, *_)) in enumerate(EXAMPLES.items()) if name in EVENT_TYPES]


def new_ledger(directory: Path) -> Ledger:
    return Ledger.open(directory, signer=SIGNER, partitions=PARTITIONS)


def append(ledger: Ledger, events: list[dict[str, Any]]) -> None:
    for i, event in enumerate(events):
        ledger.append(i % PARTITIONS, event)


def ledger_size_of(directory: Path, partition: int) -> int:
    return sum(1 for _ in iter_entries(directory, partition))


def ledger_size(directory: Path) -> int:
    return sum(1 for p in range(PARTITIONS) for _ in iter_entries(directory, p))


def table_rows(db: Path | duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    con = db if isinstance(db, duckdb.DuckDBPyConnection) else connect_readonly(db)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        if con is not db:
            con.close()


def stored_checkpoints(directory: Path, partitions: int = PARTITIONS
                       ) -> list[tuple[int, int, str]]:
    """(partition, size, note) of every checkpoint frame in the ledger's segments, read with
    the ledger's own frame reader."""
    found = []
    for p in range(partitions):
        for _, path in list_segments(partition_dir(directory, p)):
            for _, _, tail in read_frames(path):
                if isinstance(tail, bytes) and tail[:1] == b"C":
                    note = tail[1:].decode()
                    found.append((p, int(note.split("\n")[1]), note))
    return sorted(found)


def count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every projected table's content (the bookkeeping left out)."""
    con = connect_readonly(db)
    try:
        return {table: table_rows(con, table) for table in (*PROJECTED_TABLES, "permits")}
    finally:
        con.close()


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "ledger"
    with new_ledger(directory) as ledger:
        append(ledger, example_events())
    yield directory


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "projections.duckdb"


@pytest.fixture(scope="module")
def projected_once(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Any, duckdb.DuckDBPyConnection, Path]]:
    """The examples' ledger projected once, read-only, for the tests that only look."""
    directory = tmp_path_factory.mktemp("projected")
    with new_ledger(directory / "ledger") as ledger:
        append(ledger, example_events())
    stats = project(directory / "ledger", directory / "db.duckdb")
    with connect_readonly(directory / "db.duckdb") as con:
        yield stats, con, directory / "ledger"


@pytest.fixture
def projected(projected_once: tuple[Any, duckdb.DuckDBPyConnection, Path]
              ) -> duckdb.DuckDBPyConnection:
    return projected_once[1]


# ---- vocabulary ---------------------------------------------------------------------------


def test_every_event_type_has_a_projection() -> None:
    assert set(EVENT_TYPES) - set(PROJECTORS) == set()


def test_every_event_type_has_a_valid_example() -> None:
    assert set(EVENT_TYPES) - set(EXAMPLES) == set()
    for event in example_events():
        parse_event(event)  # raises if an example drifts from its payload model
        assert Envelope.model_validate(event).type == event["type"]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_each_event_type_lands_in_its_table(projected: duckdb.DuckDBPyConnection,
                                            event_type: str) -> None:
    _, table, column, expected = EXAMPLES[event_type]
    rows = projected.execute(f"SELECT {column} FROM {table} WHERE event_id = ?",
                             [f"ev-{event_type}"]).fetchall()
    note = projected.execute("SELECT note FROM events WHERE event_id = ?",
                             [f"ev-{event_type}"]).fetchall()
    assert rows == [(expected,)]
    assert note == [(None,)]


def test_the_ledgers_own_key_events_land_in_keys(projected: duckdb.DuckDBPyConnection) -> None:
    rows = projected.execute(
        "SELECT k.partition, k.action, k.key_name, k.key_id, e.note FROM keys k "
        "JOIN events e USING (event_id) WHERE e.type = 'ledger.key_added' "
        "AND k.key_name = 'test' ORDER BY ALL"
    ).fetchall()
    assert rows == [(p, "added", "test", SIGNER.key_id_hex, None) for p in range(PARTITIONS)]


def test_a_decision_explains_itself_in_factors_and_minimums(
        projected: duckdb.DuckDBPyConnection) -> None:
    factors = projected.execute("SELECT ordinal, factor, points, evidence FROM factors "
                                "ORDER BY ordinal").fetchall()
    minimums = projected.execute("SELECT rule, level FROM minimums").fetchall()
    assert factors == [(1, "environment", 10, ["hostname prod-db-1"]),
                       (2, "data_sensitivity", 8, ["data_types: pii"])]
    assert minimums == [("minimum.data.pii", 3)]


def test_permit_state_is_the_fold_of_its_transitions(tmp_path: Path, db: Path) -> None:
    moves = [("requested", None), ("review_started", "requested"),
             ("approved", "in_review"), ("issued", "approved")]
    events = [envelope("permit.requested", EXAMPLES["permit.requested"][0], event_id="req",
                       at=T0)]
    events += [envelope(f"permit.{to}", transition(to, frm or ""), event_id=f"t{i}",
                        at=T0 + timedelta(minutes=i)) for i, (to, frm) in enumerate(moves[1:], 1)]
    with new_ledger(tmp_path / "ledger") as ledger:
        for event in events:
            ledger.append(0, event)
    project(tmp_path / "ledger", db)
    with connect_readonly(db) as con:
        state = con.execute("SELECT state, transitions, task_id, operations FROM permits"
                            ).fetchall()
    assert state == [("issued", 4, "task-1", ["db.migrate"])]


# ---- counts, catch-up, replay, rebuild ------------------------------------------------------


def test_counts_match_the_ledger(
        projected_once: tuple[Any, duckdb.DuckDBPyConnection, Path]) -> None:
    stats, con, ledger_dir = projected_once
    by_type = dict(con.execute("SELECT type, count(*) FROM events WHERE event_id LIKE 'ev-%' "
                               "GROUP BY type").fetchall())
    state = dict(con.execute("SELECT partition, next_index FROM projection_state").fetchall())
    total = count(con, "SELECT count(*) FROM events")
    size = ledger_size(ledger_dir)
    assert stats.entries == stats.inserted == total == size == len(EVENT_TYPES) + PARTITIONS
    assert by_type == dict.fromkeys(EVENT_TYPES, 1)
    assert state == {p: sum(1 for _ in iter_entries(ledger_dir, p)) for p in range(PARTITIONS)}


def test_catch_up_reads_only_what_was_appended_since(ledger_dir: Path, db: Path) -> None:
    with Projector(ledger_dir, db) as projector:
        first = projector.catch_up()
        more = [envelope("task.submitted", {"task_id": f"t-{i}", "task": {}}, event_id=f"m{i}")
                for i in range(7)]
        with new_ledger(ledger_dir) as ledger:
            append(ledger, more)
        second = projector.catch_up()
        idle = projector.catch_up()
        tasks = count(projector.con, "SELECT count(*) FROM tasks")
    assert (first.entries, second.entries, idle.entries) == (len(EVENT_TYPES) + PARTITIONS, 7, 0)
    assert tasks == 8


def test_replaying_the_same_entries_changes_nothing(ledger_dir: Path, db: Path) -> None:
    entries = [e for p in range(PARTITIONS) for e in iter_entries(ledger_dir, p)]
    with Projector(ledger_dir, db) as projector:
        projector.project_entries(entries)
        before = {t: table_rows(projector.con, t) for t in PROJECTED_TABLES}
        again = projector.project_entries(entries)  # below next_index: skipped
        projector.con.execute("DELETE FROM projection_state")
        forced = projector.project_entries(entries)  # read again: the event ids stop them
        after = {t: table_rows(projector.con, t) for t in PROJECTED_TABLES}
    assert (again.inserted, forced.inserted) == (0, 0)
    assert forced.duplicates == len(entries)
    assert after == before


@dataclass(frozen=True)
class HandedOver:
    """An entry handed over by the process that appended it, with its stored bytes."""

    partition: int
    index: int
    leaf_hash: bytes
    event: dict[str, Any]
    event_json: bytes


def test_entries_handed_over_with_their_bytes_project_like_a_catch_up(
        tmp_path: Path, ledger_dir: Path) -> None:
    source = LedgerDirectory(ledger_dir)
    handed = [HandedOver(p, i, h, json.loads(body), body) for p in range(PARTITIONS)
              for i, h, body in source.raw_entries(p, 0)]
    a, b = tmp_path / "handed.duckdb", tmp_path / "caught.duckdb"
    with Projector(tmp_path / "absent", a) as projector:
        stats = projector.project_entries(handed)
    project(ledger_dir, b)
    handed_over, caught_up = snapshot(a), snapshot(b)
    assert stats.inserted == len(handed)
    assert handed_over.pop("checkpoints") == []  # entries carry no checkpoints
    assert len(caught_up.pop("checkpoints")) == len(stored_checkpoints(ledger_dir))
    assert handed_over == caught_up


def test_the_same_event_twice_in_one_batch_is_projected_once(ledger_dir: Path,
                                                             db: Path) -> None:
    entry = next(iter_entries(ledger_dir, 0))
    copy = type(entry)(1, 0, entry.leaf_hash, entry.prev_hash, entry.event)
    with Projector(ledger_dir, db) as projector:
        stats = projector.project_entries([entry, copy])
        rows = projector.con.execute("SELECT partition, ledger_index FROM events").fetchall()
    assert (stats.inserted, stats.duplicates) == (1, 1)
    assert rows == [(0, 0)]


@pytest.mark.parametrize("raw", [True, False], ids=["stored bytes", "parsed entries"])
def test_rebuild_equals_incremental(ledger_dir: Path, db: Path, raw: bool) -> None:
    """Incremental in small batches with appends between (either reading path) == one rebuild
    (stored bytes), which also replaces the existing file in place."""
    with Projector(ledger_dir, db, batch_size=16, raw=raw) as projector:
        projector.catch_up()
        with new_ledger(ledger_dir) as ledger:
            append(ledger, [envelope(f"permit.{s}", transition(s, "x"), event_id=f"late-{s}",
                                     at=T0 + timedelta(hours=2)) for s in ("issued", "closed")])
        projector.catch_up()
        projector.con.execute("DELETE FROM decisions WHERE true")  # damage: rebuild repairs
        incremental = {t: table_rows(projector.con, t) for t in (*PROJECTED_TABLES, "permits")}
    stats = rebuild(ledger_dir, db)
    incremental["decisions"] = table_rows(db, "decisions")
    rebuilt = snapshot(db)
    if not raw:  # parsed entries carry no checkpoints; the stored frames do
        assert incremental.pop("checkpoints") == []
        assert len(rebuilt.pop("checkpoints")) == len(stored_checkpoints(ledger_dir))
    assert stats.entries == len(EVENT_TYPES) + PARTITIONS + 2
    assert len(incremental["decisions"]) == 1
    assert rebuilt == incremental


def busy_events(first: int, count: int) -> list[dict[str, Any]]:
    """Decisions, submissions and permit moves, as a running system appends them."""
    kinds = ["task.submitted", "certification.decided", "permit.issued", "metric.sample"]
    events = []
    for i in range(first, first + count):
        kind = kinds[i % len(kinds)]
        payload = EXAMPLES[kind][0]
        if kind == "certification.decided":
            payload = decided(f"task-{i}", level=i % 5)
        events.append(envelope(kind, payload, event_id=f"busy-{i}", subject=f"task-{i}",
                               at=T0 + timedelta(seconds=i)))
    return events


def test_incremental_in_odd_chunks_equals_a_rebuild(tmp_path: Path, db: Path) -> None:
    """Catch-ups in odd batch sizes (1, 7, 13, 64) while the ledger is written (so some read
    an unsigned tail whose checkpoint comes later) give the same tables, checkpoints included,
    and the same positions as one rebuild."""
    ledger_dir = tmp_path / "ledger"
    appended = 0
    for batch_size, more in ((7, 101), (1, 5), (13, 77), (64, 0), (7, 33)):
        with Ledger.open(ledger_dir, signer=SIGNER, partitions=PARTITIONS,
                         checkpoint_every=9, checkpoint_interval_s=3600) as ledger:
            for i, event in enumerate(busy_events(appended, more)):
                ledger.append((i * 7) % PARTITIONS, event)
            appended += more
            with Projector(ledger_dir, db, batch_size=batch_size) as projector:
                projector.catch_up()  # the entries after the last checkpoint are unsigned yet
    with Projector(ledger_dir, db, batch_size=5) as projector:
        projector.catch_up()  # only the checkpoints written on close are new
    incremental = snapshot(db)
    with connect_readonly(db) as con:
        positions = dict(con.execute("SELECT partition, next_index FROM projection_state"
                                     ).fetchall())
    rebuild(ledger_dir, tmp_path / "rebuilt.duckdb")
    assert len(incremental["events"]) == appended + PARTITIONS
    assert positions == {p: ledger_size_of(ledger_dir, p) for p in range(PARTITIONS)}
    assert [(p, size, note) for p, size, *_, note, _ in incremental["checkpoints"]] == \
        stored_checkpoints(ledger_dir)
    assert snapshot(tmp_path / "rebuilt.duckdb") == incremental


def test_entries_handed_in_with_checkpoints_followed_equal_a_rebuild(tmp_path: Path,
                                                                    db: Path) -> None:
    """Entries handed in (stored bytes, odd chunks, some sent twice) while the ledger is written,
    with `follow_checkpoints` between: the same tables, checkpoints included, as one rebuild;
    a checkpoint whose entries are not projected yet waits for them."""
    ledger_dir = tmp_path / "ledger"
    source = LedgerDirectory(ledger_dir)
    sent = dict.fromkeys(range(PARTITIONS), 0)
    appended = 0
    with Projector(ledger_dir, db) as projector:
        for chunk, more in ((7, 101), (1, 5), (13, 77), (64, 40)):
            with Ledger.open(ledger_dir, signer=SIGNER, partitions=PARTITIONS,
                             checkpoint_every=9, checkpoint_interval_s=3600) as ledger:
                for i, event in enumerate(busy_events(appended, more)):
                    ledger.append((i * 7) % PARTITIONS, event)
                appended += more
                for p in range(PARTITIONS):
                    held = [HandedOver(p, i, h, json.loads(body), body)
                            for i, h, body in source.raw_entries(p, 0)]
                    # the last chunk's entries are held back: their checkpoints must wait
                    for start in range(max(sent[p] - 3, 0), len(held) - chunk, chunk):
                        projector.project_entries(held[start:start + chunk])
                        sent[p] = start + chunk
                    projector.follow_checkpoints()
                covered = projector.con.execute(
                    "SELECT count(*) FROM checkpoints c JOIN projection_state s USING "
                    "(partition) WHERE c.size > s.next_index").fetchone()
                assert covered == (0,)
        projector.catch_up()  # the held-back tails, and the checkpoints written on close
        projector.follow_checkpoints()
    rebuild(ledger_dir, tmp_path / "rebuilt.duckdb")
    incremental = snapshot(db)
    assert [(p, size, note) for p, size, *_, note, _ in incremental["checkpoints"]] == \
        stored_checkpoints(ledger_dir)
    assert snapshot(tmp_path / "rebuilt.duckdb") == incremental


def test_a_gap_in_entries_handed_in_is_refused(ledger_dir: Path, db: Path) -> None:
    entries = list(iter_entries(ledger_dir, 0))
    with Projector(ledger_dir, db) as projector:
        with pytest.raises(ProjectionError) as refused:
            projector.project_entries([entries[0], entries[2]])
        assert refused.value.code == "projections.gap"
        assert projector.next_indexes() == {0: 1}  # what came before the gap is committed
        projector.catch_up()
        assert count(projector.con, "SELECT count(*) FROM events") == ledger_size(ledger_dir)


def test_checkpoints_are_the_ledgers_signed_notes(
        projected_once: tuple[Any, duckdb.DuckDBPyConnection, Path]) -> None:
    _, con, ledger_dir = projected_once
    rows = con.execute(
        "SELECT c.partition, c.size, c.root_hash, c.origin, c.key_name, c.key_id, c.signature,"
        " c.key_ids, c.note, c.last_entry_at = e.occurred_at FROM checkpoints c "
        "JOIN events e ON e.partition = c.partition AND e.ledger_index = c.size - 1 "
        "ORDER BY c.partition, c.size").fetchall()
    assert [(p, size, note) for p, size, *_, note, _ in rows] == stored_checkpoints(ledger_dir)
    for p, size, root, origin, name, key_id, signature, key_ids, note, timed in rows:
        checkpoint, signers = Checkpoint.verify(note, [SIGNER.verifier])
        assert (checkpoint.origin, checkpoint.size, checkpoint.root.hex()) == (origin, size, root)
        assert (origin, name, key_id, key_ids) == (f"worker-certification/p{p}", "test",
                                                    SIGNER.key_id_hex, [SIGNER.key_id_hex])
        assert base64.b64decode(signature) and signers == [SIGNER.verifier] and timed


def test_no_ledger_yet_means_nothing_to_do(tmp_path: Path, db: Path) -> None:
    assert project(tmp_path / "absent", db).entries == 0


# ---- bad input never stops the projector ----------------------------------------------------

# event id -> (type, payload, typed table it must stay out of, words of its note)
BAD: dict[str, tuple[str, Any, str | None, str]] = {
    "required field missing": ("task.submitted", {"master_id": "m"}, "tasks",
                               "missing or unreadable: task_id"),
    "required field of the wrong kind": ("certification.decided",
                                         {**decided("t"), "level": "high"}, "decisions",
                                         "missing or unreadable: level"),
    "payload not an object": ("permit.issued", ["not", "an", "object"], "permit_transitions",
                              "permit_id, to_state"),
    "payload null": ("review.post_execution", None, "reviews", "not projected into reviews"),
    "unknown type": ("quantum.entangled", {"x": 1}, None, "unknown, kept in events only"),
    "number too large": ("review.post_execution",
                         {"task_id": "t", "assigned_level": 1e300, "appropriate_level": 1,
                          "reviewer": "r"}, "reviews", "assigned_level"),
}


@pytest.fixture(scope="module", params=[True, False], ids=["stored bytes", "parsed entries"])
def projected_bad(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Any, duckdb.DuckDBPyConnection]]:
    """A ledger of malformed payloads between good ones, projected once per reading path."""
    directory = tmp_path_factory.mktemp("bad")
    events = [envelope("task.submitted", {"task_id": "ok-1", "task": {}}, event_id="good-1")]
    events += [envelope(t, payload, event_id=name) for name, (t, payload, *_) in BAD.items()]
    events += [envelope("task.submitted", {"task_id": "ok-2", "task": {}}, event_id="good-2")]
    with new_ledger(directory / "ledger") as ledger:
        for event in events:
            ledger.append(0, event)
    with Projector(directory / "ledger", directory / "db.duckdb", raw=request.param) as p:
        stats = p.catch_up()
        yield stats, p.con


def test_malformed_payloads_do_not_stop_the_projector(
        projected_bad: tuple[Any, duckdb.DuckDBPyConnection]) -> None:
    stats, con = projected_bad
    good = con.execute("SELECT task_id FROM tasks ORDER BY task_id").fetchall()
    assert (stats.inserted, stats.noted) == (len(BAD) + 2 + PARTITIONS, len(BAD))
    assert good == [("ok-1",), ("ok-2",)]


@pytest.mark.parametrize("case", list(BAD))
def test_a_malformed_payload_lands_in_events_with_a_note(
        projected_bad: tuple[Any, duckdb.DuckDBPyConnection], case: str) -> None:
    _, con = projected_bad
    _, _, table, words = BAD[case]
    note = con.execute("SELECT note FROM events WHERE event_id = ?", [case]).fetchall()
    typed = count(con, f"SELECT count(*) FROM {table} WHERE event_id = ?"
                  .replace("?", "'" + case + "'")) if table else 0
    assert len(note) == 1 and words in note[0][0]
    assert typed == 0


@dataclass(frozen=True)
class FakeEntry:
    partition: int
    index: int
    leaf_hash: bytes
    event: Any


# What a stream could hand the projector that the ledger itself would never store.
ODD_ENVELOPES: dict[str, tuple[Any, str]] = {
    "not an object": ("a string, not an object", "envelope: not a JSON object"),
    "no event id": ({"type": "task.submitted", "occurred_at": "2025-03-01T09:00:00Z",
                     "payload": {"task_id": "t"}}, "envelope.event_id: missing"),
    "unreadable time": ({"event_id": "e1", "type": "task.submitted", "occurred_at": "yesterday",
                         "payload": {"task_id": "t"}}, "envelope.occurred_at"),
    "wrong kinds": ({"event_id": 7, "type": ["x"], "occurred_at": "2025-03-01T09:00:00Z",
                     "payload": {}}, "envelope.event_id: not a string"),
    "NaN in payload": ({"event_id": "e2", "type": "metric.sample",
                        "occurred_at": "2025-03-01T09:00:00Z",
                        "payload": {"key": "k", "metric": "m", "value": float("nan")}},
                       "payload: not encodable"),
    "lone surrogate": ({"event_id": "e3\ud800", "type": "task.submitted",
                        "occurred_at": "2025-03-01T09:00:00Z", "payload": {"task_id": "t"}},
                       "not valid UTF-8"),
}


@pytest.fixture(scope="module")
def projected_odd(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Any, list[str | None]]]:
    directory = tmp_path_factory.mktemp("odd")
    entries = [FakeEntry(0, i, bytes([i]) * 32, event)
               for i, (event, _) in enumerate(ODD_ENVELOPES.values())]
    entries.append(FakeEntry(0, len(entries), b"\xff" * 32,
                             envelope("task.submitted", {"task_id": "ok", "task": {}})))
    with Projector(directory / "absent", directory / "db.duckdb") as projector:
        stats = projector.project_entries(entries)
        notes = [n for (n,) in projector.con.execute(
            "SELECT note FROM events ORDER BY ledger_index").fetchall()]
    yield stats, notes


def test_odd_envelopes_do_not_stop_the_projector(
        projected_odd: tuple[Any, list[str | None]]) -> None:
    stats, notes = projected_odd
    assert stats.inserted == len(ODD_ENVELOPES) + 1
    assert notes[-1] is None


@pytest.mark.parametrize("case", list(ODD_ENVELOPES))
def test_an_odd_envelope_from_a_stream_is_kept_with_a_note(
        projected_odd: tuple[Any, list[str | None]], case: str) -> None:
    _, notes = projected_odd
    position = list(ODD_ENVELOPES).index(case)
    assert ODD_ENVELOPES[case][1] in (notes[position] or "")


class BytesSource:
    """Stored bytes as a broken ledger copy could hand them over: not JSON at all."""

    def partitions(self) -> list[int]:
        return [0]

    def entries(self, partition: int, start: int) -> Iterator[Any]:
        raise AssertionError("the projector reads stored bytes here")

    def raw_entries(self, partition: int, start: int) -> Iterator[tuple[int, bytes, bytes]]:
        good = json.dumps(envelope("task.submitted", {"task_id": "ok", "task": {}})).encode()
        stored = [b'{"event_id": "torn", "type": "task.sub', good, b"\xff\xfe not utf-8"]
        for index, body in enumerate(stored[start:], start):
            yield index, bytes([index]) * 32, body


def test_stored_bytes_duckdb_refuses_are_kept_entry_by_entry(tmp_path: Path, db: Path) -> None:
    with Projector(tmp_path / "absent", db, source=BytesSource()) as projector:
        stats = projector.catch_up()
        rows = projector.con.execute("SELECT ledger_index, type, note FROM events "
                                     "ORDER BY ledger_index").fetchall()
        tasks = count(projector.con, "SELECT count(*) FROM tasks")
    assert (stats.inserted, stats.noted) == (3, 2)
    assert [(i, t) for i, t, _ in rows] == [(0, None), (1, "task.submitted"), (2, None)]
    assert "not a JSON object" in rows[0][2] and rows[1][2] is None
    assert tasks == 1


# ---- crash safety ---------------------------------------------------------------------------


class Crash(Exception):
    pass


class CrashingSource(LedgerDirectory):
    """The real ledger, but the reader dies once it has read `limit` entries."""

    def __init__(self, directory: Path, limit: int) -> None:
        super().__init__(directory)
        self.limit = limit

    def blocks(self, partition: int, start: int, max_entries: int) -> Iterator[Any]:
        for block in super().blocks(partition, start, max_entries):
            if len(block) > self.limit:
                raise Crash
            self.limit -= len(block)
            yield block


def test_a_crash_leaves_whole_batches_and_catch_up_resumes(tmp_path: Path, db: Path) -> None:
    ledger_dir = tmp_path / "ledger"
    with new_ledger(ledger_dir) as ledger:
        append(ledger, [envelope("task.submitted", {"task_id": f"t{i}", "task": {}},
                                 event_id=f"task-{i}") for i in range(20)])
    with Projector(ledger_dir, db, batch_size=5, source=CrashingSource(ledger_dir, 13)) as p:
        with pytest.raises(Crash):
            p.catch_up()
        committed = count(p.con, "SELECT count(*) FROM events")
        positions = count(p.con, "SELECT sum(next_index) FROM projection_state")
    assert committed == positions == 10  # two whole batches of 5, not 13
    project(ledger_dir, db)
    fresh = tmp_path / "fresh.duckdb"
    project(ledger_dir, fresh)
    assert snapshot(db) == snapshot(fresh)


def test_the_reader_thread_hands_over_in_order_then_its_error() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise Crash

    got: list[int] = []
    with pytest.raises(Crash):
        got.extend(prefetched(items()))  # keeps what came before the error
    assert got == [1, 2]


def test_the_reader_thread_stays_one_item_ahead_and_stops_with_the_consumer() -> None:
    made: list[int] = []

    def items() -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    for item in prefetched(items()):
        assert len(made) <= item + 2  # the item in hand and at most the next one
        if item == 3:
            break
    assert made == [0, 1, 2, 3, 4] or made == [0, 1, 2, 3]


def test_a_failing_statement_rolls_the_whole_batch_back(ledger_dir: Path, db: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import projections.projector as module

    real = module._project

    def failing(con: duckdb.DuckDBPyConnection, projection: Any) -> None:
        real(con, projection)
        raise Crash

    monkeypatch.setattr(module, "_project", failing)
    with Projector(ledger_dir, db) as projector:
        with pytest.raises(Crash):
            projector.catch_up()
        assert {t: len(table_rows(projector.con, t)) for t in TABLES
                if t != "projection_meta"} == dict.fromkeys(
            [t for t in TABLES if t != "projection_meta"], 0)


# ---- readers, schema, retention -------------------------------------------------------------


def test_readers_elsewhere_read_a_published_snapshot(tmp_path: Path, ledger_dir: Path,
                                                     db: Path) -> None:
    with Projector(ledger_dir, db) as projector:
        projector.catch_up()
        with projector.cursor() as cursor:
            live = count(cursor, "SELECT count(*) FROM events")
        target = projector.publish_snapshot(tmp_path / "snapshot.duckdb")
        with connect_readonly(target) as con:
            copied = count(con, "SELECT count(*) FROM events")
    assert live == copied == len(EVENT_TYPES) + PARTITIONS


def test_a_file_of_another_schema_version_asks_for_a_rebuild(tmp_path: Path,
                                                            db: Path) -> None:
    Projector(tmp_path / "absent", db).close()
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE projection_meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(ProjectionError) as caught:
        Projector(tmp_path / "absent", db)
    assert caught.value.code == "projections.schema_version"


NOW = T0 + timedelta(days=10_000)

# task -> (level, retention_days, age in days at NOW, kept)
RETENTION: dict[str, tuple[int, int, int, bool]] = {
    "L0 30 days: gone after 31": (0, 30, 31, False),
    "L0 30 days: kept at 29": (0, 30, 29, True),
    "L4 7 years: kept after 400 days": (4, 2555, 400, True),
    "legal hold: kept for ever": (3, -1, 9000, True),
}


def task_events(task: str, level: int, days: int, at: datetime) -> list[dict[str, Any]]:
    permit = f"permit-{task}"
    return [
        envelope("task.submitted", {"task_id": task, "task": {}}, event_id=f"{task}/task",
                 at=at),
        envelope("certification.decided", decided(task, level, days),
                 event_id=f"{task}/decision", at=at),
        envelope("permit.requested", {**EXAMPLES["permit.requested"][0], "task_id": task,
                                      "permit_id": permit}, event_id=f"{task}/request", at=at),
        envelope("approval.signed", {**EXAMPLES["approval.signed"][0], "permit_id": permit},
                 event_id=f"{task}/approval", at=at),
    ]


@pytest.fixture(scope="module")
def retained(tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[dict[str, int], duckdb.DuckDBPyConnection, Path]]:
    directory = tmp_path_factory.mktemp("retention")
    events = [e for task, (level, days, age, _) in RETENTION.items()
              for e in task_events(task, level, days, NOW - timedelta(days=age))]
    events.append(envelope("ledger.key_added", EXAMPLES["ledger.key_added"][0], event_id="key",
                           at=NOW - timedelta(days=9000)))
    with new_ledger(directory / "ledger") as ledger:
        append(ledger, events)
    project(directory / "ledger", directory / "db.duckdb")
    deleted = apply_retention(directory / "db.duckdb", NOW)
    with connect_readonly(directory / "db.duckdb") as con:
        yield deleted, con, directory / "ledger"


@pytest.mark.parametrize("task", list(RETENTION))
def test_retention_follows_the_task_decision(
        retained: tuple[dict[str, int], duckdb.DuckDBPyConnection, Path], task: str) -> None:
    _, con, _ = retained
    kept = RETENTION[task][3]
    remaining = {table: count(con, f"SELECT count(*) FROM {table} WHERE event_id LIKE "
                                   f"'{task}/%'")
                 for table in ("events", "tasks", "decisions", "factors", "permit_requests",
                               "permit_transitions", "approvals")}
    n = 1 if kept else 0
    assert remaining == {"events": 4 * n, "tasks": n, "decisions": n, "factors": 2 * n,
                         "permit_requests": n, "permit_transitions": n, "approvals": n}


def test_retention_keeps_keys_and_never_edits_the_ledger(
        retained: tuple[dict[str, int], duckdb.DuckDBPyConnection, Path]) -> None:
    deleted, con, ledger = retained
    assert count(con, "SELECT count(*) FROM keys") == 1 + PARTITIONS
    assert deleted["events"] == 4  # one task's four events
    assert ledger_size(ledger) == 4 * len(RETENTION) + 1 + PARTITIONS


def test_rebuild_with_now_applies_retention(tmp_path: Path, ledger_dir: Path, db: Path) -> None:
    rebuild(ledger_dir, db, now=T0 + timedelta(days=3000))
    with connect_readonly(db) as con:
        left = {t for (t,) in con.execute("SELECT DISTINCT type FROM events").fetchall()}
    assert left == {"ledger.key_added", "ledger.key_rotated", "approver.registered",
                    "subject.erased", "ledger.tail_truncated"}


def vacuum_tasks(con: duckdb.DuckDBPyConnection) -> int:
    return count(con, "SELECT current_setting('max_vacuum_tasks')")


def test_the_writer_never_repacks_row_groups_not_even_after_retention(
        tmp_path: Path, ledger_dir: Path, db: Path) -> None:
    # Re-packing at every commit rewrote the partly filled row groups of the batches before:
    # commits grew with the table. Retention (the only deletes) reclaims space with vacuum on.
    with Projector(ledger_dir, db) as projector:
        projector.catch_up()
        after_catch_up = vacuum_tasks(projector.con)
        deleted = projector.apply_retention(T0 + timedelta(days=3000))
        after_retention = vacuum_tasks(projector.con)
    assert (after_catch_up, after_retention) == (0, 0)
    assert deleted["events"] > 0


def test_the_payload_column_is_json(projected: duckdb.DuckDBPyConnection) -> None:
    row = projected.execute("SELECT payload->>'$.task_id', typeof(payload) FROM events "
                            "WHERE type = 'certification.decided'").fetchone()
    assert row == ("task-1", "JSON")
