"""On-disk format: folder layout, frames and leaf bytes. Documented in ledger/README.md.

    <ledger>/LEDGER.json                 {"format", "origin", "partitions"}
    <ledger>/LOCK                        flock of the one writer
    <ledger>/p<N>/seg-<first index, 20 digits>.wcl   segments: frames, append-only
    <ledger>/p<N>/checkpoint             latest signed checkpoint (a copy; frames are the truth)
    <ledger>/p<N>/keys.json              key events seen so far (a copy; frames are the truth)
    <ledger>/p<N>/index/                 side files: tree levels, event ids, watermark
    <ledger>/p<N>/quarantine/            bytes cut from a torn tail, kept for inspection

frame      = u32 BE length of tail || SHA-256(tail) || tail
entry tail = 0x00 || leaf_data            (so the stored hash IS the RFC 9162 leaf hash)
leaf_data  = version 0x01 || kind (0x00 event, 0x01 ledger key/repair event)
             || u32 BE partition || u64 BE index || prev leaf hash (32 bytes, zeros at 0)
             || JCS(event)
checkpoint tail = 0x43 ("C") || signed note (UTF-8)
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError

FORMAT = "worker-certification-ledger/1"
FRAME_HEAD = struct.Struct(">I32s")
HEAD_SIZE = FRAME_HEAD.size  # 36
LEAF_HEAD = struct.Struct(">BBBIQ32s")  # 0x00, version, kind, partition, index, prev
LEAF_HEAD_SIZE = LEAF_HEAD.size  # 47
T_ENTRY = 0x00
T_CHECKPOINT = 0x43
LEAF_VERSION = 1
KIND_EVENT = 0
KIND_LEDGER = 1
ZERO_HASH = bytes(32)
MAX_TAIL = 16 * 1024 * 1024
SEGMENT_PREFIX = "seg-"
SEGMENT_SUFFIX = ".wcl"
READ_CHUNK = 4 * 1024 * 1024
SEEK_EVERY = 4096  # every 4096th entry's (index, segment first index, byte offset) is indexed
SEEK_RECORD = struct.Struct(">QQQ")


@dataclass(frozen=True)
class Entry:
    partition: int
    index: int
    leaf_hash: bytes
    prev_hash: bytes
    event: dict[str, Any]
    kind: int = KIND_EVENT


def partition_dir(directory: Path, partition: int) -> Path:
    return Path(directory) / f"p{partition}"


def segment_name(first_index: int) -> str:
    return f"{SEGMENT_PREFIX}{first_index:020d}{SEGMENT_SUFFIX}"


def list_segments(pdir: Path) -> list[tuple[int, Path]]:
    """Segments of a partition in order, with the first entry index their name promises."""
    out = []
    if not pdir.is_dir():
        return out
    for path in pdir.iterdir():
        name = path.name
        if name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX):
            digits = name[len(SEGMENT_PREFIX) : -len(SEGMENT_SUFFIX)]
            if len(digits) == 20 and digits.isdigit():
                out.append((int(digits), path))
    out.sort()
    return out


def entry_frame(
    partition: int, index: int, prev: bytes, kind: int, body: bytes
) -> tuple[bytes, bytes]:
    tail = LEAF_HEAD.pack(T_ENTRY, LEAF_VERSION, kind, partition, index, prev) + body
    digest = sha256(tail).digest()
    return FRAME_HEAD.pack(len(tail), digest) + tail, digest


def checkpoint_frame(note: str) -> bytes:
    tail = bytes([T_CHECKPOINT]) + note.encode()
    return FRAME_HEAD.pack(len(tail), sha256(tail).digest()) + tail


# A frame as read back: (offset, stored hash, tail). Problems are reported with hash None and
# the tail replaced by a reason: "short" (file ends inside the frame) or "length" (impossible).
RawFrame = tuple[int, bytes | None, bytes | str]


def read_frames(path: Path, offset: int = 0) -> Iterator[RawFrame]:
    """Yield the frames of one segment file from `offset`, reading in large chunks."""
    with open(path, "rb") as f:
        f.seek(offset)
        buf, base, pos, eof = b"", offset, 0, False  # base: file offset of buf[0]
        while True:
            avail = len(buf) - pos
            need = HEAD_SIZE
            if avail >= HEAD_SIZE:
                length, digest = FRAME_HEAD.unpack_from(buf, pos)
                if length == 0 or length > MAX_TAIL:
                    yield base + pos, None, "length"
                    return
                need = HEAD_SIZE + length
                if avail >= need:
                    start = pos + HEAD_SIZE
                    yield base + pos, digest, buf[start : start + length]
                    pos += need
                    continue
            if eof:
                if avail:
                    yield base + pos, None, "short"
                return
            more = f.read(max(READ_CHUNK, need))
            eof = not more
            buf, base, pos = buf[pos:] + more, base + pos, 0


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "LEDGER.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LedgerError(f"no ledger at {directory}", code="ledger.not_found") from exc
    except (ValueError, OSError) as exc:
        raise LedgerError(f"unreadable {path}: {exc}", code="ledger.corrupt") from exc
    if meta.get("format") != FORMAT:
        raise LedgerError(f"unknown ledger format {meta.get('format')!r}", code="ledger.corrupt")
    return meta


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` all at once (write a temp file, fsync it, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
