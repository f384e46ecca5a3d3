"""The end-of-run summary of `certify run`: what a newcomer (and an on-call engineer) reads."""

from __future__ import annotations

import sys
from typing import TextIO

from ledger import LedgerError, verify
from streams.config import Settings
from streams.embedded import Summary
from streams.keys import load_signing_key

LEVEL_NAMES = {0: "non-union", 1: "basic (read-only)", 2: "standard union",
               3: "advanced union", 4: "master union"}
SHOW_REJECTED = 12


def print_summary(summary: Summary, settings: Settings, out: TextIO | None = None) -> int:
    """Prints the summary; returns the exit code (1 if the ledger does not verify)."""
    out = out or sys.stdout
    from projections import connect_readonly

    w = out.write
    w(f"\nProcessed {summary.records} records in {summary.seconds:.2f}s "
      f"({summary.records / max(summary.seconds, 1e-9):,.0f}/s)\n")
    w(f"  decisions: {summary.decisions}   rejected: {len(summary.rejected)}   "
      f"already in ledger: {summary.duplicates}   other events: {summary.other_events}\n")
    w("\nDecisions by level\n")
    for level in range(5):
        w(f"  L{level} {LEVEL_NAMES[level]:<20} {summary.by_level.get(level, 0):>7}\n")
    w("  by worker type: " + ", ".join(f"{k} {v}" for k, v in
                                        sorted(summary.by_worker_type.items())) + "\n")
    if summary.hard_blocks:
        w("  non-union hard blocks applied: " + ", ".join(
            f"{k} {v}" for k, v in summary.hard_blocks.most_common()) + "\n")
    if summary.rejected:
        w("\nRejected records (kept in the ledger as input.rejected)\n")
        for code, count in summary.rejected_by_code().most_common():
            w(f"  {code:<24} {count}\n")
        for source, code, message in summary.rejected[:SHOW_REJECTED]:
            w(f"  - {source}: {message}\n")
        if len(summary.rejected) > SHOW_REJECTED:
            w(f"  … and {len(summary.rejected) - SHOW_REJECTED} more\n")

    w(f"\nLedger {settings.ledger_dir}/\n")
    try:
        report = verify(settings.ledger_dir, trusted=[load_signing_key(settings).vkey()])
    except LedgerError as error:
        w(f"  VERIFICATION FAILED: {error}\n")
        return 1
    for part in report.partitions:
        w(f"  partition {part.partition}: {part.size} entries, "
          f"{part.checkpoints} signed checkpoints (latest covers {part.checkpoint_size})\n")
    w(f"  verified: {report.entries} entries, every link, hash and signature sound "
      f"(anchored to key {load_signing_key(settings).vkey().split('+')[1]})\n")
    latest = next((p.latest_checkpoint for p in report.partitions if p.latest_checkpoint), None)
    if latest:
        w("  latest checkpoint (partition 0):\n")
        w("".join(f"    {line}\n" for line in latest.rstrip("\n").split("\n")))
    with connect_readonly(settings.duckdb_path) as db:
        tasks = db.execute("select count(*) from tasks").fetchone()[0]
        decisions = db.execute("select count(*) from decisions").fetchone()[0]
        rejected = db.execute("select count(*) from rejected_input").fetchone()[0]
    w(f"\nDuckDB {settings.duckdb_path}: tasks {tasks}, decisions {decisions}, "
      f"rejected_input {rejected}\n")
    w(f"Signing key: {settings.signing_key_path}\n")
    w("Next: `certify ledger verify`, `certify check task.json`, or query the DuckDB file.\n")
    return 0
