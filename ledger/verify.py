"""Offline verification: only the ledger files and the public keys are needed.

For each partition, stream every frame once (memory stays flat): check each frame's hash,
each entry's header (version, partition, index = position, prev = hash of the entry before),
replay key events into the key registry, and at each checkpoint frame check its origin and
size, its signature by a registry key valid at that size, and its root against the Merkle
tree of the entries so far. The first failure raises VerificationError(partition, index,
reason). Trust: see README "Trust model".
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint, partition_origin
from ledger.errors import LedgerError, NoteError, ProofError, VerificationError
from ledger.keyring import KeyEventError, Keyring
from ledger.keys import VerifierKey
from ledger.layout import (
    HEAD_SIZE,
    LEAF_HEAD,
    LEAF_HEAD_SIZE,
    LEAF_VERSION,
    MAX_TAIL,
    READ_CHUNK,
    T_CHECKPOINT,
    T_ENTRY,
    ZERO_HASH,
    list_segments,
    partition_dir,
    read_meta,
)
from ledger.merkle import TreeState, inclusion_path, verify_inclusion
from ledger.note import verify_note
from ledger.sidefiles import NodeFiles

BATCH = 8192
_log = logging.getLogger(__name__)
_EVENT_HEAD = LEAF_HEAD  # packs the 47-byte header an event entry must have
_LEN = struct.Struct(">I")


class _StreamState:
    __slots__ = (
        "cp_count",
        "cp_size",
        "expected",
        "last",
        "latest",
        "pending",
        "skipping",
        "start",
        "tree",
    )

    def __init__(self, start: int, tree: TreeState, last: bytes) -> None:
        self.start = self.expected = self.cp_size = start
        self.tree = tree
        self.last = last
        self.pending: list[bytes] = []
        self.cp_count = 0
        self.latest: str | None = None
        self.skipping = False


@dataclass(frozen=True)
class PartitionReport:
    partition: int
    origin: str
    size: int
    verified_from: int
    checkpoints: int
    checkpoint_size: int
    latest_checkpoint: str | None
    unsigned_tail: int
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    anchored: bool
    entries: int
    partitions: list[PartitionReport]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    directory: Path,
    *,
    trusted: list[str] | None = None,
    partition: int | None = None,
    since_checkpoint: str | None = None,
    allow_unsigned_tail: bool = False,
    origin: str | None = None,
    workers: int = 1,
) -> VerifyReport:
    """Verify the ledger; return a report or raise VerificationError at the first bad entry.

    trusted: verifier keys (vkey strings) to anchor trust. None = trust on first use: the
      genesis key recorded in each partition (the report says anchored=False).
    since_checkpoint: a checkpoint note you kept from an earlier audit. Its partition is
      checked from that size on (fast, using side files) after proving the ledger still has
      exactly that tree; falls back to a full pass if side files cannot show it.
    allow_unsigned_tail: accept entries after the last checkpoint (a live ledger).
    origin: the origin you expect (default: what LEDGER.json says).
    workers: partitions verified in parallel processes (each streams one partition).
    """
    directory = Path(directory)
    try:
        meta = read_meta(directory)
    except LedgerError as exc:
        raise VerificationError("missing", str(exc), partition=partition or 0, index=0) from exc
    origin = origin or meta["origin"]
    anchors = [VerifierKey.parse(v) for v in trusted] if trusted is not None else None
    if anchors is None:
        _log.warning("verify without trusted keys: trusting each partition's genesis key (TOFU)")
    if anchors is not None and not anchors:
        raise LedgerError("trusted is an empty list", code="ledger.bad_argument")
    parts = range(int(meta["partitions"])) if partition is None else [partition]
    since: Checkpoint | None = None
    if since_checkpoint is not None:
        since = Checkpoint.parse(since_checkpoint)
        part = _partition_of(since.origin, origin)
        if partition is not None and part != partition:
            raise LedgerError(
                "since_checkpoint is for another partition", code="ledger.bad_argument"
            )
        parts = [part]
    jobs = [
        (
            directory,
            p,
            origin,
            trusted,
            allow_unsigned_tail,
            since_checkpoint if since is not None else None,
        )
        for p in parts
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(_verify_partition, *job) for job in jobs]
            reports = [f.result() for f in futures]  # the first bad partition raises first
    else:
        reports = [_verify_partition(*job) for job in jobs]
    return VerifyReport(
        True, anchors is not None, sum(r.size - r.verified_from for r in reports), reports
    )


def _verify_partition(
    directory: Path,
    p: int,
    origin: str,
    trusted: list[str] | None,
    allow_unsigned_tail: bool,
    since_note: str | None,
) -> PartitionReport:
    anchors = [VerifierKey.parse(v) for v in trusted] if trusted is not None else None
    return _PartitionVerifier(directory, p, origin, anchors, allow_unsigned_tail).run(since_note)


def _partition_of(cp_origin: str, origin: str) -> int:
    prefix = origin + "/p"
    digits = cp_origin[len(prefix) :]
    if not cp_origin.startswith(prefix) or not digits.isdigit():
        raise LedgerError(
            f"checkpoint origin {cp_origin!r} is not of ledger {origin!r}",
            code="ledger.bad_argument",
        )
    return int(digits)


class _PartitionVerifier:
    def __init__(
        self,
        directory: Path,
        p: int,
        origin: str,
        anchors: list[VerifierKey] | None,
        allow_unsigned_tail: bool,
    ) -> None:
        self.dir = partition_dir(directory, p)
        self.p = p
        self.origin_p = partition_origin(origin, p)
        self.anchors = anchors
        self.allow_unsigned_tail = allow_unsigned_tail
        self.keyring = Keyring(self.origin_p)
        self.checks: dict[int, tuple[str, str]] = {}  # size -> (note, where it came from)

    def fail(self, reason: str, index: int, message: str, **details: Any) -> VerificationError:
        return VerificationError(reason, message, partition=self.p, index=index, **details)

    def run(self, since_note: str | None) -> PartitionReport:
        segs = list_segments(self.dir)
        if not segs:
            raise self.fail("missing", 0, f"no segments in {self.dir}")
        copy = _read(self.dir / "checkpoint")
        if copy:  # a missing or empty copy (not fsynced before a power cut) says nothing
            try:
                self.checks.setdefault(Checkpoint.parse(copy).size, (copy, "checkpoint file"))
            except NoteError as exc:
                raise self.fail("bad_checkpoint", 0, f"checkpoint file: {exc}") from exc
        start = 0
        tree = TreeState()
        last = ZERO_HASH
        if since_note is not None:
            resumed = self._resume(since_note, segs)
            if resumed is None:
                size = Checkpoint.parse(since_note).size
                self.checks[size] = (since_note, "since_checkpoint")
            else:
                start, tree, last = resumed
        return self._stream(segs, start, tree, last)

    # ---- the full pass (from `start`) ---------------------------------------------------------

    def _stream(
        self, segs: list[tuple[int, Path]], start: int, tree: TreeState, last: bytes
    ) -> PartitionReport:
        st = _StreamState(start, tree, last)
        first_pos = max((i for i, (f, _) in enumerate(segs) if f <= start), default=0)
        st.skipping = start > segs[first_pos][0]  # resuming inside a segment
        for pos in range(first_pos, len(segs)):
            first, path = segs[pos]
            if first > st.expected:
                raise self.fail("gap", st.expected, f"segment {path.name} starts at {first}")
            self._segment(path, pos == len(segs) - 1, st)
        expected, cp_size = st.expected, st.cp_size
        st.tree.extend(st.pending)
        for size, (_, where) in sorted(self.checks.items()):
            if size > expected:
                raise self.fail(
                    "truncated", expected, f"{where} covers {size} entries, found {expected}"
                )
            if size > cp_size and where == "checkpoint file":
                # The writer fsyncs a checkpoint frame before it copies it to the file, so a
                # copy newer than the last frame means frames were cut off.
                raise self.fail(
                    "truncated",
                    expected,
                    f"{where} is at {size}, the last checkpoint frame at {cp_size}",
                )
        self._check_anchors(start)
        if expected > cp_size and not self.allow_unsigned_tail:
            raise self.fail(
                "unsigned_tail", cp_size, f"{expected - cp_size} entries after the last checkpoint"
            )
        return PartitionReport(
            self.p,
            self.origin_p,
            expected,
            start,
            st.cp_count,
            cp_size,
            st.latest,
            expected - cp_size,
            [r.key.vkey() for r in self.keyring.records.values()],
        )

    def _segment(self, path: Path, is_last: bool, st: _StreamState) -> None:
        """Check every frame of one segment file (the hot loop: keep it lean)."""
        p, pending = self.p, st.pending
        expected, last, skipping = st.expected, st.last, st.skipping
        stop = self._next_stop(st)
        head_of = _EVENT_HEAD.pack
        unpack_len = _LEN.unpack_from
        with open(path, "rb", buffering=0) as f:
            buf, pos, base = b"", 0, 0
            while True:
                chunk = f.read(READ_CHUNK)
                if chunk:
                    base += pos
                    buf = buf[pos:] + chunk
                    pos = 0
                n = len(buf)
                view = memoryview(buf)
                while pos + HEAD_SIZE <= n:
                    (length,) = unpack_len(buf, pos)
                    start = pos + HEAD_SIZE
                    end = start + length
                    if end > n or length == 0 or length > MAX_TAIL:
                        if length == 0 or length > MAX_TAIL:
                            raise self.fail(
                                "bad_frame",
                                expected,
                                f"{path.name} byte {base + pos}: impossible length",
                            )
                        break
                    digest = buf[pos + 4 : start]
                    if sha256(view[start:end]).digest() != digest:
                        if self._live_edge(is_last, end == n, f):
                            st.expected, st.last = expected, last
                            return
                        raise self.fail(
                            "bad_hash", expected, f"{path.name} byte {base + pos}: hash mismatch"
                        )
                    if not skipping and buf[start : start + LEAF_HEAD_SIZE] == head_of(
                        0, 1, 0, p, expected, last
                    ):
                        pending.append(digest)
                        last = digest
                        expected += 1
                        if expected >= stop:
                            st.expected, st.last = expected, last
                            self._act(st)
                            stop = self._next_stop(st)
                    else:
                        st.expected, st.last = expected, last
                        self._odd_frame(buf[start:end], digest, st)
                        expected, last, skipping = st.expected, st.last, st.skipping
                        stop = self._next_stop(st)
                    pos = end
                if not chunk:
                    st.expected, st.last = expected, last
                    if pos < n:
                        if self._live_edge(is_last, True, f):
                            return
                        reason = "torn_tail" if is_last else "bad_frame"
                        raise self.fail(
                            reason, expected, f"{path.name} byte {base + pos}: frame cut short"
                        )
                    return

    def _next_stop(self, st: _StreamState) -> int:
        """The next entry count at which the hot loop must call `_act`."""
        stop = st.expected + BATCH - len(st.pending)
        for size in self.checks:
            if st.expected < size < stop:
                stop = size
        return stop

    def _act(self, st: _StreamState) -> None:
        if st.expected in self.checks:
            self._flush(st)
            self._check_copy(st.expected, st.tree, st.cp_size)
        elif len(st.pending) >= BATCH:
            self._flush(st)

    def _live_edge(self, is_last: bool, at_end: bool, f: Any) -> bool:
        """With allow_unsigned_tail (a live ledger), a last frame still being written at the
        end of the last segment is where the ledger ends for now, not damage."""
        if not (self.allow_unsigned_tail and is_last and at_end):
            return False
        return f.read(1) == b""

    def _flush(self, st: _StreamState) -> None:
        st.tree.extend(st.pending)
        st.pending.clear()

    def _odd_frame(self, tail: bytes, digest: bytes, st: _StreamState) -> None:
        """Everything but a plain event entry at the expected place: key events, checkpoints,
        frames skipped while resuming, and every kind of damage."""
        expected = st.expected
        kind = tail[0]
        if kind == T_ENTRY:
            if len(tail) < LEAF_HEAD_SIZE:
                raise self.fail("bad_frame", expected, "entry shorter than its header")
            _, version, ekind, part, index, prev = LEAF_HEAD.unpack_from(tail)
            if st.skipping:
                if index < st.start:
                    return  # before the resume point (same segment)
                st.skipping = False
            if version != LEAF_VERSION or ekind > 1:
                raise self.fail("bad_frame", expected, f"entry version/kind {version}/{ekind}")
            if part != self.p:
                raise self.fail("bad_partition", expected, f"entry says partition {part}")
            if index != expected:
                reason = "gap" if index > expected else "reordered"
                raise self.fail(reason, expected, f"found entry {index}")
            if prev != st.last:
                raise self.fail("bad_link", expected, "prev is not the hash of the entry before")
            if ekind == 1:
                self._key_event(expected, tail[LEAF_HEAD_SIZE:])
            st.pending.append(digest)
            st.last = digest
            st.expected = expected = expected + 1
            if expected in self.checks:
                self._flush(st)
                self._check_copy(expected, st.tree, st.cp_size)
        elif kind == T_CHECKPOINT:
            if st.skipping:
                return
            self._flush(st)
            st.latest = self._checkpoint(tail, expected, st.tree, st.cp_size)
            st.cp_size, st.cp_count = expected, st.cp_count + 1
        else:
            raise self.fail("bad_frame", expected, f"unknown frame type {kind}")

    def _key_event(self, index: int, body: bytes) -> None:
        try:
            self.keyring.apply(index, json.loads(body))
        except (KeyEventError, ValueError) as exc:
            raise self.fail("bad_key_event", index, str(exc)) from exc

    def _checkpoint(self, tail: bytes, expected: int, tree: TreeState, cp_size: int) -> str:
        try:
            note = tail[1:].decode()
            cp = Checkpoint.parse(note)
        except (UnicodeDecodeError, NoteError) as exc:
            raise self.fail("bad_checkpoint", expected, f"unreadable checkpoint: {exc}") from exc
        if cp.origin != self.origin_p:
            raise self.fail("bad_checkpoint", expected, f"checkpoint origin {cp.origin!r}")
        if cp.size != expected:
            raise self.fail("bad_checkpoint", expected, f"checkpoint of size {cp.size} here")
        self._signed(note, cp.size, cp_size)
        if tree.root() != cp.root:
            raise self.fail("bad_root", cp_size, f"root differs from checkpoint {cp.size}")
        return note

    def _signed(self, note: str, size: int, cp_size: int) -> None:
        keys = self.keyring.signers_for(size)
        try:
            verify_note(note, keys)
        except NoteError as exc:
            raise self.fail("bad_signature", cp_size, f"checkpoint {size}: {exc}") from exc

    def _check_copy(self, size: int, tree: TreeState, cp_size: int) -> None:
        note, where = self.checks[size]
        cp = Checkpoint.parse(note)
        if cp.origin != self.origin_p:
            raise self.fail("bad_checkpoint", size, f"{where}: origin {cp.origin!r}")
        self._signed(note, size, cp_size)
        if tree.root() != cp.root:
            raise self.fail("bad_root", cp_size, f"{where}: root at {size} differs")

    def _check_anchors(self, start: int) -> None:
        if self.anchors is None:
            return
        for anchor in self.anchors:
            if self.keyring.find(anchor) is not None:
                return
        raise self.fail(
            "untrusted_keys",
            start,
            "none of the trusted keys is in this partition's key registry: "
            + ", ".join(r.key.vkey() for r in self.keyring.records.values()),
        )

    # ---- incremental: resume from a kept checkpoint -------------------------------------------

    def _resume(
        self, note: str, segs: list[tuple[int, Path]]
    ) -> tuple[int, TreeState, bytes] | None:
        """Prove from side files that the ledger has the kept checkpoint's tree; then resume."""
        if self.anchors is None:
            return None  # without anchors, do the full pass with the kept root as a check
        try:
            cp, _ = Checkpoint.verify(note, self.anchors)
        except NoteError:
            return None  # e.g. signed by an older key of the chain: the full pass decides
        if cp.origin != self.origin_p or cp.size == 0:
            raise LedgerError(
                "since_checkpoint is not a checkpoint of this partition", code="ledger.bad_argument"
            )
        nodes = NodeFiles(self.dir / "index")
        try:
            tree = TreeState.at(cp.size, nodes.node)
            if tree.root() != cp.root:
                return None
            last = nodes.node(0, cp.size - 1)
            verify_inclusion(
                cp.size - 1,
                cp.size,
                last,
                inclusion_path(cp.size - 1, cp.size, nodes.node),
                cp.root,
            )
            self._replay_keys(cp, nodes)
        except (OSError, IndexError, ProofError, LedgerError, ValueError):
            return None
        finally:
            nodes.close()
        return cp.size, tree, last

    def _replay_keys(self, cp: Checkpoint, nodes: NodeFiles) -> None:
        """Key events before the resume point, from keys.json, each proven included."""
        from ledger.reader import read_entry

        data = json.loads((self.dir / "keys.json").read_text())
        for index, _ in data["events"]:
            if index >= cp.size:
                continue
            entry = read_entry(self.dir, self.p, index)
            verify_inclusion(
                index, cp.size, entry.leaf_hash, inclusion_path(index, cp.size, nodes.node), cp.root
            )
            self.keyring.apply(index, entry.event)
        if self.anchors is not None and not any(self.keyring.find(a) for a in self.anchors):
            for anchor in self.anchors:  # the anchor signed the kept checkpoint: trust it
                from ledger.keyring import KeyRecord

                self.keyring.records[(anchor.name, anchor.key_id)] = KeyRecord(anchor, cp.size)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
