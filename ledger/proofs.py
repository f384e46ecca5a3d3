"""Proofs an auditor can check alone: inclusion of one entry, consistency of two tree sizes.

JSON uses the field names of the transparency-dev test vectors (leafIdx, treeSize, leafHash,
root, proof / size1, size2, root1, root2, proof; hashes in base64), plus the signed checkpoint
and the entry's leaf data. `tlog_proof` gives the C2SP tlog-proof text. Every proof is checked
against the root before it is returned, so damaged side files give an error, not a bad proof.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from ledger.checkpoint import Checkpoint, partition_origin
from ledger.errors import LedgerError, NoteError, ProofError
from ledger.keys import VerifierKey
from ledger.layout import LEAF_HEAD, LEAF_VERSION, T_ENTRY, partition_dir, read_meta
from ledger.merkle import (
    TreeState,
    consistency_path,
    inclusion_path,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.reader import iter_raw
from ledger.sidefiles import NodeFiles

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def latest_checkpoint(directory: Path, partition: int) -> str | None:
    """The latest signed checkpoint note of a partition (None before the first one)."""
    try:
        text = (partition_dir(Path(directory), partition) / "checkpoint").read_text()
    except FileNotFoundError:
        return None
    return text or None


def latest_checkpoints(directory: Path) -> dict[int, str | None]:
    meta = read_meta(Path(directory))
    return {p: latest_checkpoint(directory, p) for p in range(int(meta["partitions"]))}


class _Tree:
    """Stored nodes of one partition plus its latest checkpoint."""

    def __init__(self, directory: Path, partition: int) -> None:
        self.directory = Path(directory)
        self.origin = read_meta(self.directory)["origin"]
        self.partition = partition
        self.dir = partition_dir(self.directory, partition)
        if not self.dir.is_dir():
            raise LedgerError(f"no partition {partition}", code="ledger.not_found")
        self.note = latest_checkpoint(self.directory, partition)
        self.checkpoint = Checkpoint.parse(self.note) if self.note else None
        self.nodes = NodeFiles(self.dir / "index")

    def node(self, level: int, index: int) -> bytes:
        try:
            return self.nodes.node(level, index)
        except (OSError, IndexError) as exc:
            raise LedgerError(
                f"partition {self.partition}: the index lacks node {level}/{index}; open the "
                "ledger with its writer once to rebuild it",
                code="ledger.index_incomplete",
            ) from exc

    def size_or_latest(self, size: int | None) -> int:
        if size is not None:
            return size
        if self.checkpoint is None:
            raise LedgerError("no checkpoint yet", code="ledger.no_checkpoint")
        return self.checkpoint.size

    def root(self, size: int) -> bytes:
        root = TreeState.at(size, self.node).root()
        if (
            self.checkpoint is not None
            and size == self.checkpoint.size
            and root != self.checkpoint.root
        ):
            raise LedgerError(
                f"partition {self.partition}: index disagrees with the signed checkpoint",
                code="ledger.index_corrupt",
            )
        return root

    def note_for(self, size: int) -> str | None:
        return self.note if self.checkpoint is not None and self.checkpoint.size == size else None

    def close(self) -> None:
        self.nodes.close()


def inclusion_proof(
    directory: Path, partition: int, index: int, *, tree_size: int | None = None
) -> dict[str, Any]:
    """Proof that entry `index` is in the tree of `tree_size` (default: latest checkpoint)."""
    tree = _Tree(directory, partition)
    try:
        size = tree.size_or_latest(tree_size)
        if not 0 <= index < size:
            raise ProofError(
                f"index {index} is not below tree size {size}", code="ledger.bad_argument"
            )
        root = tree.root(size)
        leaf = tree.node(0, index)
        path = inclusion_path(index, size, tree.node)
        verify_inclusion(index, size, leaf, path, root)
        leaf_data = _leaf_data(tree.dir, partition, index)
        if leaf_hash(leaf_data) != leaf:
            raise LedgerError(
                f"entry {index} does not match the index", code="ledger.index_corrupt"
            )
        return {
            "origin": partition_origin(tree.origin, partition),
            "partition": partition,
            "leafIdx": index,
            "treeSize": size,
            "leafHash": _b64(leaf),
            "root": _b64(root),
            "proof": [_b64(h) for h in path],
            "leafData": _b64(leaf_data),
            "checkpoint": tree.note_for(size),
        }
    finally:
        tree.close()


def consistency_proof(
    directory: Path, partition: int, old: int, new: int | None = None
) -> dict[str, Any]:
    """Proof that the tree of size `new` (default: latest checkpoint) extends the one of `old`."""
    tree = _Tree(directory, partition)
    try:
        size2 = tree.size_or_latest(new)
        if not 0 < old <= size2:
            raise ProofError(f"need 0 < old ({old}) <= new ({size2})", code="ledger.bad_argument")
        root1, root2 = tree.root(old), tree.root(size2)
        path = consistency_path(old, size2, tree.node) if old < size2 else []
        verify_consistency(old, size2, root1, root2, path)
        return {
            "origin": partition_origin(tree.origin, partition),
            "partition": partition,
            "size1": old,
            "size2": size2,
            "root1": _b64(root1),
            "root2": _b64(root2),
            "proof": [_b64(h) for h in path],
            "checkpoint": tree.note_for(size2),
        }
    finally:
        tree.close()


def _leaf_data(pdir: Path, partition: int, index: int) -> bytes:
    """leaf_data of entry `index` (the frame tail without its 0x00 type byte)."""
    for i, _, kind, prev, body in iter_raw(pdir, partition, index):
        if i == index:
            return LEAF_HEAD.pack(T_ENTRY, LEAF_VERSION, kind, partition, i, prev)[1:] + body
        break
    raise LedgerError(f"no entry {index}", code="ledger.not_found")


def tlog_proof(directory: Path, partition: int, index: int, *, include_entry: bool = True) -> str:
    """C2SP tlog-proof text for entry `index` against the latest checkpoint.

    With include_entry, the `extra` line carries the leaf data (base64), so the proof alone
    lets anyone recompute the leaf hash and read the event (the JCS bytes after 46 bytes).
    """
    proof = inclusion_proof(directory, partition, index)
    if proof["checkpoint"] is None:
        raise LedgerError("no checkpoint covers this entry yet", code="ledger.no_checkpoint")
    lines = [TLOG_PROOF_HEADER]
    if include_entry:
        lines.append(f"extra {proof['leafData']}")
    lines.append(f"index {index}")
    lines.extend(proof["proof"])
    return "\n".join(lines) + "\n\n" + proof["checkpoint"]


def verify_tlog_proof(
    text: str, *, trusted: list[str], leaf_data: bytes | None = None
) -> dict[str, Any]:
    """Check a tlog-proof: the checkpoint's signature by a trusted key and the inclusion of the
    leaf (from `leaf_data`, else from the proof's extra line). Raises ProofError."""
    head, sep, note = text.partition("\n\n")
    lines = head.split("\n")
    try:
        if not sep or lines[0] != TLOG_PROOF_HEADER:
            raise ValueError("not a c2sp.org/tlog-proof@v1")
        pos = 1
        extra = None
        if lines[pos].startswith("extra "):
            extra = base64.b64decode(lines[pos][6:], validate=True)
            pos += 1
        if not lines[pos].startswith("index "):
            raise ValueError("no index line")
        index_s = lines[pos][6:]
        if not index_s.isdigit() or (index_s != "0" and index_s[0] == "0"):
            raise ValueError("bad index")
        hashes = [base64.b64decode(h, validate=True) for h in lines[pos + 1 :]]
        cp, _ = Checkpoint.verify(note, [VerifierKey.parse(v) for v in trusted])
    except (ValueError, IndexError, binascii.Error, NoteError) as exc:
        raise ProofError(f"bad tlog-proof: {exc}") from exc
    data = leaf_data if leaf_data is not None else extra
    if data is None:
        raise ProofError("no leaf data given and none in the proof")
    index = int(index_s)
    verify_inclusion(index, cp.size, leaf_hash(data), hashes, cp.root)
    return {
        "origin": cp.origin,
        "index": index,
        "tree_size": cp.size,
        "leaf_hash": leaf_hash(data).hex(),
    }
