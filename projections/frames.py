"""Ledger blocks (`ledger.scan.Block`: stored frames, back to back) -> one Arrow table, without
a Python object per entry.

The frames already sit in one buffer per read; every stretch of entry frames stored back to back
becomes one Arrow binary array over that buffer (no copy: its offsets are the frames' starts),
and an Arrow kernel cuts out the leaf hashes. The event bytes are not copied at all: they
become a string-view array over the same buffer (a 16-byte view per event: its length, first
bytes and where it starts), made by a few Arrow kernels over the frames' starts; copying them
out (`binary_slice`) cost as much CPU as the rest of the read. The event bytes are checked as
UTF-8 once, by Arrow, for the whole batch; DuckDB then takes them as text (`BLOCK_SCHEMA`).
Signed checkpoints met in the blocks are parsed here (a few per thousand entries).
"""

from __future__ import annotations

import base64
from array import array
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
# The same from the ledger's bulk scan: the events as views over the read buffers.
BLOCK_SCHEMA = pa.schema([*RAW_SCHEMA][:3] + [pa.field("doc", pa.string_view())])
_HASH_AT, _HASH_END, _BODY_AT = 4, 36, 83  # ledger.scan: where hash and event sit in a frame
_FAR = 1 << 40  # "to the end of the value" (binary_slice wants an explicit stop)
_INLINE = 12  # a value this short goes inside its view (Arrow): such a block is copied out

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
    frames, docs, partitions, indexes = [], [], [], []
    for block in blocks:
        if not len(block):
            continue
        buffer = pa.py_buffer(block.data)
        offsets = block.starts
        runs = []
        for first, stop, end in block.runs:
            bounds = offsets[first:stop]
            bounds.append(end)
            runs.append(pa.LargeBinaryArray.from_buffers(
                pa.large_binary(), stop - first, [None, pa.py_buffer(bounds), buffer]))
        frames.extend(runs)
        docs.append(_events(block, buffer, runs))
        partitions.append(pa.repeat(pa.scalar(block.partition, pa.int32()), len(block)))
        indexes.append(pa.Array.from_buffers(pa.int64(), len(block),
                                             [None, pa.py_buffer(block.indexes)]))
    if not frames:
        return BLOCK_SCHEMA.empty_table()
    stored = pa.chunked_array(frames, pa.large_binary())
    hashes = pc.binary_slice(stored, _HASH_AT, _HASH_END).cast(pa.binary())
    texts = pa.chunked_array(docs, pa.binary_view()).cast(pa.string_view())
    return pa.table([pa.chunked_array(partitions, pa.int32()),
                     pa.chunked_array(indexes, pa.int64()), hashes, texts],
                    schema=BLOCK_SCHEMA)


def _events(block: Block, buffer: pa.Buffer, runs: list[pa.Array]) -> pa.Array:
    """The block's event bytes as a binary-view array over `buffer` (no copy of the events).

    An event runs from its frame's start + 83 to the next frame's start (the end of its run for
    the last of a run). A view is its length, its first 4 bytes, which buffer (0: the only
    one) and where in it, 4 bytes each; a block holding an event of 12 bytes or less (which
    Arrow wants inside the view) or too big for 32-bit offsets is copied out instead."""
    count = len(block)
    ends = array("q", block.starts[1:])
    ends.append(0)
    for _first, stop, end in block.runs:
        ends[stop - 1] = end
    starts = pc.add(_int64s(block.starts, count), _BODY_AT)
    lengths = pc.subtract(_int64s(ends, count), starts)
    if len(block.data) >= 1 << 31 or pc.min(lengths).as_py() <= _INLINE:
        return pa.concat_arrays([pc.binary_slice(run, _BODY_AT, _FAR).cast(pa.binary_view())
                                 for run in runs])
    prefixes = pa.concat_arrays([pc.binary_slice(run, _BODY_AT, _BODY_AT + 4).cast(pa.binary())
                                 for run in runs])
    zero = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), count,
                                                [None, pa.py_buffer(bytes(4 * count))])
    views = pc.binary_join_element_wise(_words(lengths), prefixes, zero.cast(pa.binary()),
                                        _words(starts), b"").cast(pa.binary(16))
    return pa.Array.from_buffers(pa.binary_view(), count, [None, views.buffers()[1], buffer])


def _int64s(values: array, count: int) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(values)])


def _words(values: pa.Array) -> pa.Array:
    """Each value as the 4 bytes of an int32 (the layout of a view's fields), as binary."""
    narrow = values.cast(pa.int32())  # raises on overflow: checked above
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(4), len(narrow), [None, narrow.buffers()[1]], offset=narrow.offset
    ).cast(pa.binary())


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
