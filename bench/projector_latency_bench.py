"""The worker's projector stage alone: entries handed to the projector process (the real child,
`streams.worker_projector.ProjectorProcess`) at the pace of the Kafka worker at 1,000 tasks/s
(a batch of the events of ~45 tasks every 45 ms, as the worker's batches come), from the hand
over to the child's report that they are committed. No broker, no worker: fewer processes to
share the cores with, so settings of the projector can be compared on a busy machine.

    .venv/bin/python -m bench.projector_latency_bench [--rate 1000] [--seconds 10]
        [--interval-ms 100] [--batch-ms 45]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.kafka_common import percentiles


def bodies(tasks: int) -> list[bytes]:
    """The events the worker records for `tasks` sample records, as it encodes them."""
    from rules.policy import default_policy
    from streams.handlers import handle_inbound
    from streams.sample import sample_records
    from streams.worker_io import encode_record

    policy, now = default_policy(), datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i, raw in enumerate(sample_records(tasks)):
        for event in handle_inbound(raw, f"bench:{i}", policy, now).events:
            out.append(encode_record(event.to_record()))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(rate: int, seconds: float, interval_ms: float, batch_ms: float) -> dict[str, float]:
    from streams.worker_projector import ProjectorProcess

    events = bodies(int(rate * seconds))
    per_task = len(events) / (rate * seconds)
    handed: dict[int, list[tuple[int, float]]] = {}
    done: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_progress(at: float, positions: dict[int, int]) -> None:
        with lock:
            for partition, following in positions.items():
                mine, k = handed.get(partition, []), done.get(partition, 0)
                while k < len(mine) and mine[k][0] < following:
                    latencies.append((at - mine[k][1]) * 1000)
                    k += 1
                done[partition] = k

    with tempfile.TemporaryDirectory(prefix="projector-latency-") as tmp:
        child = ProjectorProcess(Path(tmp) / "ledger", Path(tmp) / "p.duckdb",
                                 interval_ms / 1000, on_progress=on_progress)
        assert child.wait_ready()
        cpu0 = cpu_seconds(child.child.pid)
        per_batch = max(1, round(rate * batch_ms / 1000 * per_task))
        positions: dict[int, int] = {}
        started = time.perf_counter()
        for n, first in enumerate(range(0, len(events), per_batch)):
            delay = started + n * batch_ms / 1000 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            batch = []
            now = time.time()
            with lock:
                for j, body in enumerate(events[first:first + per_batch]):
                    p = (first + j) % 4
                    index = positions.get(p, 0)
                    positions[p] = index + 1
                    handed.setdefault(p, []).append((index, now))
                    batch.append((p, index, bytes(32), body))
            child.hand_over(batch)
        deadline = time.perf_counter() + 60
        while len(latencies) < len(events) and time.perf_counter() < deadline:
            time.sleep(0.01)
        cpu = cpu_seconds(child.child.pid) - cpu0
        commits = child.commits
        child.close()
    p50, p99, top = percentiles(latencies, 0.5, 0.99)
    return {"entries": len(latencies), "p50": p50, "p99": p99, "max": top, "cpu": cpu,
            "commits": commits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projector_latency_bench")
    parser.add_argument("--rate", type=int, default=1000, help="tasks/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--batch-ms", type=float, default=45.0)
    args = parser.parse_args(argv)
    result = run(args.rate, args.seconds, args.interval_ms, args.batch_ms)
    print(f"projector stage at {args.rate} tasks/s, interval {args.interval_ms:.0f} ms, a batch "
          f"every {args.batch_ms:.0f} ms: hand-over -> committed p50 {result['p50']:.1f} ms, "
          f"p99 {result['p99']:.1f}, max {result['max']:.1f} ({result['entries']} entries); "
          f"child CPU {result['cpu']:.2f} s, {result['commits']} commits; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
