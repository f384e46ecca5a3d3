"""The writer's duplicate check: a compact set of event ids, 8 bytes per id, no false negatives.

Each id is hashed to a signed 64-bit key. The keys live in 2^bits sorted `array('q')`
buckets picked by their top bits (a bucket holds one contiguous key range; on average at most
MAX_FILL keys); lookup is a bisect in one small bucket, insertion an `array.insert` into it.
When the average bucket passes MAX_FILL the buckets double: each is split in two at the middle
of its key range, one bucket at a time, so there is never a second copy of the index (no big
merge, no 2x transient; the split at 2^16 -> 2^17 buckets, ~16.7M ids, takes ~0.1-0.2 s).

A hit is NOT proof that the id was seen: two ids may share a key (for a new id among n,
probability n / 2^64). The caller must confirm a hit against the stored ids and append the
event if it is not really there (ledger/chain.py does).

The key is Python's own str hash when it is 64 bits wide (SipHash-1-3 with a random
per-process seed, PEP 456): about 6x cheaper than blake2b, and keyed, so nobody outside can
aim ids at one key to force the slow confirmation path (unless PYTHONHASHSEED pins the seed;
then collisions cost a search each, never an event). Nothing here is stored: the index is
rebuilt from ids.txt at every open, so a per-process key is fine.

Bulk loading (`add_many`, used at open) appends without order; the next lookup or `seal()`
sorts each bucket once (one bucket's worth of temporary list at a time).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection
from hashlib import blake2b
from os import urandom

KEY_BITS = 64
START_BITS = 10  # 1,024 empty buckets (~100 KB) for a new index
MAX_FILL = 256  # average keys per bucket before the buckets double

_BLAKE_KEY = urandom(16)


def _blake2b_key(event_id: str) -> int:
    data = event_id.encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8, key=_BLAKE_KEY).digest(), "big", signed=True)


# A function of an id giving a signed 64-bit int, spread evenly over that range.
default_key: Callable[[str], int] = hash if sys.hash_info.width == KEY_BITS else _blake2b_key


class IdIndex:
    """Set of event ids as 64-bit keys: `might_contain` (no false negatives), `add`."""

    def __init__(self, key: Callable[[str], int] | None = None, *, bits: int = START_BITS) -> None:
        if not 1 <= bits < KEY_BITS:
            raise ValueError("bits must be in 1..63")
        self._key = key if key is not None else default_key
        self._buckets = [array("q") for _ in range(1 << bits)]
        self._set_bits(bits)
        self._n = 0
        self._sorted = True
        self._probe: tuple[int, array[int], int] | None = None  # (key, bucket, pos) of a miss

    def _set_bits(self, bits: int) -> None:
        self._bits = bits
        self._shift = KEY_BITS - bits  # key >> shift is in [-2^(bits-1), 2^(bits-1)): a list index
        self._limit = MAX_FILL << bits

    def __len__(self) -> int:
        return self._n

    @property
    def bits(self) -> int:
        return self._bits

    def might_contain(self, event_id: str) -> bool:
        """False: the id was never added. True: it was, or another id has the same key."""
        if not self._sorted:
            self.seal()
        k = self._key(event_id)
        bucket = self._buckets[k >> self._shift]
        i = bisect_right(bucket, k)
        if i and bucket[i - 1] == k:
            return True
        self._probe = (k, bucket, i)  # add() right after a miss reuses the bisect
        return False

    def add(self, event_id: str) -> None:
        k = self._key(event_id)
        if not self._sorted:
            self._buckets[k >> self._shift].append(k)
            self._n += 1
            return
        probe = self._probe
        if probe is not None and probe[0] == k:  # nothing changed since that miss
            probe[1].insert(probe[2], k)
        else:
            bucket = self._buckets[k >> self._shift]
            bucket.insert(bisect_right(bucket, k), k)
        self._probe = None
        self._n += 1
        if self._n > self._limit:
            self._regroup(1, sort=False)

    def add_many(self, event_ids: Collection[str]) -> None:
        """Add ids in bulk, unordered; the next lookup (or `seal()`) sorts the buckets."""
        buckets, shift = self._buckets, self._shift
        for k in map(self._key, event_ids):
            buckets[k >> shift].append(k)
        if event_ids:
            self._n += len(event_ids)
            self._sorted = False
            self._probe = None

    def seal(self) -> None:
        """Sort after `add_many`, with as many buckets as the size needs."""
        if self._sorted:
            return
        grow = 0
        while self._n > MAX_FILL << (self._bits + grow):
            grow += 1
        self._regroup(grow, sort=True)
        self._sorted = True

    def _regroup(self, grow: int, *, sort: bool) -> None:
        """Split every bucket into 2^grow (sorting it first if `sort`), one bucket at a time."""
        old = self._buckets
        count = len(old)
        self._probe = None
        if grow == 0:
            if sort:
                for j in range(count):
                    if len(old[j]) > 1:
                        old[j] = array("q", sorted(old[j]))
            return
        shift = KEY_BITS - self._bits - grow
        parts = 1 << grow
        new: list[array[int]] = []
        for j in range(count):
            bucket = old[j]
            old[j] = array("q")  # let it go: only one bucket's keys are ever held twice
            keys: array[int] | list[int] = sorted(bucket) if sort else bucket
            del bucket
            # this bucket's keys have key >> (shift + grow) == high
            high = j if j < count // 2 else j - count
            lo = 0
            for t in range(1, parts):
                hi = bisect_left(keys, ((high << grow) + t) << shift, lo)
                new.append(array("q", keys[lo:hi]) if sort else keys[lo:hi])  # type: ignore[arg-type]
                lo = hi
            new.append(array("q", keys[lo:]) if sort else keys[lo:])  # type: ignore[arg-type]
        # new[j * parts + t] holds the keys with key >> new shift == (high << grow) + t, which
        # is that list index modulo the new count: plain indexing finds them.
        self._buckets = new
        self._set_bits(self._bits + grow)
