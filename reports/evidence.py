"""The ledger side of a report: which signed checkpoints it is computed from, inclusion proofs
for its evidence entries, consistency proofs from the previous report's checkpoints, and the
stored bytes of single entries (for the audit viewer).

A report covers, per ledger partition, exactly the entries below the size of one signed
checkpoint. That checkpoint must not be ahead of the projections (the report reads DuckDB), so
`choose_checkpoints` takes, per partition, the newest checkpoint whose size the projections
have reached: the latest `checkpoint` file when it is not ahead, else one remembered in a
`CheckpointBook` (the web app polls the files), else one found by scanning the partition's
last segments for checkpoint frames.

Every checkpoint is verified (C2SP signed note, Ed25519) against the partition's key registry
(`keys.json`, itself a chain of double-signed key events, checked by `ledger.keyring`); with
`trusted` keys, one of them must be in that registry (the report is then "anchored").
Proofs are RFC 9162 paths over the ledger's stored tree levels; every one is checked against
the checkpoint's root before it is handed out.
"""

from __future__ import annotations

import base64
import json
import mmap
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint, partition_origin
from ledger.errors import LedgerError, NoteError
from ledger.keyring import KeyEventError, Keyring
from ledger.keys import VerifierKey
from ledger.layout import (
    LEAF_HEAD,
    LEAF_VERSION,
    T_CHECKPOINT,
    T_ENTRY,
    list_segments,
    partition_dir,
    read_frames,
    read_meta,
)
from ledger.merkle import (
    HASH_SIZE,
    TreeState,
    consistency_path,
    inclusion_path,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.proofs import latest_checkpoint
from ledger.reader import iter_raw
from ledger.sidefiles import level_path
from reports import multiproof

BOOK_DEPTH = 256  # checkpoints remembered per partition


class EvidenceError(Exception):
    """The ledger cannot back a report: `code` is stable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class SignedCheckpoint:
    partition: int
    origin: str
    size: int
    root: bytes
    note: str
    signed_by: tuple[str, ...]  # verifier keys whose signatures verified

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "origin": self.origin, "size": self.size,
                "root": b64(self.root), "note": self.note, "signed_by": list(self.signed_by)}


class CheckpointBook:
    """Checkpoint notes seen per partition, by size (the web app calls `observe` on a timer,
    so a report can use a checkpoint the projections have reached even when a newer one
    exists)."""

    def __init__(self) -> None:
        self._notes: dict[int, dict[int, str]] = {}
        self._lock = threading.Lock()

    def add(self, partition: int, note: str) -> None:
        try:
            size = Checkpoint.parse(note).size
        except NoteError:
            return
        with self._lock:
            notes = self._notes.setdefault(partition, {})
            notes[size] = note
            while len(notes) > BOOK_DEPTH:
                del notes[min(notes)]

    def observe(self, ledger_dir: Path) -> None:
        for partition in range(partitions(ledger_dir)):
            note = latest_checkpoint(ledger_dir, partition)
            if note:
                self.add(partition, note)

    def best(self, partition: int, at_most: int) -> str | None:
        with self._lock:
            sizes = [s for s in self._notes.get(partition, {}) if s <= at_most]
            return self._notes[partition][max(sizes)] if sizes else None


def partitions(ledger_dir: Path) -> int:
    try:
        return int(read_meta(Path(ledger_dir))["partitions"])
    except (LedgerError, KeyError, ValueError, OSError) as error:
        raise EvidenceError(f"{ledger_dir}: not a ledger ({error})", "reports.no_ledger"
                            ) from None


def origin_of(ledger_dir: Path) -> str:
    return str(read_meta(Path(ledger_dir))["origin"])


def keyring(ledger_dir: Path, partition: int) -> Keyring:
    """The partition's key registry from its keys.json (every key event re-checked)."""
    origin_p = partition_origin(origin_of(ledger_dir), partition)
    path = partition_dir(Path(ledger_dir), partition) / "keys.json"
    try:
        data = json.loads(path.read_text())
        return Keyring.from_events(origin_p, [(int(i), e) for i, e in data["events"]])
    except (OSError, ValueError, KeyError, TypeError, KeyEventError) as error:
        raise EvidenceError(f"partition {partition}: key registry unreadable ({error})",
                            "reports.key_registry") from None


def verify_checkpoint(ledger_dir: Path, partition: int, note: str,
                      trusted: Iterable[str] = ()) -> SignedCheckpoint:
    """Parse and verify one checkpoint note; EvidenceError if it does not verify."""
    ring = keyring(ledger_dir, partition)
    try:
        size = Checkpoint.parse(note).size
        cp, good = Checkpoint.verify(note, ring.signers_for(size))
    except NoteError as error:
        raise EvidenceError(f"partition {partition}: checkpoint does not verify ({error})",
                            "reports.bad_checkpoint") from None
    expected = partition_origin(origin_of(ledger_dir), partition)
    if cp.origin != expected:
        raise EvidenceError(f"partition {partition}: checkpoint origin {cp.origin!r} is not "
                            f"{expected!r}", "reports.bad_checkpoint")
    anchors = [VerifierKey.parse(v) for v in trusted]
    if anchors and not any(ring.find(a) for a in anchors):
        raise EvidenceError(f"partition {partition}: none of the trusted keys is in the key "
                            "registry", "reports.untrusted_keys")
    return SignedCheckpoint(partition, cp.origin, cp.size, cp.root, note,
                            tuple(k.vkey() for k in good))


def scan_checkpoint(ledger_dir: Path, partition: int, at_most: int) -> str | None:
    """The newest checkpoint frame of size <= at_most, reading the partition's segments from
    the one that holds entry at_most - 1 backwards (the slow path: one segment, usually)."""
    segs = list_segments(partition_dir(Path(ledger_dir), partition))
    start = max((i for i, (first, _) in enumerate(segs) if first <= max(at_most - 1, 0)),
                default=0)
    for pos in range(start, -1, -1):
        best: tuple[int, str] | None = None
        for _, digest, tail in read_frames(segs[pos][1]):
            if digest is None or not isinstance(tail, bytes) or tail[0] != T_CHECKPOINT:
                continue
            note = tail[1:].decode("utf-8", "replace")
            try:
                size = Checkpoint.parse(note).size
            except NoteError:
                continue
            if size <= at_most and (best is None or size >= best[0]):
                best = (size, note)
        if best is not None:
            return best[1]
    return None


def choose_checkpoints(ledger_dir: Path, projected: dict[int, int], *,
                       trusted: Iterable[str] = (), book: CheckpointBook | None = None
                       ) -> dict[int, SignedCheckpoint]:
    """Per partition, the newest verified checkpoint not ahead of the projections."""
    trusted = list(trusted)
    chosen: dict[int, SignedCheckpoint] = {}
    for partition in range(partitions(ledger_dir)):
        reached = projected.get(partition, 0)
        note = latest_checkpoint(ledger_dir, partition)
        if note and book is not None:
            book.add(partition, note)
        if note is None or Checkpoint.parse(note).size > reached:
            note = (book.best(partition, reached) if book is not None else None) or \
                scan_checkpoint(ledger_dir, partition, reached)
        if note is None:
            raise EvidenceError(
                f"partition {partition}: no signed checkpoint within the {reached} projected "
                "entries (project the ledger first: certify projections rebuild)",
                "reports.no_checkpoint")
        chosen[partition] = verify_checkpoint(ledger_dir, partition, note, trusted)
    return chosen


@dataclass
class Prover:
    """Inclusion proofs of one partition against one checkpoint, from the stored tree levels
    (memory-mapped: a proof reads ~log2(n) nodes)."""

    ledger_dir: Path
    checkpoint: SignedCheckpoint
    _maps: dict[int, mmap.mmap] = field(default_factory=dict)
    _files: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._dir = partition_dir(Path(self.ledger_dir), self.checkpoint.partition) / "index"
        size = self.checkpoint.size
        try:
            root = TreeState.at(size, self.node).root() if size else b""
        except (OSError, IndexError, ValueError):
            root = b""
        if size and root != self.checkpoint.root:
            self.close()
            raise EvidenceError(f"partition {self.checkpoint.partition}: the stored tree does "
                                "not give the checkpoint's root (open the ledger with its "
                                "writer once to repair the index)", "reports.index_corrupt")

    def _map(self, level: int) -> mmap.mmap:
        mapped = self._maps.get(level)
        if mapped is None:
            handle = open(level_path(self._dir, level), "rb")  # noqa: SIM115 - closed in close()
            self._files.append(handle)
            mapped = self._maps[level] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return mapped

    def node(self, level: int, index: int) -> bytes:
        mapped = self._map(level)
        start = index * HASH_SIZE
        value = mapped[start:start + HASH_SIZE]
        if len(value) != HASH_SIZE:
            raise IndexError(f"level {level} has no node {index}")
        return value

    def leaf(self, index: int) -> bytes:
        return self.node(0, index)

    def path(self, index: int) -> list[bytes]:
        size = self.checkpoint.size
        try:
            path = inclusion_path(index, size, self.node)
            verify_inclusion(index, size, self.leaf(index), path, self.checkpoint.root)
        except (OSError, IndexError, ValueError, LedgerError) as error:
            raise EvidenceError(f"partition {self.checkpoint.partition} entry {index}: no "
                                f"proof ({error})", "reports.no_proof") from None
        return path

    def multiproof(self, indexes: Iterable[int]) -> list[str]:
        """One Merkle multiproof (reports/multiproof.py; base64 hashes) of many entries against
        the checkpoint's root, from the stored tree levels; the root it leads to is compared
        with the checkpoint's before it is handed out."""
        wanted = sorted(set(indexes))
        size = self.checkpoint.size
        if not wanted:
            return []
        if wanted[0] < 0 or wanted[-1] >= size:
            raise EvidenceError(f"partition {self.checkpoint.partition}: entries outside the "
                                f"checkpoint's tree of {size}", "reports.no_proof")
        nodes: list[bytes] = []
        node = self.node

        def absent(lo: int, hi: int) -> bytes:
            value = range_hash(lo, hi, node)
            nodes.append(value)
            return value

        try:
            top = multiproof.walk(size, wanted, lambda i: node(0, i), absent)
        except (OSError, IndexError, ValueError, LedgerError) as error:
            raise EvidenceError(f"partition {self.checkpoint.partition}: no proofs ({error})",
                                "reports.no_proof") from None
        if top != self.checkpoint.root:
            raise EvidenceError(f"partition {self.checkpoint.partition}: the stored tree does "
                                "not lead to the checkpoint's root", "reports.no_proof")
        return [b64(h) for h in nodes]

    def leaves_hex(self, indexes: Iterable[int]) -> dict[int, str]:
        """The stored leaf hashes (hex) of some entries."""
        try:
            level = self._map(0)
        except OSError as error:
            raise EvidenceError(f"partition {self.checkpoint.partition}: no leaf hashes "
                                f"({error})", "reports.no_proof") from None
        return {i: level[i * HASH_SIZE:(i + 1) * HASH_SIZE].hex() for i in indexes}

    def close(self) -> None:
        for mapped in self._maps.values():
            mapped.close()
        for handle in self._files:
            handle.close()
        self._maps.clear()
        self._files.clear()


def consistency(ledger_dir: Path, old: SignedCheckpoint, new: SignedCheckpoint
                ) -> dict[str, Any]:
    """The RFC 9162 consistency proof from `old` to `new` (same partition), checked against
    both signed roots."""
    prover = Prover(ledger_dir, new)
    try:
        if old.size > new.size:
            raise EvidenceError(f"partition {new.partition}: the ledger is smaller ({new.size}) "
                                f"than at the previous report ({old.size})",
                                "reports.inconsistent")
        try:
            path = consistency_path(old.size, new.size, prover.node) \
                if old.size < new.size else []
            verify_consistency(old.size, new.size, old.root, new.root, path)
        except (LedgerError, OSError, IndexError, ValueError) as error:
            raise EvidenceError(f"partition {new.partition}: not consistent with the previous "
                                f"report's checkpoint ({error})", "reports.inconsistent"
                                ) from None
    finally:
        prover.close()
    return {"partition": new.partition, "size1": old.size, "size2": new.size,
            "root1": b64(old.root), "root2": b64(new.root), "proof": [b64(h) for h in path],
            "checkpoint1": old.note, "checkpoint2": new.note}


def leaf_data(ledger_dir: Path, partition: int, indexes: Iterable[int]) -> dict[int, bytes]:
    """The stored leaf data (header + canonical event bytes) of some entries, in one pass."""
    wanted = sorted(set(indexes))
    if not wanted:
        return {}
    pdir = partition_dir(Path(ledger_dir), partition)
    out: dict[int, bytes] = {}
    pending = set(wanted)
    for index, _, kind, prev, body in iter_raw(pdir, partition, wanted[0]):
        if index in pending:
            out[index] = LEAF_HEAD.pack(T_ENTRY, LEAF_VERSION, kind, partition, index,
                                        prev)[1:] + body
            pending.discard(index)
            if not pending:
                break
        if index > wanted[-1]:
            break
    return out
