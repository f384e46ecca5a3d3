"""The worker's DuckDB projector, in a process of its own (the second core; no GIL shared with
the agents):

    python -m streams.worker_projector LEDGER_DIR DUCKDB [--interval-ms N] [--snapshot PATH ...]

The child reads what the worker appended from the ledger files (readers may run beside the
ledger's one writer; the reader stops at the live edge) and projects it into DuckDB, whose one
writer it is. It projects at start (what an earlier run appended), then whenever the worker
pokes it (one byte on stdin after each batch it appended), at most once per interval, and at
least once a second. Each catch-up that projected something is reported on stdout as one line,
`<unix time> <partition>:<next index> ...` (the rows are committed when the line is written).
End of stdin (the worker stopped, or died: the pipe closes with it) means: one last catch-up, the
snapshot if asked for, close, exit 0. DuckDB upserts by event id, so nothing is projected twice.

`ProjectorProcess` is the worker's side: start, poke (never blocks), progress, close (waits for
the last catch-up).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("certify.worker")
IDLE_CATCH_UP_S = 1.0  # with no poke, still catch up this often (ledger-internal entries)
OPEN_TIMEOUT_S = 120.0  # a previous projector may still hold DuckDB's lock while it finishes
STOP_TIMEOUT_S = 600.0

Progress = Callable[[float, dict[int, int]], None]


class ProjectorProcess:
    """The worker's handle on its projector child. `on_progress(unix_time, next_indexes)` is
    called (from a reader thread) after each catch-up the child committed; `on_exit(code)` if
    the child ends while the worker did not ask it to (the worker treats that as fatal)."""

    def __init__(self, ledger_dir: Path, db_path: Path, interval_s: float, *,
                 snapshot: Path | None = None, snapshot_interval_s: float = 60.0,
                 on_progress: Progress | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
        command = [sys.executable, "-m", "streams.worker_projector", str(ledger_dir),
                   str(db_path), "--interval-ms", str(int(interval_s * 1000))]
        if snapshot is not None:
            command += ["--snapshot", str(snapshot), "--snapshot-interval-s",
                        str(snapshot_interval_s)]
        self.on_progress = on_progress
        self.on_exit = on_exit
        self.positions: dict[int, int] = {}
        self.catch_ups = 0
        self._closing = False
        self.child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      close_fds=True)
        assert self.child.stdin is not None and self.child.stdout is not None
        self._poke_fd = self.child.stdin.fileno()
        os.set_blocking(self._poke_fd, False)
        self._reader = threading.Thread(target=self._read, args=(self.child.stdout,),
                                        name="projector-progress", daemon=True)
        self._reader.start()

    def poke(self) -> None:
        """Something was appended. Never blocks: a full pipe means the child has work already."""
        try:
            os.write(self._poke_fd, b".")
        except (BlockingIOError, BrokenPipeError, OSError):
            pass

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            at, positions = parse_progress(line)
            if at is None:
                continue
            self.positions.update(positions)
            self.catch_ups += 1
            if self.on_progress is not None:
                self.on_progress(at, positions)
        code = self.child.wait()
        if not self._closing and self.on_exit is not None:
            self.on_exit(code)

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """After the worker stopped appending: the child projects what is left, publishes the
        snapshot, closes DuckDB. Returns its exit code."""
        if self._closing:
            return self.child.wait()
        self._closing = True
        try:
            assert self.child.stdin is not None
            self.child.stdin.close()
        except OSError:
            pass
        try:
            code = self.child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.error("certify worker: the projector did not stop within %.0fs; killing it",
                      timeout_s)
            self.child.kill()
            code = self.child.wait()
        self._reader.join(10)
        if code:
            log.error("certify worker: the projector exited with %d", code)
        return code


def parse_progress(line: bytes) -> tuple[float | None, dict[int, int]]:
    parts = line.split()
    if not parts:
        return None, {}
    try:
        return float(parts[0]), {int(p): int(n) for p, n in (x.split(b":") for x in parts[1:])}
    except ValueError:
        return None, {}


# ---- the child ----------------------------------------------------------------------------------


def _open(ledger_dir: Path, db_path: Path) -> Any:
    """The Projector, waiting while another process (a projector still finishing after its
    worker died) holds DuckDB's write lock."""
    import duckdb

    from projections import Projector

    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while True:
        try:
            return Projector(ledger_dir, db_path)
        except duckdb.IOException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


class _Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.projector = _open(Path(args.ledger_dir), Path(args.duckdb))
        self.interval_s = max(0.0, args.interval_ms / 1000)
        self.snapshot = Path(args.snapshot) if args.snapshot else None
        self.snapshot_interval_s = args.snapshot_interval_s
        self._snapshot_at = float("-inf")
        self._stale = self.snapshot is not None
        self.out = sys.stdout.buffer

    def catch_up(self) -> None:
        stats = self.projector.catch_up()
        if stats.entries:
            self._stale = self.snapshot is not None
            positions = " ".join(f"{p}:{n}" for p, n in sorted(stats.next_index.items()))
            self.out.write(f"{time.time():.6f} {positions}\n".encode())
            self.out.flush()
        self._maybe_snapshot()

    def _maybe_snapshot(self, *, force: bool = False) -> None:
        if not self._stale or self.snapshot is None:
            return
        now = time.monotonic()
        if force or now - self._snapshot_at >= self.snapshot_interval_s:
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            self.projector.publish_snapshot(self.snapshot)
            self._snapshot_at, self._stale = now, False

    def run(self) -> None:
        fd = sys.stdin.buffer.fileno()
        open_ = True
        while open_:
            started = time.monotonic()
            self.catch_up()
            # wait for a poke (or the idle period), then no sooner than the interval
            ready, _, _ = select.select([fd], [], [], IDLE_CATCH_UP_S)
            if ready and not os.read(fd, 65536):
                open_ = False  # the worker stopped (or died)
            rest = self.interval_s - (time.monotonic() - started)
            if open_ and rest > 0:
                time.sleep(rest)
        self.catch_up()
        self._maybe_snapshot(force=True)
        self.projector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.worker_projector",
                                     description="the worker's DuckDB projector (a child)")
    parser.add_argument("ledger_dir")
    parser.add_argument("duckdb")
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--snapshot")
    parser.add_argument("--snapshot-interval-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group: the worker stops, then closes our stdin, and we
    # finish; SIGTERM (a supervisor stopping us alone) ends us (DuckDB rolls back, and the next
    # projector catches up from the ledger).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _Child(args).run()
    except Exception as error:  # noqa: BLE001 - one line for the worker's log, then exit
        print(f"certify projector: fatal: {type(error).__name__}: {error}", file=sys.stderr,
              flush=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
