"""The worker's DuckDB projector, in a process of its own (the second core; no GIL shared with
the agents):

    python -m streams.worker_projector LEDGER_DIR DUCKDB [--interval-ms N] [--snapshot PATH ...]

The worker (the ledger's one writer) hands the child every entry it appended, on the child's
stdin, as frames `>HQ32sI` (partition, index, leaf hash, length) + the event's JSON; the child
projects them into DuckDB (whose one writer it is) at most once per interval, in one
transaction, without reading the ledger files (DuckDB's WAL checkpoints run on a thread of
their own, not inside those commits: streams/wal_flusher.py). The files are read
(`Projector.catch_up`) at start (what an earlier run appended), whenever the handed entries do
not continue a partition exactly where DuckDB stands (the ledger's own entries, e.g. a key
added, are not handed over), and at the end. The ledger's signed checkpoints (never handed
over) are read from the files as they are written, at most once per `--checkpoints-s` (only
the frames appended since the last read: `Projector.follow_checkpoints`), so the `checkpoints`
table stays current (the rows of a rebuild). Each commit is reported on stdout as one line,
`<unix time> <partition>:<next index> ...` (the rows are committed when the line is written).
End of stdin (the worker stopped, or died: the pipe closes with it) means: project what was
handed over, one last catch-up from the files, the snapshot if asked for, close, exit 0. The
projector skips what is below a partition's next index (entries re-sent after a restart), so
nothing is projected twice.

`ProjectorProcess` is the worker's side: start (and wait until the child has caught up with
what the ledger held, as the worker's first batch must not wait for DuckDB), hand over (never blocks the event loop: a
thread writes the pipe), progress, close (waits for the last catch-up).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from streams.wal_flusher import WalFlusher
from streams.worker_config import DEFAULT_PROJECTOR_INTERVAL_S

log = logging.getLogger("certify.worker")
FRAME = struct.Struct(">HQ32sI")  # partition, index, leaf hash, length of the event JSON
OPEN_TIMEOUT_S = 120.0  # a previous projector may still hold DuckDB's lock while it finishes
STOP_TIMEOUT_S = 600.0
READ_BYTES = 4 << 20
PIPE_BYTES = 1 << 20

Progress = Callable[[float, dict[int, int]], None]
Fresh = tuple[int, int, bytes, bytes]  # partition, index, leaf hash, event JSON


class ProjectorProcess:
    """The worker's handle on its projector child. `on_progress(unix_time, next_indexes)` is
    called (from a reader thread) after each commit of the child; `on_exit(code)` if the child
    ends while the worker did not ask it to (the worker treats that as fatal)."""

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
        self.commits = 0
        self.ready = threading.Event()  # the child caught up with the ledger files at start
        self._closing = False
        self.child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      close_fds=True)
        assert self.child.stdin is not None and self.child.stdout is not None
        _widen(self.child.stdin)
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, args=(self.child.stdin,),
                                        name="projector-hand-over", daemon=True)
        self._reader = threading.Thread(target=self._read, args=(self.child.stdout,),
                                        name="projector-progress", daemon=True)
        self._writer.start()
        self._reader.start()

    def hand_over(self, entries: Sequence[Fresh]) -> None:
        """Entries just appended, in order. Never blocks."""
        if entries:
            self._queue.put(b"".join(FRAME.pack(p, i, h, len(body)) + body
                                     for p, i, h, body in entries))

    def _write(self, stdin: IO[bytes]) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                break
            try:
                stdin.write(chunk)
                stdin.flush()
            except (BrokenPipeError, OSError):
                break  # the child is gone: _read reports it
        try:
            stdin.close()
        except OSError:
            pass

    def wait_ready(self, timeout_s: float = OPEN_TIMEOUT_S + STOP_TIMEOUT_S) -> bool:
        """Until the child has projected what the ledger held at start (False: it died)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.1):
            if self.child.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            if line == b"ready\n":
                self.ready.set()
                continue
            at, positions = parse_progress(line)
            if at is None:
                continue
            self.positions.update(positions)
            self.commits += 1
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
        self._queue.put(None)  # the writer closes stdin after what is queued
        self._writer.join(timeout_s)
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


def _widen(pipe: IO[bytes]) -> None:
    """A pipe of 1 MB (Linux; 64 kB by default), so that a batch of the worker (~130 kB at
    1,000 tasks/s) reaches the child in one piece and is committed whole (see `due`)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: a batch may come in pieces


def parse_progress(line: bytes) -> tuple[float | None, dict[int, int]]:
    parts = line.split()
    if not parts:
        return None, {}
    try:
        return float(parts[0]), {int(p): int(n) for p, n in (x.split(b":") for x in parts[1:])}
    except ValueError:
        return None, {}


# ---- the child ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandedEntry:
    """An entry as the worker handed it over (projections.EntryLike, with its JSON bytes)."""

    partition: int
    index: int
    leaf_hash: bytes
    event_json: bytes

    @property
    def event(self) -> Any:
        import json

        return json.loads(self.event_json)


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
        # small transactions: one DuckDB thread costs less CPU and time than several
        self.projector.con.execute(f"SET threads TO {int(args.duckdb_threads)}")
        self.wal = WalFlusher(self.projector.con, Path(args.duckdb))
        self.interval_s = max(0.0, args.interval_ms / 1000)
        self.snapshot = Path(args.snapshot) if args.snapshot else None
        self.snapshot_interval_s = args.snapshot_interval_s
        self._snapshot_at = float("-inf")
        self._stale = self.snapshot is not None
        self.out = sys.stdout.buffer
        self.next: dict[int, int] = {}
        self.from_files = 0
        self.checkpoints_s = max(0.01, args.checkpoints_s)
        self._checkpoints_at = float("-inf")

    def _report(self, next_index: dict[int, int]) -> None:
        self.next = dict(next_index)
        self._stale = self.snapshot is not None
        positions = " ".join(f"{p}:{n}" for p, n in sorted(next_index.items()))
        self.out.write(f"{time.time():.6f} {positions}\n".encode())
        self.out.flush()

    def catch_up(self) -> None:
        """From the ledger files."""
        self.from_files += 1
        stats = self.projector.catch_up()
        self.next = dict(self.projector.next_indexes())
        if stats.entries:
            self._report(self.next)

    def project(self, entries: list[HandedEntry]) -> None:
        expected = dict(self.next)
        for entry in entries:
            if entry.index > expected.get(entry.partition, 0):
                self.catch_up()  # a gap (the ledger's own entries): read the files
                entries = [e for e in entries if e.index >= self.next.get(e.partition, 0)]
                break
            expected[entry.partition] = max(expected.get(entry.partition, 0), entry.index + 1)
        if entries:
            stats = self.projector.project_entries(entries)
            self._report(stats.next_index)
        self._maybe_snapshot()

    def follow_checkpoints(self, *, force: bool = False) -> None:
        """The checkpoints signed since the last look (once per `checkpoints_s`)."""
        now = time.monotonic()
        if force or now - self._checkpoints_at >= self.checkpoints_s:
            self._checkpoints_at = now
            if self.projector.follow_checkpoints():
                self._stale = self.snapshot is not None

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
        self.catch_up()
        self.out.write(b"ready\n")
        self.out.flush()
        self.follow_checkpoints(force=True)  # the worker need not wait for this one
        buffer = bytearray()
        pending: list[HandedEntry] = []
        last = float("-inf")  # when the last commit started
        oldest = 0.0  # when the oldest pending entry came
        while True:
            now = time.monotonic()
            wait = self._checkpoints_at + self.checkpoints_s - now
            if pending:
                wait = min(wait, oldest + self.interval_s - now)
            ready, _, _ = select.select([fd], [], [], max(0.0, wait))
            came = False
            if ready:
                data = os.read(fd, READ_BYTES)
                if not data:
                    break  # the worker stopped (or died)
                buffer += data
                had = len(pending)
                _parse(buffer, pending)
                came = len(pending) > had
                if came and not had:
                    oldest = time.monotonic()
            now = time.monotonic()
            if pending and due(now, last, oldest, self.interval_s, came):
                last = now
                batch, pending = pending, []
                self.project(batch)
                self.wal.after_commit()  # DuckDB's checkpoint, on another thread
            self.follow_checkpoints()
            self._maybe_snapshot()
        if pending:
            self.project(pending)
        self.catch_up()
        self.follow_checkpoints(force=True)
        self._maybe_snapshot(force=True)
        self.wal.wait()
        self.projector.close()


def due(now: float, last: float, oldest: float, interval: float, came: bool) -> bool:
    """Commit now? When a batch of the worker just came and the last commit started at least
    `interval` ago, or when the oldest pending entry has waited `interval`. Commits follow
    the worker's batches (one every ~25-30 ms at the default 20 ms batch window): with an
    interval between one and two batch gaps (streams.worker_config), every second batch is
    committed as it comes, so an entry waits one batch gap at most (a clock of 100 ms instead
    made entries wait 0-100 ms for the same number of commits)."""
    return (came and now >= last + interval) or now >= oldest + interval


def _parse(buffer: bytearray, into: list[HandedEntry]) -> None:
    """Whole frames off the front of `buffer` (a torn frame waits for its rest)."""
    at, size, head = 0, len(buffer), FRAME.size
    while size - at >= head:
        partition, index, leaf_hash, length = FRAME.unpack_from(buffer, at)
        if size - at - head < length:
            break
        start = at + head
        into.append(HandedEntry(partition, index, leaf_hash, bytes(buffer[start:start + length])))
        at = start + length
    del buffer[:at]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.worker_projector",
                                     description="the worker's DuckDB projector (a child)")
    parser.add_argument("ledger_dir")
    parser.add_argument("duckdb")
    parser.add_argument("--interval-ms", type=float, default=DEFAULT_PROJECTOR_INTERVAL_S * 1000,
                        help="at most one commit per interval as batches come; an entry "
                             "waits at most this long (ms)")
    parser.add_argument("--duckdb-threads", type=int, default=1)
    parser.add_argument("--snapshot")
    parser.add_argument("--snapshot-interval-s", type=float, default=60.0)
    parser.add_argument("--checkpoints-s", type=float, default=1.0,
                        help="how often to read the checkpoints signed since (seconds)")
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
