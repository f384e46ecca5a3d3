"""Ledger entries -> one columnar (Arrow) batch, with as little Python per entry as possible.

Three shapes: `BlockBatch` (the ledger's stored frames in bulk, `ledger.scan`: no Python
object per entry), `RawBatch` (stored event bytes handed over one by one) and `Batch` (parsed
events: Python reads the envelope's fields and encodes the payload to JSON text). All parsing
of payloads into typed columns happens in DuckDB (`projections.mapping`). A value that
Arrow cannot take (an envelope field of the wrong kind, a payload that is not JSON) never fails
the batch: the batch is rebuilt carefully, and the bad values become a note on that entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from projections.frames import BLOCK_SCHEMA, RAW_SCHEMA, blocks_to_arrow, checkpoints_to_arrow

if TYPE_CHECKING:
    from ledger.scan import Block

STAGE_SCHEMA = pa.schema([
    ("partition", pa.int32()),
    ("ledger_index", pa.int64()),
    ("leaf_hash", pa.string()),
    ("event_id", pa.string()),
    ("type", pa.string()),
    ("schema_version", pa.int64()),
    ("occurred_at", pa.string()),
    ("producer", pa.string()),
    ("subject", pa.string()),
    ("correlation_id", pa.string()),
    ("causation_id", pa.string()),
    ("payload", pa.string()),
    ("note", pa.string()),
])

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class EntryLike(Protocol):
    """What the projector needs of a ledger entry (ledger.Entry has it)."""

    partition: int
    index: int
    leaf_hash: bytes
    event: Any


@dataclass
class Batch:
    """Rows of one batch, and how far each partition got."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    next_index: dict[int, int] = field(default_factory=dict)
    # Signed checkpoints to write with these rows (frames.CHECKPOINT_SCHEMA), if any.
    checkpoint_table: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def checkpoints(self) -> pa.Table | None:
        return self.checkpoint_table

    def add(self, entry: EntryLike) -> None:
        event = entry.event
        try:
            get = event.get
            self.rows.append((
                entry.partition, entry.index, entry.leaf_hash.hex(), get("event_id"),
                get("type"), get("schema_version"), get("occurred_at"), get("producer"),
                get("subject"), get("correlation_id"), get("causation_id"),
                _encode(get("payload")), None,
            ))
        except (AttributeError, TypeError, ValueError, RecursionError):
            self.rows.append(careful_row(entry))
        self.next_index[entry.partition] = entry.index + 1

    def extend(self, entries: Iterable[EntryLike]) -> None:
        for entry in entries:
            self.add(entry)

    def to_arrow(self) -> pa.Table:
        try:
            return _table(self.rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError):
            return _table([careful_values(row) for row in self.rows])


_ENVELOPE = json.dumps({"event_id": "VARCHAR", "type": "VARCHAR", "schema_version": "VARCHAR",
                        "occurred_at": "VARCHAR", "producer": "VARCHAR", "subject": "VARCHAR",
                        "correlation_id": "VARCHAR", "causation_id": "VARCHAR",
                        "payload": "JSON"}, separators=(",", ":"))
# A raw batch (RAW_SCHEMA: the event as text, checked as UTF-8 by Arrow) seen as a
# STAGE_SCHEMA relation: DuckDB reads the envelope out of the text.
RAW_SELECT = f"""
SELECT partition, ledger_index, lower(hex(leaf_hash)) AS leaf_hash, e.event_id, e.type,
       try_cast(e.schema_version AS BIGINT) AS schema_version, e.occurred_at, e.producer,
       e.subject, e.correlation_id, e.causation_id, e.payload,
       CASE WHEN NOT starts_with(doc, '{{') THEN 'envelope: not a JSON object' END AS note
FROM (SELECT partition, ledger_index, leaf_hash, doc, json_transform(doc, '{_ENVELOPE}') AS e
      FROM _raw)
"""
RAW_STAGE_SQL = f"CREATE OR REPLACE TEMP VIEW _batch AS {RAW_SELECT}"


@dataclass
class RawBatch:
    """Entries as the ledger stores them (index, leaf hash, canonical event bytes), kept as
    columns: no JSON work in Python at all; DuckDB parses the events."""

    partitions: list[int] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    next_index: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indexes)

    @property
    def rows(self) -> list[tuple[int, int, bytes, bytes]]:
        return list(zip(self.partitions, self.indexes, self.hashes, self.bodies, strict=True))

    def add(self, partition: int, index: int, leaf_hash: bytes, body: bytes) -> None:
        self.partitions.append(partition)
        self.indexes.append(index)
        self.hashes.append(leaf_hash)
        self.bodies.append(body)
        self.next_index[partition] = index + 1

    def to_arrow(self) -> pa.Table:
        """RAW_SCHEMA; raises `pa.ArrowInvalid` when an event's bytes are not UTF-8."""
        return pa.Table.from_arrays(
            [pa.array(self.partitions, pa.int32()), pa.array(self.indexes, pa.int64()),
             pa.array(self.hashes, pa.binary()),
             pa.array(self.bodies, pa.large_binary()).cast(pa.large_string())],
            schema=RAW_SCHEMA)

    def checkpoints(self) -> pa.Table | None:
        return None

    def parsed(self) -> Batch:
        """The same entries the slow way (for a batch DuckDB refused as a whole)."""
        return parse_rows(self.rows)


@dataclass
class BlockBatch:
    """Entries as the ledger's bulk scan hands them over (`ledger.scan.Block`: stored frames
    back to back): no Python object per entry until DuckDB refuses something."""

    blocks: list[Block] = field(default_factory=list)
    next_index: dict[int, int] = field(default_factory=dict)
    size: int = 0
    # Made by `prepared()` ahead of the write (see projector.prefetched).
    arrow: pa.Table | None = field(default=None, repr=False)
    checkpoint_rows: pa.Table | None = field(default=None, repr=False)
    ready: bool = False

    def __len__(self) -> int:
        return self.size

    def add(self, block: Block) -> None:
        self.blocks.append(block)
        self.size += len(block)
        if block.next_index is not None:
            self.next_index[block.partition] = block.next_index

    def prepared(self) -> BlockBatch:
        """Make the Arrow tables now (on the reading thread) and let go of the read buffers
        (the table holds what they held); a refusal waits for `to_arrow`."""
        try:
            self.arrow = blocks_to_arrow(self.blocks)
        except pa.ArrowInvalid:
            self.arrow = None
        self.checkpoint_rows = checkpoints_to_arrow(self.blocks)
        self.ready = True
        if self.arrow is not None:
            self.blocks = []
        return self

    def to_arrow(self) -> pa.Table:
        """BLOCK_SCHEMA; raises `pa.ArrowInvalid` when an event's bytes are not UTF-8."""
        return self.arrow if self.arrow is not None else blocks_to_arrow(self.blocks)

    def checkpoints(self) -> pa.Table | None:
        return self.checkpoint_rows if self.ready else checkpoints_to_arrow(self.blocks)

    @property
    def rows(self) -> list[tuple[int, int, bytes, bytes]]:
        if self.arrow is not None:
            columns = [self.arrow[name].to_pylist() for name in BLOCK_SCHEMA.names]
            return [(p, i, h, doc.encode()) for p, i, h, doc in zip(*columns, strict=True)]
        return [(block.partition, index, leaf_hash, body) for block in self.blocks
                for index, leaf_hash, body in block.frames()]

    def parsed(self) -> Batch:
        """The same entries the slow way, checkpoints included (for a batch that DuckDB or
        Arrow refused as a whole)."""
        batch = parse_rows(self.rows)
        batch.checkpoint_table = self.checkpoints()
        return batch


def parse_rows(rows: Iterable[tuple[int, int, bytes, bytes]]) -> Batch:
    batch = Batch()
    for partition, index, leaf_hash, body in rows:
        try:
            event: Any = json.loads(body)
        except ValueError:
            event = body.decode("utf-8", errors="backslashreplace")
        batch.add(ParsedEntry(partition, index, leaf_hash, event))
    return batch


@dataclass(frozen=True)
class ParsedEntry:
    partition: int
    index: int
    leaf_hash: bytes
    event: Any


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(STAGE_SCHEMA)
    return pa.Table.from_arrays(
        [pa.array(values, type=f.type) for values, f in zip(columns, STAGE_SCHEMA, strict=True)],
        schema=STAGE_SCHEMA)


def careful_row(entry: EntryLike) -> tuple[Any, ...]:
    """The slow path for an entry whose event is not a JSON object or whose payload cannot be
    encoded: keep what can be kept, say what could not."""
    event = entry.event
    notes = []
    if not isinstance(event, dict):
        notes.append(f"envelope: not a JSON object ({type(event).__name__})")
        event = {}
    try:
        payload = _encode(event.get("payload"))
    except (TypeError, ValueError, RecursionError) as error:
        payload = None
        notes.append(f"payload: not encodable as JSON ({error})")
    leaf_hash = entry.leaf_hash.hex() if isinstance(entry.leaf_hash, bytes) else str(
        entry.leaf_hash)
    row = (entry.partition, entry.index, leaf_hash, event.get("event_id"), event.get("type"),
           event.get("schema_version"), event.get("occurred_at"), event.get("producer"),
           event.get("subject"), event.get("correlation_id"), event.get("causation_id"),
           payload, "; ".join(notes) or None)
    return careful_values(row)


def careful_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Coerce envelope values Arrow cannot store as declared; note each one coerced."""
    values = list(row)
    notes = [values[12]] if values[12] else []
    for position, name in enumerate(STAGE_SCHEMA.names[3:12], start=3):
        value = values[position]
        if value is None:
            continue
        if name == "schema_version":
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and -(2**63) <= value < 2**63):
                notes.append(f"envelope.schema_version: not an integer ({value!r:.40})")
                values[position] = None
        elif not isinstance(value, str):
            notes.append(f"envelope.{name}: not a string ({type(value).__name__})")
            values[position] = _text(value)
        elif not _utf8(value):
            notes.append(f"envelope.{name}: not valid UTF-8 (lone surrogates escaped)")
            values[position] = _text(value)
    values[12] = "; ".join(notes) or None
    return tuple(values)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str | None:
    """A printable stand-in for a value of the wrong kind (JSON when possible)."""
    try:
        text = value if isinstance(value, str) else _encode(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")
