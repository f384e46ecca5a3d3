"""Segment files of one partition, writer side: append, fsync, roll, and repair on open.

Crash story: every append reaches the OS with one write() before `append` returns (so a
killed process loses nothing it acknowledged); checkpoints fdatasync the segment (so a power
cut loses at most the entries after the last checkpoint). On open, the last segment is read
frame by frame. A bad frame at the very end (file ends inside it, the last frame's hash fails,
or only zero bytes follow) is a torn tail: its bytes are copied to quarantine/, fsynced, then
cut, and the caller records a ``ledger.tail_truncated`` event. A bad frame with good data after
it is not a crash artefact: open refuses with ``ledger.corrupt`` and nothing is cut.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError, NoteError
from ledger.layout import (
    HEAD_SIZE,
    LEAF_HEAD,
    LEAF_HEAD_SIZE,
    LEAF_VERSION,
    T_CHECKPOINT,
    T_ENTRY,
    ZERO_HASH,
    fsync_dir,
    list_segments,
    read_frames,
    segment_name,
)

ZERO_CHECK_LIMIT = 64 * 1024 * 1024


@dataclass
class TailState:
    """What the last segment(s) say about the end of the chain."""

    size: int = 0
    last_hash: bytes = ZERO_HASH
    last_checkpoint: str | None = None
    checkpoint_size: int = 0
    cut: dict[str, Any] | None = None
    segment_bytes: int = 0
    key_event_indices: list[int] = field(default_factory=list)


class SegmentWriter:
    def __init__(self, pdir: Path, partition: int) -> None:
        self.dir = pdir
        self.partition = partition
        self.fd: int | None = None
        self.path: Path | None = None
        self.first = 0  # first entry index of the current segment
        self.bytes = 0

    # ---- open and repair ----------------------------------------------------------------------

    def open(self) -> TailState:
        self.dir.mkdir(parents=True, exist_ok=True)
        segs = list_segments(self.dir)
        if not segs:
            self._create(0)
            return TailState()
        last_first, last_path = segs[-1]
        state = self._scan(last_first, last_path, repair=True)
        if state.size == last_first and last_first > 0:
            # A fresh segment without entries yet: the chain head is in the segment before.
            if len(segs) < 2:
                self._corrupt(last_path, 0, last_first, "segment starts after a missing one")
            prev = self._scan(*segs[-2], repair=False)
            if prev.size != last_first:
                self._corrupt(last_path, 0, last_first, "segment does not follow the one before")
            state.last_hash = prev.last_hash
            if state.last_checkpoint is None:
                state.last_checkpoint = prev.last_checkpoint
                state.checkpoint_size = prev.checkpoint_size
        self.first, self.path = segs[-1]
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.bytes = os.fstat(self.fd).st_size
        return state

    def _scan(self, first: int, path: Path, *, repair: bool) -> TailState:
        state = TailState(size=first, last_hash=ZERO_HASH if first == 0 else b"")
        expected = first
        for off, digest, tail in read_frames(path):
            problem: str | None = None
            if digest is None:
                problem = str(tail)
            elif sha256(tail).digest() != digest:
                problem = "hash"
            if problem is not None:
                assert isinstance(tail, (bytes, str))
                state.cut = self._cut(path, off, problem, expected, repair=repair)
                break
            assert isinstance(tail, bytes)
            kind = tail[0]
            if kind == T_ENTRY:
                if len(tail) < LEAF_HEAD_SIZE:
                    self._corrupt(path, off, expected, "entry shorter than its header")
                _, version, ekind, part, index, prev = LEAF_HEAD.unpack_from(tail)
                if version != LEAF_VERSION or ekind > 1 or part != self.partition:
                    self._corrupt(path, off, expected, "bad entry header")
                if index != expected:
                    self._corrupt(path, off, expected, f"entry index {index}, expected {expected}")
                if state.last_hash and prev != state.last_hash:
                    self._corrupt(path, off, expected, "entry does not link to its predecessor")
                if ekind == 1:
                    state.key_event_indices.append(index)
                state.last_hash = digest
                expected += 1
            elif kind == T_CHECKPOINT:
                try:
                    cp = Checkpoint.parse(tail[1:].decode())
                except (NoteError, UnicodeDecodeError):
                    self._corrupt(path, off, expected, "unreadable checkpoint")
                if cp.size != expected:
                    self._corrupt(path, off, expected, f"checkpoint size {cp.size} != {expected}")
                state.last_checkpoint = tail[1:].decode()
                state.checkpoint_size = cp.size
            else:
                self._corrupt(path, off, expected, f"unknown frame type {kind}")
        state.size = expected
        state.segment_bytes = path.stat().st_size
        return state

    def _corrupt(self, path: Path, off: int, index: int, why: str) -> None:
        raise LedgerError(
            f"{path.name} at byte {off} (entry {index}): {why}; refusing to open. "
            "Run `certify ledger verify` and restore from a copy.",
            code="ledger.corrupt",
            partition=self.partition,
            index=index,
            segment=path.name,
            offset=off,
        )

    def _cut(
        self, path: Path, off: int, problem: str, index: int, *, repair: bool
    ) -> dict[str, Any]:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(off)
            rest = f.read(min(size - off, ZERO_CHECK_LIMIT + 1))
        torn = problem == "short" or not rest.strip(b"\x00") or rest[HEAD_SIZE:] == b""
        if problem == "hash" and not torn:
            length = int.from_bytes(rest[:4], "big")
            torn = off + HEAD_SIZE + length == size  # the bad frame is the last one
        if problem == "length" and not torn:
            torn = not rest[4:].strip(b"\x00")
        if not torn or not repair:
            self._corrupt(path, off, index, f"bad frame ({problem}) followed by more data")
        qdir = self.dir / "quarantine"
        qdir.mkdir(exist_ok=True)
        qpath = qdir / f"{path.stem}-{off}.bin"
        with open(qpath, "wb") as q:
            q.write(rest)
            q.flush()
            os.fsync(q.fileno())
        fsync_dir(qdir)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, off)
            os.fsync(fd)
        finally:
            os.close(fd)
        return {
            "segment": path.name,
            "offset": off,
            "bytes_cut": len(rest),
            "sha256": sha256(rest).hexdigest(),
            "reason": problem,
            "quarantine": f"quarantine/{qpath.name}",
            "next_index": index,
        }

    # ---- writing ------------------------------------------------------------------------------

    def _create(self, first_index: int) -> None:
        path = self.dir / segment_name(first_index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        fsync_dir(self.dir)
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.path, self.bytes, self.first = fd, path, 0, first_index

    def write(self, data: bytes) -> None:
        assert self.fd is not None
        try:
            done = os.write(self.fd, data)
            if done != len(data):  # rare: a short write; finish it
                view = memoryview(data)
                while done < len(view):
                    done += os.write(self.fd, view[done:])
        except OSError as exc:
            # Never leave half a frame behind a reported failure.
            os.ftruncate(self.fd, self.bytes)
            raise LedgerError(f"write failed: {exc}", code="ledger.io_error") from exc
        self.bytes += done

    def sync(self) -> None:
        assert self.fd is not None
        os.fdatasync(self.fd)

    def roll(self, first_index: int) -> None:
        """Start a new segment whose first entry will be `first_index` (after a checkpoint)."""
        self.sync()
        self._create(first_index)

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
