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

TEMPLATES = 256


def _templates() -> list[dict]:
    """Realistic envelopes of ~400-600 bytes of canonical JSON."""
    out = []
    types = ["task.certified", "permit.requested", "permit.approved", "operation.authorized",
             "rollback.triggered", "metric.threshold_crossed"]
    for t in range(TEMPLATES):
        out.append({
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
                "operation": ["db.migrate", "svc.restart", "config.write", "file.delete"][t % 4],
                "approvers": [f"user-{(t + k) % 17}@example.com" for k in range(t % 3 + 1)],
                "reason": "rule R-%d gave %d points; hard block none" % (t % 29, t % 11),
                "scope": {"hosts": [f"host-{t % 13}", f"host-{(t + 1) % 13}"], "max_rows": 1000},
            },
        })
    return out


def events(n: int, start: int = 0) -> Iterator[dict]:
    temps = _templates()
    for i in range(start, start + n):
        ev = dict(temps[i % TEMPLATES])
        ev["event_id"] = f"{i:08x}-6f1d-4c2e-8a41-{i * 2654435761 % (1 << 48):012x}"
        yield ev


def bench_baseline(n: int, path: Path) -> float:
    evs = list(events(n))
    dumps = json.dumps
    prev = bytes(32)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for ev in evs:
            body = dumps(ev, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            prev = sha256(prev + body).digest()
            f.write(len(body).to_bytes(4, "big") + prev + body)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def bench_append(n: int, path: Path, key: SigningKey) -> float:
    evs = list(events(n))
    t0 = time.perf_counter()
    with Ledger.open(path, signer=key) as ledger:
        append = ledger.append
        for ev in evs:
            append(0, ev)
    return time.perf_counter() - t0


def bench_append_many(n: int, path: Path, key: SigningKey, batch: int = 1000) -> float:
    elapsed = 0.0
    ledger = Ledger.open(path, signer=key)
    for start in range(0, n, batch * 100):
        chunk = list(events(min(batch * 100, n - start), start))
        t0 = time.perf_counter()
        for i in range(0, len(chunk), batch):
            ledger.append_many(0, chunk[i : i + batch])
        elapsed += time.perf_counter() - t0
    t0 = time.perf_counter()
    ledger.close()
    return elapsed + time.perf_counter() - t0


def verify_in_child(path: Path, vkey: str) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB, entries) of verify() in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.ledger_bench", "--verify-only", str(path), "--vkey", vkey],
        check=True, capture_output=True, text=True,
    ).stdout
    data = json.loads(out)
    return data["seconds"], data["peak_mib"], data["entries"]


def _verify_only(path: str, vkey: str) -> None:
    t0 = time.perf_counter()
    report = verify(Path(path), trusted=[vkey])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "entries": report.entries}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=200_000)
    ap.add_argument("--big", type=int, default=0, help="also build+verify a ledger this large")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--verify-only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--vkey", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.verify_only:
        _verify_only(args.verify_only, args.vkey)
        return
    work = args.dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate("bench")
    n = args.entries
    size = len(json.dumps(next(events(1)), separators=(",", ":")))
    print(f"ledger benchmark: {n:,} events of ~{size} bytes, work dir {work}")
    rows: list[tuple[str, int, float, str]] = []
    try:
        base = bench_baseline(n, work / "baseline.bin")
        rows.append(("baseline (encode+chain+write)", n, base, ""))
        t = bench_append(n, work / "append", key)
        rows.append(("Ledger.append", n, t, f"{base / t:.2f}"))
        t = bench_append_many(n, work / "many", key)
        rows.append(("Ledger.append_many(1000)", n, t, f"{base / t:.2f}"))
        vt, peak, count = verify_in_child(work / "many", key.vkey())
        rows.append((f"verify (peak RSS {peak:.0f} MiB)", count, vt, f"{base / vt:.2f}"))
        if args.big:
            t = bench_append_many(args.big, work / "big", key)
            rows.append(("build big: append_many", args.big, t, ""))
            vt, peak, count = verify_in_child(work / "big", key.vkey())
            rows.append((f"verify big (peak RSS {peak:.0f} MiB)", count, vt, ""))
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'case':<36} {'entries':>11} {'seconds':>9} {'entries/s':>11} {'x baseline':>10}")
    for name, count, secs, ratio in rows:
        print(f"{name:<36} {count:>11,} {secs:>9.2f} {count / secs:>11,.0f} {ratio:>10}")


if __name__ == "__main__":
    main()
