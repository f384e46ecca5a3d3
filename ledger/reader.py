"""Reading entries back: `iter_entries` for projections and exports, `read_entry` for proofs.

Readers take no lock and may run while the writer appends: a frame still being written at
the end of the last segment is simply not yielded yet. Each frame's hash is checked (a cheap
checksum); full verification is `ledger.verify`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

from ledger.errors import LedgerError
from ledger.layout import (
    LEAF_HEAD,
    LEAF_HEAD_SIZE,
    SEEK_RECORD,
    T_ENTRY,
    Entry,
    list_segments,
    partition_dir,
    read_frames,
)


def iter_raw(
    pdir: Path, partition: int, start: int = 0, *, check: bool = True
) -> Iterator[tuple[int, bytes, int, bytes, bytes]]:
    """(index, leaf hash, kind, prev, event bytes) of entries >= start, in order."""
    segs = list_segments(pdir)
    first_pos = max((i for i, (f, _) in enumerate(segs) if f <= start), default=0)
    offset = _seek(pdir, segs, first_pos, start)
    for pos in range(first_pos, len(segs)):
        path = segs[pos][1]
        is_last = pos == len(segs) - 1
        for off, digest, tail in read_frames(path, offset if pos == first_pos else 0):
            if digest is None:
                if is_last and tail == "short":
                    return  # the live edge (or a torn tail the writer will repair)
                raise LedgerError(
                    f"{path.name} byte {off}: bad frame ({tail})",
                    code="ledger.corrupt",
                    partition=partition,
                )
            assert isinstance(tail, bytes)
            if tail[0] != T_ENTRY:
                continue
            _, _, kind, _, index, prev = LEAF_HEAD.unpack_from(tail)
            if index < start:
                continue
            if check and sha256(tail).digest() != digest:
                if is_last and off + 36 + len(tail) >= path.stat().st_size:
                    return  # a write still landing at the live edge
                raise LedgerError(
                    f"{path.name} byte {off}: entry {index} fails its hash",
                    code="ledger.corrupt",
                    partition=partition,
                    index=index,
                )
            yield index, digest, kind, prev, tail[LEAF_HEAD_SIZE:]


def _seek(pdir: Path, segs: list[tuple[int, Path]], first_pos: int, start: int) -> int:
    """Byte offset in segs[first_pos] to start reading at for entry `start` (0 if unknown).

    Uses the hints in index/seek.bin; a hint counts only if the frame found there is an entry
    with the promised index whose hash holds, so a stale or damaged hint just costs a scan.
    """
    if start == 0 or not segs:
        return 0
    try:
        raw = (pdir / "index" / "seek.bin").read_bytes()
    except OSError:
        return 0
    seg_first, path = segs[first_pos]
    size = SEEK_RECORD.size
    for k in range(len(raw) // size - 1, -1, -1):
        index, first, offset = SEEK_RECORD.unpack_from(raw, k * size)
        if first != seg_first or index > start:
            continue
        if _entry_at(path, offset) == index:
            return offset
    return 0


def _entry_at(path: Path, offset: int) -> int | None:
    for _, digest, tail in read_frames(path, offset):
        ok = isinstance(tail, bytes) and tail[:1] == b"\x00" and len(tail) >= LEAF_HEAD_SIZE
        if ok and digest is not None and sha256(tail).digest() == digest:
            return int(LEAF_HEAD.unpack_from(tail)[4])
        return None
    return None


def iter_entries(directory: Path, partition: int, start: int = 0) -> Iterator[Entry]:
    """Entries of one partition from index `start`, with their events parsed."""
    pdir = partition_dir(Path(directory), partition)
    if not pdir.is_dir():
        raise LedgerError(f"no partition {partition} in {directory}", code="ledger.not_found")
    loads = json.loads
    for index, digest, kind, prev, body in iter_raw(pdir, partition, start):
        yield Entry(partition, index, digest, prev, loads(body), kind)


def read_entry(pdir: Path, partition: int, index: int) -> Entry:
    for i, digest, kind, prev, body in iter_raw(pdir, partition, index):
        if i != index:
            break
        return Entry(partition, i, digest, prev, json.loads(body), kind)
    raise LedgerError(
        f"partition {partition} has no entry {index}",
        code="ledger.not_found",
        partition=partition,
        index=index,
    )
