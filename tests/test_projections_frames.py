"""projections/frames.py: ledger blocks -> one Arrow table whose events are views over the read
buffers. Every event comes out byte for byte as the frame holds it (whatever its length, across
the gaps a checkpoint frame leaves), and bytes that are not UTF-8 refuse the batch."""

from __future__ import annotations

from array import array

import pyarrow as pa
import pytest

from ledger.scan import BODY_AT, Block
from projections.frames import BLOCK_SCHEMA, blocks_to_arrow


def block(partition: int, bodies: list[bytes | None], first_index: int = 0) -> Block:
    """A block as ledger.scan makes it; None stands for a non-entry frame (a checkpoint)
    between two runs."""
    data = bytearray(b"~" * 7)  # a block need not start at its buffer's start
    made = Block(partition, data)
    run_first, index = None, first_index
    for body in bodies:
        if body is None:
            if run_first is not None:
                made.runs.append((run_first, len(made.indexes), len(data)))
                run_first = None
            data += b"C" * 40
            continue
        if run_first is None:
            run_first = len(made.indexes)
        made.starts.append(len(data))
        made.indexes.append(index)
        data += bytes([index % 256]) * BODY_AT + body
        index += 1
    if run_first is not None:
        made.runs.append((run_first, len(made.indexes), len(data)))
    return made


def rows(table: pa.Table) -> list[tuple[int, int, bytes, bytes]]:
    columns = [table[name].to_pylist() for name in BLOCK_SCHEMA.names]
    return [(p, i, h, doc.encode()) for p, i, h, doc in zip(*columns, strict=True)]


def frames(blocks: list[Block]) -> list[tuple[int, int, bytes, bytes]]:
    return [(b.partition, i, h, body) for b in blocks for i, h, body in b.frames()]


LONG = [b'{"type":"task.submitted","payload":{"text":"' + b"x" * n + b'"}}' for n in range(5)]


@pytest.mark.parametrize("bodies", [
    LONG,
    [LONG[0], None, LONG[1], LONG[2], None, None, LONG[3]],  # runs cut by checkpoints
    [LONG[0], b"{}", b"null", b"", "{\"é\":\"😀\"}".encode(), b"x" * 12, b"y" * 13],  # short
])
def test_every_event_comes_out_as_stored(bodies: list[bytes | None]) -> None:
    blocks = [block(0, bodies), block(3, list(reversed(bodies)), first_index=40)]
    table = blocks_to_arrow(blocks)
    table.validate(full=True)
    assert table.schema == BLOCK_SCHEMA
    assert rows(table) == frames(blocks)


def test_a_split_block_keeps_its_events() -> None:
    head, tail = block(1, [LONG[0], None, LONG[1], LONG[2], LONG[3]]).split(2)
    assert rows(blocks_to_arrow([tail, head])) == frames([tail, head])


def test_bytes_that_are_not_utf8_refuse_the_batch() -> None:
    with pytest.raises(pa.ArrowInvalid):
        blocks_to_arrow([block(0, [LONG[0], b'{"text":"\xff\xfe not utf-8 at all"}'])])


def test_no_entries_make_an_empty_table() -> None:
    assert blocks_to_arrow([block(0, [None])]).num_rows == 0
