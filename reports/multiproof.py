"""Merkle multiproofs: one proof that many leaves are in an RFC 9162 tree, sharing every node
their single inclusion paths would repeat.

The tree is RFC 9162's: MTH(D[lo:hi]) splits at k, the largest power of two below hi - lo,
into MTH(D[lo:lo+k]) and MTH(D[lo+k:hi]), and a node is SHA-256(0x01 || left || right). A
multiproof of the leaves at `indexes` (sorted, distinct) is the list of hashes of the maximal
subtrees that hold none of them, in the order a left-to-right depth-first walk of that
recursion meets them. From the proven leaves' hashes and those nodes the same walk rebuilds the
root: a subtree holding a proven leaf is hashed from its halves, one holding none is the next
node of the list. The list must be used up exactly.

It is never longer than the single paths together (each of its nodes is a sibling on some
leaf's path) and, for the thousands of entries of one report, much shorter: nodes near the root
are shared, and two cited neighbours need no node between them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256


class MultiproofError(ValueError):
    """The multiproof does not fit the tree and leaves it claims to prove."""


def walk(size: int, indexes: Sequence[int], leaf: Callable[[int], bytes],
         absent: Callable[[int, int], bytes]) -> bytes:
    """MTH of the whole tree of `size` leaves: `leaf(i)` gives a proven leaf's hash,
    `absent(lo, hi)` the hash of a subtree D[lo:hi] holding no proven leaf (called in the
    multiproof's order)."""

    def down(lo: int, hi: int, a: int, b: int) -> bytes:
        if a == b:
            return absent(lo, hi)
        if hi - lo == 1:
            return leaf(lo)
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        mid = bisect_left(indexes, lo + k, a, b)
        left = down(lo, lo + k, a, mid)
        right = down(lo + k, hi, mid, b)
        return sha256(b"\x01" + left + right).digest()

    return down(0, size, 0, len(indexes))


def root(size: int, leaves: dict[int, bytes], nodes: Iterable[bytes]) -> bytes:
    """The root that the proven `leaves` (index -> leaf hash) and the multiproof's `nodes`
    give for a tree of `size` leaves; MultiproofError if they do not fit it."""
    indexes = sorted(leaves)
    if not indexes:
        raise MultiproofError("a multiproof proves at least one leaf")
    if indexes[0] < 0 or indexes[-1] >= size:
        raise MultiproofError(f"a leaf outside the tree of {size}")
    rest = iter(nodes)

    def absent(lo: int, hi: int) -> bytes:
        value = next(rest, None)
        if value is None:
            raise MultiproofError("the multiproof is too short")
        return value

    top = walk(size, indexes, leaves.__getitem__, absent)
    if next(rest, None) is not None:
        raise MultiproofError("the multiproof is too long")
    return top
