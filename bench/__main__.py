"""`make bench`: every benchmark in turn, each with its own same-run baseline.

    .venv/bin/python -m bench [NAME ...]     # names: checker ledger projections authorize kafka reports
                                             #        rollback

Each one is also runnable alone (`python -m bench.ledger_bench --help`) with larger sizes;
the defaults here keep a full pass to minutes on 2 cores. The Kafka and rollback benchmarks need
the broker (`make bench` starts it and sets CERTIFY_KAFKA_BOOTSTRAP).
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHES = {
    "checker": ["bench.checker_bench"],
    "ledger": ["bench.ledger_bench", "--entries", "200000"],
    "projections": ["bench.projections_bench", "--entries", "100000"],
    "authorize": ["bench.authorize_bench"],
    "kafka": ["bench.kafka_bench"],
    "reports": ["bench.reports_bench", "--entries", "2000000", "--real", "50000"],
    "rollback": ["bench.rollback_bench"],
}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    failed = []
    for name in names or list(BENCHES):
        module, *args = BENCHES[name]
        print(f"\n=== {name}: python -m {module} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module, *args])
        print(f"=== {name}: exit {code} in {time.perf_counter() - started:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
