"""The worker's ledger writer (this process is the ledger's one writer).

LedgerWriter: events -> hash-chained entries on ledger partition partition_for(subject) (the
embedded layout, and the partition of the subject's key on every topic), idempotent by event
id; every entry, also one the ledger refused as a duplicate (a replay), is published on
<p>.ledger as {"partition", "index", "leaf_hash", "event"}: consumers dedupe by position.

The DuckDB projector runs in its own process (streams/worker_projector.py); the writer hands it
what it appended (`take_fresh`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from events import Envelope, format_time
from ledger import Ledger, partition_for
from ledger.layout import partition_dir
from ledger.reader import iter_raw
from streams.topics import LEDGER, route
from streams.worker_io import Outgoing, encode_record

PARTITION_CACHE = 100_000  # subjects whose partition is remembered (murmur2 is pure Python)


class LedgerWriter:
    """`record(event)`: what handlers.Pipeline calls for every event it records. Appends to
    the event's ledger partition, and queues the event's messages: its ledger entry on
    <p>.ledger, and the event itself on its internal topic (decisions, permits, rollbacks).
    `take()` hands the queued messages over (once per batch, to be published).

    `on_append(partition, index, record)`, if set, is told of every fresh entry (benchmarks
    use it to know where a decision landed)."""

    def __init__(self, ledger: Ledger, partitions: int) -> None:
        self.ledger = ledger
        self.partitions = partitions
        self.appended = 0
        self.duplicates = 0
        self.on_append: Callable[[int, int, dict[str, Any]], None] | None = None
        # fresh entries as (partition, index, leaf hash, event JSON), for the projector
        self.fresh: list[tuple[int, int, bytes, bytes]] | None = None
        self._out: list[Outgoing | _Stored] = []
        self._partition_of: dict[str, int] = {}
        self._time: tuple[Any, str] = (None, "")  # the last occurred_at and its spelling

    def partition(self, subject: str) -> int:
        p = self._partition_of.get(subject)
        if p is None:
            p = partition_for(subject, self.partitions)
            if len(self._partition_of) >= PARTITION_CACHE:
                self._partition_of.clear()
            self._partition_of[subject] = p
        return p

    def record(self, event: Envelope) -> bool:
        """Append one event; False when the ledger already had its id (then its messages are
        sent again as the ledger kept them: the earlier run may have died before sending)."""
        record = self._record(event)
        subject = event.subject
        p = self.partition(subject)
        result = self.ledger.append(p, record)
        key = subject.encode()
        routed = route(event.type)
        if result.duplicate:
            self.duplicates += 1
            self._out.append(_Stored(p, result.index, result.leaf_hash, key, routed))
            return False
        self.appended += 1
        if self.on_append is not None:
            self.on_append(p, result.index, record)
        body = encode_record(record)  # once: ledger entry message, routed event, projector
        if self.fresh is not None:
            self.fresh.append((p, result.index, result.leaf_hash, body))
        self._out.append(Outgoing(LEDGER, key, entry_value(p, result.index, result.leaf_hash,
                                                           body), p))
        if routed is not None:
            self._out.append(Outgoing(routed, key, body, p))
        return True

    def _record(self, event: Envelope) -> dict[str, Any]:
        """`event.to_record()` without a pydantic pass (as streams.embedded.ledger_record; the
        events of one record share their time, so its spelling is kept for the next one)."""
        moment = event.occurred_at
        if self._time[0] != moment:
            self._time = (moment, format_time(moment))
        return {"event_id": event.event_id, "type": event.type,
                "schema_version": event.schema_version, "occurred_at": self._time[1],
                "producer": event.producer, "subject": event.subject,
                "correlation_id": event.correlation_id, "causation_id": event.causation_id,
                "payload": event.payload}

    def take_fresh(self) -> list[tuple[int, int, bytes, bytes]]:
        """The entries appended since the last call (for the projector)."""
        if not self.fresh:
            return []
        fresh, self.fresh = self.fresh, []
        return fresh

    def take(self) -> list[Outgoing]:
        """The messages queued since the last take, in recording order."""
        queued, self._out = self._out, []
        if not any(type(q) is _Stored for q in queued):
            return queued  # type: ignore[return-value]
        stored = self._stored([q for q in queued if type(q) is _Stored])  # type: ignore[misc]
        out: list[Outgoing] = []
        for item in queued:
            if type(item) is not _Stored:
                out.append(item)  # type: ignore[arg-type]
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


class _Stored(NamedTuple):
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
