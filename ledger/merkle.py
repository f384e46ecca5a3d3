"""RFC 9162 (RFC 6962) Merkle tree hashing: tree state, proof generation and proof verification.

leaf hash = SHA-256(0x00 || data), node hash = SHA-256(0x01 || left || right), empty tree =
SHA-256(""). The tree of n leaves splits at k, the largest power of two below n.
No files here: proof generation takes a `node(level, index)` reader for complete subtrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

from ledger.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]  # (level, index) -> hash of leaves [i*2^l, (i+1)*2^l)


def leaf_hash(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class TreeState:
    """The right border ("compact range") of a growing tree: one node per set bit of `size`.

    `extend` takes leaf hashes in batches and hashes level by level (cheaper in Python than
    one leaf at a time); every complete node it creates is passed to `sink(level, hashes)`,
    which is how the storage keeps its side files of tree levels.
    """

    __slots__ = ("border", "sink", "size")

    def __init__(
        self,
        size: int = 0,
        border: Sequence[bytes | None] = (),
        sink: Callable[[int, list[bytes]], None] | None = None,
    ) -> None:
        self.size = size
        self.border: list[bytes | None] = list(border)  # border[k]: node at level k if bit k set
        self.sink = sink

    @classmethod
    def at(
        cls, size: int, node: NodeReader, sink: Callable[[int, list[bytes]], None] | None = None
    ) -> TreeState:
        """Rebuild the border of a tree of `size` leaves from stored complete nodes."""
        border: list[bytes | None] = []
        for level in range(size.bit_length()):
            count = size >> level
            border.append(node(level, count - 1) if count & 1 else None)
        return cls(size, border, sink)

    def extend(self, leaves: list[bytes]) -> None:
        if not leaves:
            return
        self.size += len(leaves)
        new = leaves
        level = 0
        while new:
            if self.sink is not None:
                self.sink(level, new)
            if level == len(self.border):
                self.border.append(None)
            carry = self.border[level]
            items = [carry, *new] if carry is not None else new
            pairs = len(items) >> 1
            up = [
                sha256(b"\x01" + items[i] + items[i + 1]).digest() for i in range(0, pairs << 1, 2)
            ]
            self.border[level] = items[-1] if len(items) & 1 else None
            new = up
            level += 1

    def root(self) -> bytes:
        acc: bytes | None = None
        for node in self.border:
            if node is None:
                continue
            acc = node if acc is None else sha256(b"\x01" + node + acc).digest()
        return EMPTY_ROOT if acc is None else acc

    def copy(self) -> TreeState:
        return TreeState(self.size, self.border, None)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """Root of a tree given all its leaf hashes (tests and small trees)."""
    state = TreeState()
    state.extend(list(leaves))
    return state.root()


# ---- proof generation (RFC 9162 2.1.3.1 PATH and 2.1.4.1 SUBPROOF) over stored nodes ----------


def range_hash(lo: int, hi: int, node: NodeReader) -> bytes:
    """MTH(D[lo:hi]) where lo is aligned as it is in the RFC recursion."""
    n = hi - lo
    if n & (n - 1) == 0 and lo % n == 0:
        level = n.bit_length() - 1
        return node(level, lo >> level)
    k = _split(n)
    return node_hash(range_hash(lo, lo + k, node), range_hash(lo + k, hi, node))


def inclusion_path(index: int, size: int, node: NodeReader) -> list[bytes]:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(range_hash(lo + k, hi, node))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k, node))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_path(old: int, new: int, node: NodeReader) -> list[bytes]:
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from size {old} to size {new}")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(range_hash(lo + k, hi, node))
            hi = lo + k
        else:
            proof.append(range_hash(lo, lo + k, node))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(range_hash(lo, hi, node))
    proof.reverse()
    return proof


# ---- proof verification (RFC 9162 2.1.3.2 and 2.1.4.2) ----------------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows leaf hash `leaf` at `index` in the tree `root`."""
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless `proof` shows tree (size2, root2) extends tree (size1, root1).

    A proof from the empty tree is meaningless and is refused, as the test vectors require.
    """
    if size2 < size1:
        raise ProofError(f"size2 {size2} < size1 {size1}")
    if size1 == 0:
        raise ProofError("consistency from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes but different roots")
        return
    if not proof:
        raise ProofError("empty proof")
    if any(len(p) != HASH_SIZE for p in proof) or len(root1) != HASH_SIZE:
        raise ProofError("hashes must be 32 bytes")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")
