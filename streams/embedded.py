"""The embedded runner: one process, no broker. Records in -> certify -> ledger -> DuckDB.

Same handlers as the Faust agents; the ledger partition of an event is chosen by the same
partitioner as Kafka's default (murmur2 of the subject), so both modes lay out the ledger alike.
Records go through `streams.handlers.Pipeline` (checker + permit service); at start the
pipeline's state (permits, approvers, decisions, pending timers) is rebuilt from the ledger.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from events import Envelope, format_time, utc_now
from ledger import Ledger, iter_entries, partition_for
from ledger.layout import KIND_EVENT, partition_dir
from projections import Projector
from rules.policy import Policy
from streams.config import Settings
from streams.handlers import Pipeline
from streams.keys import load_signing_key

PROGRESS_EVERY = 5_000
PARTITION_CACHE = 100_000


@dataclass
class Summary:
    records: int = 0
    decisions: int = 0
    duplicates: int = 0
    by_level: Counter[int] = field(default_factory=Counter)
    by_worker_type: Counter[str] = field(default_factory=Counter)
    hard_blocks: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # source, code, message
    other_events: int = 0
    seconds: float = 0.0

    def rejected_by_code(self) -> Counter[str]:
        return Counter(code for _, code, _ in self.rejected)


class EmbeddedRunner:
    def __init__(self, settings: Settings, policy: Policy,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.policy = policy
        self.clock = clock
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = open_ledger(settings)
        self.projector = Projector(settings.ledger_dir, settings.duckdb_path)
        self._partitions: dict[str, int] = {}  # subject -> partition (murmur2 is pure Python)
        self.pipeline = Pipeline(policy, self.record, now_fn=clock)
        self.pipeline.load(ledger_events(settings.ledger_dir, self.ledger.partitions))

    def record(self, event: Envelope) -> bool:
        """Append one event to its partition; False when the ledger already had it."""
        partition = self._partitions.get(event.subject)
        if partition is None:
            partition = partition_for(event.subject, self.settings.partitions)
            if len(self._partitions) > PARTITION_CACHE:
                self._partitions.clear()
            self._partitions[event.subject] = partition
        return not self.ledger.append(partition, ledger_record(event)).duplicate

    def tick(self, now: datetime | None = None) -> list[Envelope]:
        """Due timers (deadlines, expiries, override ends) -> recorded events."""
        return self.pipeline.tick(now if now is not None else self.clock())

    def process(self, records: Iterable[tuple[str, bytes]], progress: TextIO | None = None
                ) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        for source, raw in records:
            summary.records += 1
            before = self.pipeline.duplicates
            outcome = self.pipeline.handle_raw(raw, source, self.clock())
            summary.duplicates += self.pipeline.duplicates - before
            if outcome.decision is not None:
                decided = outcome.decision.decided
                summary.decisions += 1
                summary.by_level[decided.level] += 1
                summary.by_worker_type[decided.worker_type] += 1
                summary.hard_blocks.update(decided.hard_blocks)
            elif outcome.rejected is not None:
                summary.rejected.append((source, outcome.rejected.code,
                                         outcome.rejected.message))
            else:
                summary.other_events += 1
            if progress is not None and summary.records % PROGRESS_EVERY == 0:
                rate = summary.records / (time.perf_counter() - started)
                print(f"  ... {summary.records} records ({rate:,.0f}/s)", file=progress,
                      flush=True)
                self.projector.catch_up()
        self.ledger.checkpoint_now()
        self.projector.catch_up()
        summary.seconds = time.perf_counter() - started
        return summary

    def close(self) -> None:
        self.ledger.close()
        self.projector.close()


def open_ledger(settings: Settings) -> Ledger:
    """The data directory's ledger as its one writer (embedded runner or Kafka worker), with the
    configured key, origin, partitions and checkpoint cadence."""
    return Ledger.open(settings.ledger_dir, signer=load_signing_key(settings),
                       origin=settings.origin, partitions=settings.partitions,
                       checkpoint_every=settings.checkpoint_every,
                       checkpoint_interval_s=settings.checkpoint_interval_s)


def ledger_record(event: Envelope) -> dict[str, Any]:
    """`event.to_record()` without a second pydantic pass: envelopes carry JSON payloads
    (validated from JSON or dumped in JSON mode), so only the time needs its one spelling.
    tests/test_permit_service.py checks the equality with to_record()."""
    return {"event_id": event.event_id, "type": event.type,
            "schema_version": event.schema_version, "occurred_at": format_time(event.occurred_at),
            "producer": event.producer, "subject": event.subject,
            "correlation_id": event.correlation_id, "causation_id": event.causation_id,
            "payload": event.payload}


def ledger_events(directory: Path, partitions: int) -> Iterator[Envelope]:
    """Every recorded event, partitions merged by event time (each partition is in order; the
    state folds need per-subject order, which one partition per subject gives)."""
    def events(partition: int) -> Iterator[tuple[datetime, int, Envelope]]:
        if not partition_dir(directory, partition).is_dir():
            return
        for entry in iter_entries(directory, partition):
            if entry.kind != KIND_EVENT or "payload" not in entry.event:
                continue
            try:
                envelope = Envelope.model_validate(entry.event)
            except ValidationError:
                continue  # not one of our envelopes (the verifier judges the ledger itself)
            yield envelope.occurred_at, partition, envelope

    merged = heapq.merge(*(events(p) for p in range(partitions)), key=lambda x: (x[0], x[1]))
    for _, _, envelope in merged:
        yield envelope


def read_lines(stream: Iterable[bytes], name: str) -> Iterable[tuple[str, bytes]]:
    """JSON Lines: one record per line; blank lines are skipped, not rejected."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield f"{name}:{number}", line


def default_progress() -> TextIO:
    return sys.stderr
