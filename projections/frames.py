"""Ledger blocks (`ledger.scan.Block`: stored frames, back to back) -> one Arrow table, without
a Python object per entry.

The frames already sit in one buffer per read; every stretch of entry frames stored back to back
becomes one Arrow binary array over that buffer (no copy: its offsets are the frames' starts),
and two Arrow kernels cut out the leaf hashes and the event bytes. The event bytes are checked
as UTF-8 once, by Arrow, for the whole batch; DuckDB then takes them as text (`RAW_SCHEMA`).
Signed checkpoints met in the blocks are parsed here (a few per thousand entries).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from ledger.scan import Block

# What DuckDB reads a batch from: where each entry sits, its leaf hash and its event as text.
RAW_SCHEMA = pa.schema([
    ("partition", pa.int32()),
    ("ledger_index", pa.int64()),
    ("leaf_hash", pa.binary()),
    ("doc", pa.large_string()),
])
_HASH_AT, _HASH_END, _BODY_AT = 4, 36, 83  # ledger.scan: where hash and event sit in a frame
_FAR = 1 << 40  # "to the end of the value" (binary_slice wants an explicit stop)

CHECKPOINT_SCHEMA = pa.schema([
    ("partition", pa.int32()),
    ("size", pa.int64()),
    ("root_hash", pa.string()),
    ("origin", pa.string()),
    ("key_name", pa.string()),
    ("key_id", pa.string()),
    ("signature", pa.string()),
    ("key_ids", pa.list_(pa.string())),
    ("note", pa.string()),
])


def blocks_to_arrow(blocks: Sequence[Block]) -> pa.Table:
    """One table of every entry in `blocks`. Raises `pa.ArrowInvalid` when some event's bytes
    are not UTF-8 (the caller then takes the careful path)."""
    frames, partitions, indexes = [], [], []
    for block in blocks:
        if not len(block):
            continue
        buffer = pa.py_buffer(block.data)
        offsets = block.starts
        for first, stop, end in block.runs:
            bounds = offsets[first:stop]
            bounds.append(end)
            frames.append(pa.LargeBinaryArray.from_buffers(
                pa.large_binary(), stop - first, [None, pa.py_buffer(bounds), buffer]))
        partitions.append(pa.repeat(pa.scalar(block.partition, pa.int32()), len(block)))
        indexes.append(pa.Array.from_buffers(pa.int64(), len(block),
                                             [None, pa.py_buffer(block.indexes)]))
    if not frames:
        return RAW_SCHEMA.empty_table()
    stored = pa.chunked_array(frames, pa.large_binary())
    hashes = pc.binary_slice(stored, _HASH_AT, _HASH_END).cast(pa.binary())
    docs = pc.binary_slice(stored, _BODY_AT, _FAR).cast(pa.large_string())
    return pa.table([pa.chunked_array(partitions, pa.int32()),
                     pa.chunked_array(indexes, pa.int64()), hashes, docs],
                    schema=RAW_SCHEMA)


def checkpoints_to_arrow(blocks: Sequence[Block]) -> pa.Table | None:
    """The signed checkpoints met in `blocks`, one row each (None when there are none).
    A note that does not parse is left out: `certify ledger verify` is where it is reported."""
    rows = [row for block in blocks for _, note in block.checkpoints
            if (row := checkpoint_row(block.partition, note)) is not None]
    if not rows:
        return None
    return pa.Table.from_pylist(rows, schema=CHECKPOINT_SCHEMA)


def checkpoint_row(partition: int, note: str) -> dict[str, Any] | None:
    from ledger.checkpoint import Checkpoint
    from ledger.errors import LedgerError
    from ledger.note import parse_note

    try:
        text, signatures = parse_note(note)
        checkpoint = Checkpoint.parse_body(text)
    except LedgerError:
        return None
    first = signatures[0]
    return {"partition": partition, "size": checkpoint.size, "root_hash": checkpoint.root.hex(),
            "origin": checkpoint.origin, "key_name": first.name, "key_id": first.key_id.hex(),
            "signature": base64.b64encode(first.signature).decode(),
            "key_ids": [s.key_id.hex() for s in signatures], "note": note}
