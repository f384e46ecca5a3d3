"""DuckDB's WAL checkpoint on a thread of its own (streams/wal_flusher.py): DuckDB no longer
checkpoints inside a small commit, the flusher does once the WAL is due, the rows stay."""

from __future__ import annotations

import duckdb

from streams.wal_flusher import WalFlusher


def commit_rows(con: duckdb.DuckDBPyConnection, first: int, count: int) -> None:
    con.execute(f"INSERT INTO t SELECT i, repeat('x', 200) FROM range({first}, "
                f"{first + count}) r(i)")


def test_duckdb_leaves_the_wal_to_the_flusher_which_checkpoints_once_it_is_due(tmp_path):
    db = tmp_path / "p.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t (i BIGINT, s VARCHAR)")
    flusher = WalFlusher(con, db, wal_bytes=256 << 10, safety_bytes=64 << 20)

    commit_rows(con, 0, 2_000)  # ~450 kB of WAL: past the flusher's 256 kB
    assert flusher.wal_size() >= 256 << 10  # DuckDB itself did not checkpoint it away
    assert flusher.after_commit() is True
    flusher.wait()
    assert flusher.checkpoints == 1 and flusher.failures == 0
    assert flusher.wal_size() < 256 << 10

    commit_rows(con, 2_000, 10)
    assert flusher.after_commit() is False  # not due yet
    con.close()
    assert duckdb.connect(str(db)).execute("SELECT count(*) FROM t").fetchone() == (2_010,)


def test_commits_go_on_while_the_flusher_checkpoints(tmp_path):
    db = tmp_path / "p.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE t (i BIGINT, s VARCHAR)")
    flusher = WalFlusher(con, db, wal_bytes=64 << 10)
    started = 0
    for n in range(40):
        commit_rows(con, n * 500, 500)
        started += flusher.after_commit()
    flusher.wait()
    assert started >= 2 and flusher.checkpoints == started and flusher.failures == 0
    con.close()
    assert duckdb.connect(str(db)).execute("SELECT count(*) FROM t").fetchone() == (20_000,)
