"""The worker's ledger writer and DuckDB projector (this process is the one writer of both).

LedgerWriter: events -> hash-chained entries on ledger partition partition_for(subject) (the
embedded layout, and the partition of the subject's key on every topic), idempotent by event
id; every entry, also one the ledger refused as a duplicate (a replay), is published on
<p>.ledger as {"partition", "index", "leaf_hash", "event"}: consumers dedupe by position.

ProjectorLoop: the ledger -> DuckDB, in a worker thread, from what the writer appended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events import Envelope
from ledger import Ledger, partition_for
from ledger.layout import partition_dir
from ledger.reader import iter_raw
from streams.topics import LEDGER, route
from streams.worker_io import Outgoing, dumps


@dataclass(frozen=True)
class AppendedEntry:
    """What the projector needs of an entry this process appended (no file read)."""

    partition: int
    index: int
    leaf_hash: bytes
    event: dict[str, Any]


class LedgerWriter:
    """`record(event)`: what handlers.Pipeline calls for every event it records. Appends to
    the event's ledger partition, and queues the event's messages: its ledger entry on
    <p>.ledger, and the event itself on its internal topic (decisions, permits, rollbacks).
    `take()` hands the queued messages over (once per batch, to be published)."""

    def __init__(self, ledger: Ledger, partitions: int) -> None:
        self.ledger = ledger
        self.partitions = partitions
        self.appended = 0
        self.duplicates = 0
        self.fresh: list[AppendedEntry] = []  # appended, not yet taken by the projector
        self.keep_fresh = False
        self._out: list[Outgoing | _Stored] = []

    def record(self, event: Envelope) -> bool:
        """Append one event; False when the ledger already had its id (then its messages are
        sent again as the ledger kept them: the earlier run may have died before sending)."""
        record = event.to_record()
        key = event.subject.encode()
        p = partition_for(key, self.partitions)
        result = self.ledger.append(p, record)
        routed = route(event.type)
        if result.duplicate:
            self.duplicates += 1
            self._out.append(_Stored(p, result.index, result.leaf_hash, key, routed))
            return False
        self.appended += 1
        if self.keep_fresh:
            self.fresh.append(AppendedEntry(p, result.index, result.leaf_hash, record))
        body = dumps(record).encode()
        self._out.append(Outgoing(LEDGER, key, entry_value(p, result.index, result.leaf_hash,
                                                           body), p))
        if routed is not None:
            self._out.append(Outgoing(routed, key, body, p))
        return True

    def take(self) -> list[Outgoing]:
        """The messages queued since the last take, in recording order."""
        queued, self._out = self._out, []
        stored = self._stored([q for q in queued if isinstance(q, _Stored)])
        out: list[Outgoing] = []
        for item in queued:
            if isinstance(item, Outgoing):
                out.append(item)
                continue
            body = stored[(item.partition, item.index)]
            out.append(Outgoing(LEDGER, item.key, entry_value(item.partition, item.index,
                                                              item.leaf_hash, body),
                                item.partition))
            if item.routed is not None:
                out.append(Outgoing(item.routed, item.key, body, item.partition))
        return out

    def _stored(self, wanted: list[_Stored]) -> dict[tuple[int, int], bytes]:
        """The events the ledger keeps at these positions, one pass per partition."""
        found: dict[tuple[int, int], bytes] = {}
        by_partition: dict[int, set[int]] = {}
        for item in wanted:
            by_partition.setdefault(item.partition, set()).add(item.index)
        for partition, indexes in by_partition.items():
            pdir = partition_dir(self.ledger.directory, partition)
            left = set(indexes)
            for index, _digest, _kind, _prev, body in iter_raw(pdir, partition, min(indexes)):
                if index in left:
                    found[(partition, index)] = body
                    left.discard(index)
                    if not left:
                        break
        return found


@dataclass(frozen=True)
class _Stored:
    """A refused duplicate: its messages are built from what the ledger kept."""

    partition: int
    index: int
    leaf_hash: bytes
    key: bytes
    routed: str | None


def entry_value(partition: int, index: int, leaf_hash: bytes, event_json: bytes) -> bytes:
    """A <p>.ledger message: {"partition", "index", "leaf_hash", "event"} (event as stored)."""
    return (b'{"partition":%d,"index":%d,"leaf_hash":"%s","event":' % (
        partition, index, leaf_hash.hex().encode()) + event_json + b"}")


class ProjectorLoop:
    """Keeps DuckDB up with the ledger, at most every `interval_s`, in one worker thread (DuckDB
    releases the GIL while it works; readers of the ledger may run beside its writer).

    At start it catches up from the ledger files (what a previous run appended but did not
    project). After that the writer hands over what it appended, in order, and those entries
    are projected without re-reading segment files; should a hand-over ever not continue a
    partition exactly where DuckDB stands, it catches up from the files instead. DuckDB
    upserts by event id, so nothing is projected twice.
    """

    def __init__(self, projector: Any, writer: LedgerWriter, interval_s: float,
                 on_projected: Callable[[list[AppendedEntry]], None] | None = None, *,
                 snapshot: Path | None = None, snapshot_interval_s: float = 60.0) -> None:
        self.projector = projector
        self.writer = writer
        self.interval_s = interval_s
        self.on_projected = on_projected
        self.snapshot = snapshot  # a copy for readers in other processes (DuckDB: one writer)
        self.snapshot_interval_s = snapshot_interval_s
        self._snapshot_at = float("-inf")
        self._snapshot_stale = snapshot is not None
        self.dirty = asyncio.Event()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector")
        self.batches = 0
        self.from_files = 0
        self.projector.catch_up()
        self.next = dict(self.projector.next_indexes())
        writer.keep_fresh = True

    def poke(self) -> None:
        self.dirty.set()

    def _project(self, entries: list[AppendedEntry]) -> None:
        """In the projector thread: these entries, or a catch-up from the files."""
        expected = dict(self.next)
        contiguous = True
        for entry in entries:
            if entry.index != expected.get(entry.partition, 0):
                contiguous = False
                break
            expected[entry.partition] = entry.index + 1
        if contiguous:
            self.projector.project_entries(entries)
        else:
            self.from_files += 1
            self.projector.catch_up()
        self.next = dict(self.projector.next_indexes())
        self._snapshot_stale = self.snapshot is not None
        self._maybe_snapshot()

    def _maybe_snapshot(self, *, force: bool = False) -> None:
        if not self._snapshot_stale or self.snapshot is None:
            return
        now = time.monotonic()
        if force or now - self._snapshot_at >= self.snapshot_interval_s:
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            self.projector.publish_snapshot(self.snapshot)
            self._snapshot_at, self._snapshot_stale = now, False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            entries, self.writer.fresh = self.writer.fresh, []
            if entries:
                await loop.run_in_executor(self.pool, self._project, entries)
                self.batches += 1
                if self.on_projected is not None:
                    self.on_projected(entries)
            await asyncio.sleep(self.interval_s)

    def close(self) -> None:
        """After the worker stopped: project what is left, from the files to be sure."""
        self.pool.shutdown(wait=True)
        self.writer.fresh = []
        self.projector.catch_up()
        self._snapshot_stale = self.snapshot is not None
        self._maybe_snapshot(force=True)
        self.projector.close()
