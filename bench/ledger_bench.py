"""Ledger benchmarks with a baseline measured in the same run.

    .venv/bin/python -m bench.ledger_bench [--entries N] [--big N] [--dir PATH]

baseline   : a bare loop that JSON-encodes each event (json.dumps, sorted keys), SHA-256-chains
             it to the previous hash and writes length + hash + bytes to a buffered file.
append     : Ledger.append, one event per call, default checkpoint cadence (1000 entries / 1 s,
             each checkpoint signed and fdatasync'ed), then close().
append_many: Ledger.append_many in batches of 1000, same cadence.
verify     : ledger.verify(..., trusted=[vkey]) over the `append_many` ledger, in a child
             process whose peak RSS is reported.
--big N    : also build an N-entry ledger (append_many) and verify it in a child process
             (the 10-million-entry memory check; takes minutes and ~650 bytes/entry of disk).
--verify D : only verify the existing ledger D (e.g. a kept --big one) in a child process.
--writer-memory N : in child processes, build an N-entry ledger with append_many and report
             the writer's RSS; then reopen it and report open time, RSS and peak, and the time
             of a duplicate just too old for the recent maps (found by streaming ids.txt).
Peak memory is the child's VmHWM (ru_maxrss would include the parent's, Linux keeps it across
exec).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

from ledger import Ledger, SigningKey, verify
from ledger.chain import RECENT_IDS

TEMPLATES = 256


def _templates() -> list[dict]:
    """Realistic envelopes of ~400-600 bytes of canonical JSON."""
    out = []
    types = [
        "task.certified",
        "permit.requested",
        "permit.approved",
        "operation.authorized",
        "rollback.triggered",
        "metric.threshold_crossed",
    ]
    for t in range(TEMPLATES):
        out.append(
            {
                "event_id": "",
                "type": types[t % len(types)],
                "schema_version": 1,
                "occurred_at": f"2026-11-26T10:{t % 60:02d}:{(t * 7) % 60:02d}.{t * 3917 % 1000000:06d}Z",
                "producer": f"streams.handlers@worker-{t % 8}",
                "subject": f"permit-{uuid.UUID(int=t * 7919 + 1)}",
                "correlation_id": str(uuid.UUID(int=t * 104729 + 3)),
                "causation_id": str(uuid.UUID(int=t * 1299709 + 5)) if t % 3 else None,
                "payload": {
                    "task_id": f"task-{t:05d}",
                    "level": t % 5,
                    "risk_score": (t * 13) % 50,
                    "environment": ["dev", "staging", "production"][t % 3],
                    "operation": ["db.migrate", "svc.restart", "config.write", "file.delete"][
                        t % 4
                    ],
                    "approvers": [f"user-{(t + k) % 17}@example.com" for k in range(t % 3 + 1)],
                    "reason": f"rule R-{t % 29} gave {t % 11} points; hard block none",
                    "scope": {
                        "hosts": [f"host-{t % 13}", f"host-{(t + 1) % 13}"],
                        "max_rows": 1000,
                    },
                },
            }
        )
    return out


def events(n: int, start: int = 0) -> Iterator[dict]:
    temps = _templates()
    for i in range(start, start + n):
        ev = dict(temps[i % TEMPLATES])
        ev["event_id"] = f"{i:08x}-6f1d-4c2e-8a41-{i * 2654435761 % (1 << 48):012x}"
        yield ev


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process)


def bench_baseline(n: int, path: Path) -> Timing:
    evs = list(events(n))
    dumps = json.dumps
    prev = bytes(32)
    t0, c0 = time.perf_counter(), time.process_time()
    with open(path, "wb") as f:
        for ev in evs:
            body = dumps(ev, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            prev = sha256(prev + body).digest()
            f.write(len(body).to_bytes(4, "big") + prev + body)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0, time.process_time() - c0


def bench_append(n: int, path: Path, key: SigningKey) -> Timing:
    evs = list(events(n))
    t0, c0 = time.perf_counter(), time.process_time()
    with Ledger.open(path, signer=key) as ledger:
        append = ledger.append
        for ev in evs:
            append(0, ev)
    return time.perf_counter() - t0, time.process_time() - c0


def bench_append_many(n: int, path: Path, key: SigningKey, batch: int = 1000) -> Timing:
    wall = cpu = 0.0
    ledger = Ledger.open(path, signer=key)
    for start in range(0, n, batch * 100):
        chunk = list(events(min(batch * 100, n - start), start))
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(chunk), batch):
            ledger.append_many(0, chunk[i : i + batch])
        wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ledger.close()
    return wall + time.perf_counter() - t0, cpu + time.process_time() - c0


def verify_in_child(path: Path, vkey: str | None) -> tuple[Timing, float, int]:
    """((wall, CPU seconds), peak RSS MiB, entries) of verify() in a fresh process."""
    cmd = [sys.executable, "-m", "bench.ledger_bench", "--verify-only", str(path)]
    out = subprocess.run(
        cmd + (["--vkey", vkey] if vkey else []), check=True, capture_output=True, text=True
    ).stdout
    data = json.loads(out)
    return (data["seconds"], data["cpu_seconds"]), data["peak_mib"], data["entries"]


def _peak_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so
    a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _verify_only(path: str, vkey: str | None) -> None:
    if vkey is None:  # pin the genesis key recorded in the ledger (bench convenience)
        vkey = json.loads((Path(path) / "p0" / "keys.json").read_text())["events"][0][1]["payload"][
            "new_vkey"
        ]
    t0, c0 = time.perf_counter(), time.process_time()
    report = verify(Path(path), trusted=[vkey])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_mib": _peak_mib(),
                "entries": report.entries,
            }
        )
    )


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _writer_memory_child(mode: str, path: str, n: int) -> None:
    """One side of --writer-memory (a fresh process, so RSS is the writer's own)."""
    import gc

    key = SigningKey.generate("bench")
    if mode == "reopen":
        key = SigningKey.load(Path(path).with_suffix(".key"))
    gc.collect()
    out: dict[str, float] = {"rss_before": _rss_mib()}
    t0, c0 = time.perf_counter(), time.process_time()
    ledger = Ledger.open(Path(path), signer=key)
    if mode == "build":
        key.save(Path(path).with_suffix(".key"))
        for start in range(0, n, 1000):  # events made per batch: RSS is the writer's
            ledger.append_many(0, list(events(min(1000, n - start), start)))
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
    gc.collect()
    out.update(rss=_rss_mib(), peak=_peak_mib())
    if mode == "reopen":
        t0 = time.perf_counter()  # the last id before the recent maps: a whole ids.txt scan
        assert ledger.append(0, next(events(1, max(0, n - 2 * RECENT_IDS - 1)))).duplicate
        out.update(old_duplicate_s=time.perf_counter() - t0, peak_after_duplicate=_peak_mib())
    ledger.close()
    print(json.dumps(out))


def writer_memory(n: int, work: Path) -> None:
    def child(mode: str) -> dict[str, float]:
        cmd = [sys.executable, "-m", "bench.ledger_bench", "--writer-child", mode, str(work)]
        run = subprocess.run([*cmd, "--entries", str(n)], check=True, capture_output=True)
        return json.loads(run.stdout)

    built, opened = child("build"), child("reopen")
    where = "recent map" if n <= 2 * RECENT_IDS else "not in the recent maps: ids.txt streamed"
    print(
        f"writer memory, {n:,} entries (append_many, 1 partition): "
        f"build {built['seconds']:.1f} s ({n / built['cpu_seconds']:,.0f}/s CPU), "
        f"RSS {built['rss']:.0f} MiB (empty process {built['rss_before']:.0f}), "
        f"peak {built['peak']:.0f} MiB\n"
        f"reopen: {opened['seconds']:.1f} s, RSS {opened['rss']:.0f} MiB, "
        f"peak {opened['peak']:.0f} MiB; duplicate of an old entry ({where}): "
        f"{opened['old_duplicate_s'] * 1000:.0f} ms, peak {opened['peak_after_duplicate']:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--big", type=int, default=0, help="also build+verify a ledger this large")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (with --dir)")
    ap.add_argument(
        "--verify",
        type=Path,
        default=None,
        help="only verify an existing ledger folder (in a child, with peak RSS)",
    )
    ap.add_argument(
        "--writer-memory",
        type=int,
        default=0,
        help="only measure the writer's memory at this many entries (child processes)",
    )
    ap.add_argument("--writer-child", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--verify-only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vkey", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.writer_child:
        _writer_memory_child(args.writer_child[0], args.writer_child[1], args.entries)
        return
    if args.writer_memory:
        work = args.dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
        try:
            writer_memory(args.writer_memory, work / "writer")
        finally:
            if not args.keep and args.dir is None:
                shutil.rmtree(work, ignore_errors=True)
        return
    if args.verify_only:
        _verify_only(args.verify_only, args.vkey)
        return
    if args.verify:
        (secs, cpu), peak, count = verify_in_child(args.verify, None)
        print(
            f"verify {count:,} entries: {secs:.1f} s wall ({count / secs:,.0f}/s), "
            f"{cpu:.1f} s CPU ({count / cpu:,.0f}/s), peak RSS {peak:.0f} MiB"
        )
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate("bench")
    n = args.entries
    size = len(json.dumps(next(events(1)), separators=(",", ":")))
    print(f"ledger benchmark: {n:,} events of ~{size} bytes, work dir {work}")
    rows: list[tuple[str, int, Timing]] = []
    try:
        base = bench_baseline(n, work / "baseline.bin")
        rows.append(("baseline (encode+chain+write)", n, base))
        rows.append(("Ledger.append", n, bench_append(n, work / "append", key)))
        rows.append(("Ledger.append_many(1000)", n, bench_append_many(n, work / "many", key)))
        vt, peak, count = verify_in_child(work / "many", key.vkey())
        rows.append((f"verify (peak RSS {peak:.0f} MiB)", count, vt))
        if args.big:
            rows.append(
                ("build big: append_many", args.big, bench_append_many(args.big, work / "big", key))
            )
            vt, peak, count = verify_in_child(work / "big", key.vkey())
            rows.append((f"verify big (peak RSS {peak:.0f} MiB)", count, vt))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    # Machines here are shared: CPU seconds of the measuring process are the steadier figure.
    print(
        f"{'case':<34} {'entries':>11} {'wall s':>8} {'/s wall':>9} {'CPU s':>8} "
        f"{'/s CPU':>9} {'x base CPU':>10}"
    )
    for name, count, (wall, cpu) in rows:
        ratio = f"{(count / cpu) / (n / base[1]):.2f}" if "base" not in name else ""
        print(
            f"{name:<34} {count:>11,} {wall:>8.2f} {count / wall:>9,.0f} {cpu:>8.2f} "
            f"{count / cpu:>9,.0f} {ratio:>10}"
        )


if __name__ == "__main__":
    main()
