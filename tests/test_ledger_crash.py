"""Crash test: a child process appends 100,000 events and is SIGKILLed at random points.

The child prints an event's number only after `append`/`append_many` returned (its ack).
After every kill the ledger is reopened (recovery), then it must verify, hold every acked
event exactly once, and hold nothing but events the child tried to append. The next child
resumes a little before its predecessor's last ack (at-least-once redelivery), so duplicates
are exercised too. Set LEDGER_CRASH_SEED to replay a run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

TOTAL = 100_000
KILLS = 4
REDELIVER = 300


def child(ledger_dir: str, key_path: str, start: int, seed: int) -> None:
    from ledger import Ledger, SigningKey

    rng = random.Random(seed)
    out = sys.stdout
    with Ledger.open(Path(ledger_dir), signer=SigningKey.load(Path(key_path)), partitions=2) as led:
        i = start
        while i < TOTAL:
            if rng.random() < 0.5:
                led.append(i % 2, _event(i))
                out.write(f"{i}\n")
                i += 1
            else:
                n = min(rng.randint(2, 400), TOTAL - i)
                batch = list(range(i, i + n))
                for p in (0, 1):
                    led.append_many(p, [_event(j) for j in batch if j % 2 == p])
                out.write("".join(f"{j}\n" for j in batch))
                i += n
            out.flush()
    out.write("done\n")
    out.flush()


def _event(i: int) -> dict:
    return {
        "event_id": f"evt-{i:06d}",
        "type": "crash.test",
        "schema_version": 1,
        "occurred_at": "2026-11-26T10:00:00.000000Z",
        "producer": "test_ledger_crash",
        "subject": f"task-{i % 97}",
        "correlation_id": None,
        "causation_id": None,
        "payload": {"i": i, "note": "x" * (i % 50)},
    }


def _run_child(
    ledger_dir: Path, key_path: Path, start: int, seed: int, kill_after: int | None
) -> tuple[list[int], bool]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, __file__, str(ledger_dir), str(key_path), str(start), str(seed)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    acked: list[int] = []
    done = False
    for line in proc.stdout:
        if line == "done\n":
            done = True
            continue
        acked.append(int(line))
        if kill_after is not None and len(acked) == kill_after:
            proc.send_signal(signal.SIGKILL)
    proc.wait()
    return acked, done


def test_sigkill_at_random_points_loses_no_acked_event(tmp_path: Path) -> None:
    from ledger import Ledger, SigningKey, iter_entries, verify

    seed = int(os.environ.get("LEDGER_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    key = SigningKey.generate("wc")
    key_path = tmp_path / "keys" / "ledger.key"
    key.save(key_path)
    ledger_dir = tmp_path / "ledger"
    acked_all: set[int] = set()
    attempted_max = -1
    start = 0
    for run in range(KILLS + 1):
        remaining = TOTAL - start
        kill_after = rng.randint(1, max(1, remaining // (KILLS + 1 - run))) if run < KILLS else None
        acked, done = _run_child(ledger_dir, key_path, start, rng.randrange(1 << 30), kill_after)
        assert done == (run == KILLS), f"seed {seed}: run {run}"
        acked_all.update(acked)
        attempted_max = max(attempted_max, max(acked, default=start) + 400)
        # Restart (recovery), then the ledger must verify and hold exactly what it should.
        Ledger.open(ledger_dir, signer=key, partitions=2).close()
        verify(ledger_dir, trusted=[key.vkey()])
        seen: list[int] = []
        for p in (0, 1):
            for entry in iter_entries(ledger_dir, p):
                if entry.kind == 0:
                    seen.append(int(entry.event["event_id"][4:]))
        seen_set = set(seen)
        assert len(seen) == len(seen_set), f"seed {seed}: duplicates after run {run}"
        assert acked_all <= seen_set, f"seed {seed}: lost {sorted(acked_all - seen_set)[:5]}"
        assert max(seen_set) <= attempted_max, f"seed {seed}: unexpected entries"
        start = max(0, max(acked, default=start) + 1 - REDELIVER)
    assert seen_set == set(range(TOTAL))


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
