"""Projection catch-up rate (ledger entries/s) against baselines measured in the same run.

The ledger: N realistic entries (task.submitted + certification.decided from the real sample
tasks and checker, about 5% permit/approval/operation/metric events), spread over partitions.

Measured, each on a fresh DuckDB file unless said otherwise:

  read ledger       iterate the stored entries one by one (ledger.reader.iter_raw, hashes
                    checked): the floor of reading entry by entry
  scan ledger       the same entries in bulk (ledger.scan: big reads, hashes checked), what
                    catch-up reads with
  parse ledger      iter_entries, events parsed by json.loads (what the parsed path starts from)
  bare insert       the same (partition, index, hash, event bytes) rows, already in an in-memory
                    Arrow table, `CREATE TABLE AS SELECT` into DuckDB (default compression): the
                    baseline, unchanged since the first version of this bench
  bare zstd         the same into a table whose event column is zstd-compressed, as `events`
  bare envelope     the events as text, reading the envelope out of the JSON (events table only)
  catch-up          Projector.catch_up from an empty file: every table, checkpoints,
                    idempotency, state (hashes checked, as by default)
  catch-up no hash  the same with check_hashes=False
  catch-up parsed   the same through iter_entries + Python JSON encoding (raw=False)
  incremental       catch_up after 10% more entries were appended to a projected file
  idle              catch_up when nothing was appended, first in a new Projector (which
                    scans the partitions once), then again in the same one (ms)

Each catch-up also reports its CPU seconds (all threads of this process): on a shared machine
the wall clock says how busy the neighbours were, the CPU time what the work costs.

    .venv/bin/python -m bench.projections_bench --entries 200000 [--partitions 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ledger import Ledger, SigningKey, iter_entries, partition_for
from ledger.layout import partition_dir
from ledger.reader import iter_raw
from ledger.scan import scan
from projections import DEFAULT_BATCH_SIZE, Projector
from projections.batch import RAW_STAGE_SQL

TARGET = 200_000  # ledger entries/s for catch-up (issue)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SIGNER = SigningKey.generate("bench")


# ---- a realistic ledger ---------------------------------------------------------------------


def real_pairs(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(task.submitted, certification.decided) records made by the real handlers."""
    from rules.policy import default_policy
    from streams.handlers import handle_inbound
    from streams.sample import sample_records

    policy = default_policy()
    pairs = []
    for i, raw in enumerate(sample_records(count * 2)):
        outcome = handle_inbound(raw, f"bench:{i}", policy, T0)
        if outcome.decision is not None and len(outcome.events) == 2:
            submitted, decided = (e.to_record() for e in outcome.events)
            pairs.append((submitted, decided))
            if len(pairs) == count:
                break
    return pairs


def synthetic_pair(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fallback when the checker is unavailable: the same shape, made up."""
    task_id = f"task-{i}"
    submitted = {"event_id": f"task:{i}", "type": "task.submitted", "schema_version": 1,
                 "occurred_at": "", "producer": "master", "subject": task_id,
                 "correlation_id": None, "causation_id": None,
                 "payload": {"task_id": task_id, "master_id": "m-1", "task": {
                     "task": "Run the nightly migration of the users table in production",
                     "environment": "production", "data_types": ["pii"],
                     "operations": ["database_migration"], "services": ["users-api"]}}}
    decided = {**submitted, "event_id": f"task:{i}:decision", "type": "certification.decided",
               "producer": "certifier", "causation_id": f"task:{i}", "payload": {
                   "task_id": task_id, "worker_type": "union", "level": 3, "score": 33,
                   "score_level": 3, "risk_level": "high",
                   "factors": [{"factor": f, "points": 7, "value": "production",
                                "rule": f"scoring.{f}.production",
                                "evidence": ["environment: production"]}
                               for f in ("environment", "data_sensitivity", "operation_risk",
                                         "impact_scope", "reversibility")],
                   "minimums": [{"rule": "minimum.data.pii", "level": 3, "reason": "PII",
                                 "evidence": ["data_types: pii"]}],
                   "hard_blocks": [], "approvals_required": 2,
                   "approver_roles": ["senior_engineer", "security_lead"],
                   "approval_time_limit_hours": 24.0, "change_advisory_board": False,
                   "required_artefacts": ["rollback_plan", "test_results"],
                   "audit_fields": ["operation_type", "timestamp", "worker_id", "approver_id"],
                   "retention_days": 365, "retention_class": "security",
                   "compliance_frameworks": ["SOC2"], "environment": "production",
                   "environment_confidence": 0.95, "uncertainties": [],
                   "policy_version": "bench", "policy_sha256": "0" * 64}}
    return submitted, decided


def templates(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    try:
        pairs = real_pairs(count)
    except Exception as error:  # noqa: BLE001 - the bench must run while the shell changes
        print(f"(real checker unavailable: {error!r}; synthetic decisions)")
        pairs = []
    return pairs or [synthetic_pair(i) for i in range(count)]


def other_events(i: int, task_id: str, at: str) -> list[dict[str, Any]]:
    """The permit traffic that follows some decisions: request, approval, move, operation."""
    permit = f"permit-{i}"
    base = {"schema_version": 1, "occurred_at": at, "producer": "permits", "subject": task_id,
            "correlation_id": task_id, "causation_id": None}
    return [
        {**base, "event_id": f"{permit}:req", "type": "permit.requested", "payload": {
            "permit_id": permit, "permit_type": "standard", "task_id": task_id,
            "decision_event_id": f"{task_id}:decision", "level": 3, "requested_by": "m-1",
            "worker_id": "w-1", "scope": {"operations": ["database_migration"],
                                          "environment": "production",
                                          "not_before": at, "not_after": at},
            "justification": "nightly", "request_sha256": "1" * 64}},
        {**base, "event_id": f"{permit}:appr", "type": "approval.signed", "payload": {
            "permit_id": permit, "request_sha256": "1" * 64, "decision": "approve",
            "approver_id": "alice", "approver_role": "security_lead", "decided_at": at,
            "key_id": "k1", "signature": "c2ln" * 16}},
        {**base, "event_id": f"{permit}:issued", "type": "permit.issued", "payload": {
            "permit_id": permit, "from_state": "approved", "to_state": "issued"}},
        {**base, "event_id": f"{permit}:op", "type": "operation.authorized", "payload": {
            "worker_id": "w-1", "permit_id": permit, "allowed": True,
            "operation": {"operation_type": "database_migration"},
            "reason_code": "allow.in_scope", "message": "in scope"}},
    ]


def events(count: int, *, first: int = 0, seed: int = 7) -> Iterator[dict[str, Any]]:
    """`count` events: pairs of submitted + decided, and every ~40th pair its permit traffic."""
    rng = random.Random(seed + first)
    pairs = templates(min(2_000, max(1, count // 2)))
    made, i = 0, first
    while made < count:
        submitted, decided = pairs[i % len(pairs)]
        at = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        task_id = f"{submitted['payload']['task_id']}-{i}"
        sid = f"task:{uuid.UUID(int=rng.getrandbits(128))}"
        batch = [
            {**submitted, "event_id": sid, "occurred_at": at, "subject": task_id,
             "payload": {**submitted["payload"], "task_id": task_id}},
            {**decided, "event_id": f"{sid}:decision", "occurred_at": at, "subject": task_id,
             "causation_id": sid, "correlation_id": sid,
             "payload": {**decided["payload"], "task_id": task_id}},
        ]
        if i % 40 == 0:
            batch += other_events(i, task_id, at)
        for event in batch[: count - made]:
            yield event
        made += min(len(batch), count - made)
        i += 1


def write_ledger(directory: Path, count: int, partitions: int, *, first: int = 0) -> None:
    with Ledger.open(directory, signer=SIGNER, partitions=partitions) as ledger:
        per: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
        for event in events(count, first=first):  # by subject, as the runner does
            per[partition_for(event["subject"], partitions)].append(event)
        for p, chunk in enumerate(per):
            ledger.append_many(p, chunk)


# ---- measurements ---------------------------------------------------------------------------


def timed(run: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    n = run()
    return n, time.perf_counter() - started


def read_ledger(directory: Path, partitions: int) -> int:
    return sum(1 for p in range(partitions)
               for _ in iter_raw(partition_dir(directory, p), p, 0))


def scan_ledger(directory: Path, partitions: int) -> int:
    return sum(len(block) for p in range(partitions)
               for block in scan(partition_dir(directory, p), p, 0))


def parse_ledger(directory: Path, partitions: int) -> int:
    return sum(1 for p in range(partitions) for _ in iter_entries(directory, p))


def arrow_rows(directory: Path, partitions: int) -> pa.Table:
    rows = [(p, i, h, body) for p in range(partitions)
            for i, h, _, _, body in iter_raw(partition_dir(directory, p), p, 0)]
    columns = list(zip(*rows, strict=True))
    return pa.table({"partition": pa.array(columns[0], pa.int32()),
                     "ledger_index": pa.array(columns[1], pa.int64()),
                     "leaf_hash": pa.array(columns[2], pa.binary()),
                     "doc": pa.array(columns[3], pa.binary())})


def bare_insert(table: pa.Table, db: Path) -> int:
    with duckdb.connect(str(db)) as con:
        con.register("_raw", table)
        con.execute("CREATE TABLE events AS SELECT * FROM _raw")
        con.execute("CHECKPOINT")
    return table.num_rows


def bare_zstd(table: pa.Table, db: Path) -> int:
    with duckdb.connect(str(db)) as con:
        con.register("_raw", table)
        con.execute("CREATE TABLE events (partition INTEGER, ledger_index BIGINT, "
                    "leaf_hash BLOB, doc BLOB USING COMPRESSION 'zstd')")
        con.execute("INSERT INTO events SELECT * FROM _raw")
        con.execute("CHECKPOINT")
    return table.num_rows


def bare_envelope(table: pa.Table, db: Path) -> int:
    table = table.set_column(3, "doc", table["doc"].cast(pa.large_string()))
    with duckdb.connect(str(db)) as con:
        con.register("_raw", table)
        con.execute(RAW_STAGE_SQL)
        con.execute("CREATE TABLE events AS SELECT * EXCLUDE (payload), payload::JSON AS "
                    "payload FROM _batch")
        con.execute("CHECKPOINT")
    return table.num_rows


CPU: dict[str, float] = {}


def catch_up(ledger: Path, db: Path, batch_size: int, *, raw: bool = True,
             check_hashes: bool = True, name: str = "") -> int:
    cpu = time.process_time()
    with Projector(ledger, db, batch_size=batch_size, raw=raw,
                   check_hashes=check_hashes) as projector:
        stats = projector.catch_up()
        projector.con.execute("CHECKPOINT")
    CPU[name] = time.process_time() - cpu
    return stats.entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--skip-parsed", action="store_true",
                        help="leave out the (slow) parsed-path catch-up")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="projections-bench-"))
    try:
        ledger = work / "ledger"
        started = time.perf_counter()
        write_ledger(ledger, args.entries, args.partitions)
        size = sum(f.stat().st_size for f in ledger.rglob("*.wcl"))
        total = read_ledger(ledger, args.partitions)
        print(f"ledger: {total:,} entries ({args.entries:,} + {total - args.entries} key events)"
              f" in {args.partitions} partitions, {size / 1e6:,.0f} MB, "
              f"written in {time.perf_counter() - started:.1f} s")

        loads = [os.getloadavg()[0]]
        results: dict[str, tuple[int, float]] = {}
        results["read ledger"] = timed(lambda: read_ledger(ledger, args.partitions))
        results["scan ledger"] = timed(lambda: scan_ledger(ledger, args.partitions))
        results["parse ledger"] = timed(lambda: parse_ledger(ledger, args.partitions))
        table = arrow_rows(ledger, args.partitions)
        results["bare insert"] = timed(lambda: bare_insert(table, work / "bare.duckdb"))
        results["bare zstd"] = timed(lambda: bare_zstd(table, work / "zstd.duckdb"))
        results["bare envelope"] = timed(lambda: bare_envelope(table, work / "env.duckdb"))
        del table
        loads.append(os.getloadavg()[0])
        db = work / "projections.duckdb"
        results["catch-up"] = timed(
            lambda: catch_up(ledger, db, args.batch_size, name="catch-up"))
        results["catch-up no hash"] = timed(
            lambda: catch_up(ledger, work / "nohash.duckdb", args.batch_size,
                             check_hashes=False, name="catch-up no hash"))
        if not args.skip_parsed:
            results["catch-up parsed"] = timed(
                lambda: catch_up(ledger, work / "parsed.duckdb", args.batch_size, raw=False,
                                 name="catch-up parsed"))
        loads.append(os.getloadavg()[0])
        more = max(1, args.entries // 10)
        write_ledger(ledger, more, args.partitions, first=args.entries)
        results["incremental"] = timed(
            lambda: catch_up(ledger, db, args.batch_size, name="incremental"))
        with Projector(ledger, db) as projector:
            opened = timed(lambda: projector.catch_up().entries)[1]  # a new process: scans
            idle = timed(lambda: projector.catch_up().entries)[1]  # the running projector

        baseline = results["bare insert"]
        rate = {name: n / s for name, (n, s) in results.items()}
        print(f"\n{'measure':<17} {'entries':>9} {'seconds':>8} {'entries/s':>11} "
              f"{'vs bare insert':>14} {'CPU s':>6} {'per CPU-s':>10}")
        for name, (n, s) in results.items():
            cpu = f"{CPU[name]:>6.2f} {n / CPU[name]:>10,.0f}" if name in CPU else ""
            print(f"{name:<17} {n:>9,} {s:>8.2f} {rate[name]:>11,.0f} "
                  f"{rate[name] / (baseline[0] / baseline[1]):>13.2f}x {cpu}")
        print(f"catch-up with nothing new: {opened * 1000:.0f} ms in a new process (the ledger "
              f"is scanned to its end), {idle * 1000:.1f} ms in the running projector")
        loads.append(os.getloadavg()[0])
        print(f"machine: {os.cpu_count()} CPUs, load average (1 min) "
              f"{' / '.join(f'{x:.1f}' for x in loads)} before the baselines / before the "
              "catch-ups / at the end")
        verdict = "meets" if rate["catch-up"] >= TARGET else "misses"
        print(f"\ncatch-up {rate['catch-up']:,.0f} entries/s {verdict} the target of "
              f"{TARGET:,}/s; it is {rate['catch-up'] / rate['read ledger']:.2f}x reading the "
              f"ledger alone and {rate['catch-up'] / rate['bare insert']:.2f}x a bare insert of "
              "the same rows")
        if args.json:
            print(json.dumps({name: {"entries": n, "seconds": round(s, 3),
                                     "per_second": round(n / s),
                                     **({"cpu_seconds": round(CPU[name], 3)}
                                        if name in CPU else {})}
                              for name, (n, s) in results.items()}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
