"""DuckDB's write-ahead log folded into the database file on a thread of its own, so that no
small commit of the worker's projector waits for it.

DuckDB checkpoints by itself when a commit leaves more than `checkpoint_threshold` (16 MB by
default) in the WAL, inside that commit: at 1,000 tasks/s that stalled one commit every few
seconds for 120-200 ms, and every entry in it or queued behind it (a few per cent of all: the
p99). Here the projector calls `after_commit()` after each commit it reported; once the WAL
holds `wal_bytes`, a CHECKPOINT runs on another connection to the same database while the
projector goes on committing (DuckDB lets appends commit during a checkpoint; they land in
the WAL that follows). DuckDB's own threshold is raised to `safety_bytes`, so it checkpoints
by itself only if these fall behind.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

# DuckDB's own default: as many checkpoints as before, none inside a commit (at 8 MB: twice as
# many, and no better p99 on a busy machine). One of 8-16 MB took 30-150 ms on another core.
WAL_BYTES = 16 << 20
SAFETY_BYTES = 64 << 20


class WalFlusher:
    def __init__(self, con: Any, db_path: Path, *, wal_bytes: int = WAL_BYTES,
                 safety_bytes: int = SAFETY_BYTES) -> None:
        self.con = con
        self.wal = db_path.with_name(db_path.name + ".wal")
        self.wal_bytes = wal_bytes
        self.checkpoints = 0
        self.failures = 0
        self._thread: threading.Thread | None = None
        con.execute(f"SET checkpoint_threshold = '{int(safety_bytes)}B'")

    def wal_size(self) -> int:
        try:
            return self.wal.stat().st_size
        except OSError:
            return 0

    def after_commit(self) -> bool:
        """Start a checkpoint if the WAL is due one and none is running. True if started."""
        if self._thread is not None and self._thread.is_alive():
            return False
        if self.wal_size() < self.wal_bytes:
            return False
        self._thread = threading.Thread(target=self._checkpoint, name="duckdb-checkpoint",
                                        daemon=True)
        self._thread.start()
        return True

    def _checkpoint(self) -> None:
        cursor = self.con.cursor()
        try:
            cursor.execute("CHECKPOINT")
            self.checkpoints += 1
        except Exception as error:  # noqa: BLE001 - DuckDB's own threshold is the fallback
            self.failures += 1
            print(f"certify projector: background checkpoint failed ({error}); DuckDB will "
                  "checkpoint at its own threshold", file=sys.stderr, flush=True)
        finally:
            cursor.close()

    def wait(self) -> None:
        """Until the running checkpoint (if any) is done: before the connection closes."""
        if self._thread is not None:
            self._thread.join()
