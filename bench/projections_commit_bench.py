"""Cost of one small incremental commit (`Projector.project_entries`), as the Kafka worker's
projector child makes them (every 100 ms, a few dozen entries, one DuckDB thread), against
how many rows `events` already holds.

For each size N: a fresh DuckDB file whose `events` holds N rows (made by SQL: random UUID
event ids, short payloads, spread over the partitions, `projection_state` exact), checkpointed
and reopened; then `--commits` commits of `--entries` realistic entries each (decisions, task
submissions, permit moves, metric samples, handed over as stored bytes), continuing each
partition where it stands. Reports the median and p90 CPU and wall milliseconds per commit.

    .venv/bin/python -m bench.projections_commit_bench [--sizes 0,100000,1000000]
        [--entries 50] [--commits 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from projections import Projector
from streams.worker_projector import HandedEntry as Handed  # what the worker hands over

PARTITIONS = 4


def fill(projector: Projector, rows: int) -> None:
    con = projector.con
    con.execute(f"""
        INSERT INTO events BY NAME
        SELECT uuid()::VARCHAR AS event_id, 'task.submitted' AS type, 1 AS schema_version,
               'bench' AS producer, 'task-' || i AS subject, uuid()::VARCHAR AS correlation_id,
               NULL AS causation_id,
               ('{{"task_id":"task-' || i || '","task":{{"description":"x"}}}}')::JSON AS payload,
               sha256(i::VARCHAR) AS leaf_hash, NULL AS note,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS occurred_at,
               (i % {PARTITIONS})::INTEGER AS partition, i // {PARTITIONS} AS ledger_index
        FROM range({rows}) t(i)""")
    per = {p: len(range(p, rows, PARTITIONS)) for p in range(PARTITIONS)}
    values = ", ".join(f"({p}, {n}, now())" for p, n in per.items())
    con.execute(f"INSERT INTO projection_state VALUES {values} ON CONFLICT (partition) DO "
                "UPDATE SET next_index = excluded.next_index")
    con.execute("CHECKPOINT")


def entries(start: dict[int, int], count: int, serial: int) -> list[Handed]:
    from tests.test_projections import busy_events

    out = []
    positions = dict(start)
    for i, event in enumerate(busy_events(serial, count)):
        p = i % PARTITIONS
        body = json.dumps(event, separators=(",", ":")).encode()
        out.append(Handed(p, positions.get(p, 0), bytes([i % 256]) * 32, body))
        positions[p] = positions.get(p, 0) + 1
    return out


def measure(rows: int, count: int, commits: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "p.duckdb"
        with Projector(Path(tmp) / "absent", db) as projector:
            fill(projector, rows)
        with Projector(Path(tmp) / "absent", db) as projector:
            projector.con.execute("SET threads TO 1")  # as the worker's projector child
            cpu, wall = [], []
            serial = 10 * rows + 1
            for n in range(commits + 3):
                batch = entries(projector.next_indexes(), count, serial)
                serial += count
                c0, w0 = time.process_time(), time.perf_counter()
                stats = projector.project_entries(batch)
                c1, w1 = time.process_time(), time.perf_counter()
                assert stats.inserted == count, stats
                if n >= 3:  # the first commits warm the caches
                    cpu.append((c1 - c0) * 1000)
                    wall.append((w1 - w0) * 1000)
            total = projector.con.execute("SELECT count(*) FROM events").fetchone()
            assert total is not None and total[0] == rows + count * (commits + 3)
    cpu.sort()
    wall.sort()
    return {"rows": rows, "entries": count, "commits": commits,
            "cpu_ms_median": statistics.median(cpu), "cpu_ms_p90": cpu[int(0.9 * len(cpu))],
            "wall_ms_median": statistics.median(wall), "wall_ms_p90": wall[int(0.9 * len(wall))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projections_commit_bench")
    parser.add_argument("--sizes", default="0,100000,1000000")
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for rows in (int(s) for s in args.sizes.split(",")):
        result = measure(rows, args.entries, args.commits)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{rows:>9,} rows, {args.entries} entries/commit: CPU median "
                  f"{result['cpu_ms_median']:.1f} ms (p90 {result['cpu_ms_p90']:.1f}), wall "
                  f"median {result['wall_ms_median']:.1f} ms (p90 {result['wall_ms_p90']:.1f})",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
