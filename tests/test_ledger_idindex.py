"""Duplicate check: the 64-bit key index (ledger/idindex.py) and how the writer confirms hits.

A key hit is only a hint: the writer confirms it in the recent maps, then in ids.txt (streamed),
and appends the event when the id is not really there (a key collision). These tests force
collisions, old duplicates (outside the recent maps), bucket splits and chunk boundaries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger.chain
import ledger.idindex
import ledger.sidefiles
from ledger import Ledger, SigningKey, iter_entries, verify
from ledger.idindex import IdIndex


def ev(i: int | str) -> dict:
    return {"event_id": f"ev-{i}", "type": "test.event", "payload": {"i": str(i)}}


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("wc")


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny recent maps and id blocks, so lookups go to ids.txt and cross block boundaries."""
    monkeypatch.setattr(ledger.chain, "RECENT_IDS", 4)
    monkeypatch.setattr(ledger.sidefiles, "ID_BLOCK_BYTES", 64)


def colliding(*ids: str) -> Callable[[str], int]:
    """A key function under which all of `ids` share one key (and other ids do not)."""
    same = set(ids)
    return lambda eid: 12345 if eid in same else hash(eid)


def assert_well_formed(index: IdIndex) -> None:
    index.seal()
    buckets = index._buckets
    assert len(buckets) == 1 << index.bits
    for j, bucket in enumerate(buckets):
        keys = list(bucket)
        assert keys == sorted(keys), j
        assert all(k >> (64 - index.bits) in (j, j - len(buckets)) for k in keys), j
    assert sum(map(len, buckets)) == len(index)


# ---- the index alone ------------------------------------------------------------------------


def test_index_has_no_false_negatives_across_many_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.idindex, "MAX_FILL", 2)
    index = IdIndex(bits=1)
    ids = [f"id-{i}" for i in range(5000)]
    for eid in ids:
        assert not index.might_contain(eid)
        index.add(eid)
    assert index.bits > 10  # it doubled many times
    assert all(index.might_contain(eid) for eid in ids)
    assert_well_formed(index)


def test_bulk_load_then_seal_keeps_every_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger.idindex, "MAX_FILL", 4)
    index = IdIndex(bits=2)
    index.add_many([f"a-{i}" for i in range(3000)])
    index.add("one more")  # while unsorted: appended, sorted by the seal
    index.add_many([f"b-{i}" for i in range(3000)])
    assert index.might_contain("b-2999")  # the lookup seals first
    assert index.bits >= 11
    assert all(index.might_contain(f"{p}-{i}") for p in "ab" for i in range(3000))
    assert index.might_contain("one more")
    assert len(index) == 6001
    assert_well_formed(index)


def test_equal_keys_are_all_kept_and_a_shared_key_is_a_hit() -> None:
    index = IdIndex(colliding("x", "y", "z", "w"), bits=3)
    for eid in ("x", "y", "z"):
        index.add(eid)
    assert len(index) == 3
    assert index.might_contain("w") is True  # never added: a false positive, by design
    assert index.might_contain("v") is False
    assert_well_formed(index)


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["add", "bulk", "probe"]), st.text(max_size=6))),
    bits=st.integers(1, 4),
)
def test_index_answers_like_a_set_with_false_positives_only(
    ops: list[tuple[str, str]], bits: int
) -> None:
    # a poor key (9 bits, spread over the range) makes collisions common
    index = IdIndex(lambda eid: (hash(eid) % 512 - 256) << 55, bits=bits)
    seen: set[str] = set()
    for op, eid in ops:
        if op == "add":
            index.add(eid)
            seen.add(eid)
        elif op == "bulk":
            index.add_many([eid, eid + "!"])
            seen.update((eid, eid + "!"))
        assert all(index.might_contain(s) for s in seen)
    assert_well_formed(index)


# ---- the writer ---------------------------------------------------------------------------


def test_old_duplicates_are_found_after_reopen_outside_the_recent_window(
    tmp_path: Path, key: SigningKey, small_windows: None
) -> None:
    with Ledger.open(tmp_path, signer=key) as led:
        first = [led.append(0, ev(i)) for i in range(300)]
    with Ledger.open(tmp_path, signer=key) as led:
        for i in (0, 1, 150, 297, 299):  # 0..295 only in ids.txt now
            again = led.append(0, ev(i))
            assert again == type(again)(0, first[i].index, first[i].leaf_hash, True)
        many = led.append_many(0, [ev(5), ev("new"), ev(7), ev("new")])
        assert [(m.index, m.duplicate) for m in many] == [
            (first[5].index, True),
            (301, False),
            (first[7].index, True),
            (301, True),
        ]
        assert led.size(0) == 302


def test_duplicates_within_a_batch_point_at_the_first(
    tmp_path: Path, key: SigningKey, small_windows: None
) -> None:
    with Ledger.open(tmp_path, signer=key, checkpoint_every=3) as led:
        batch = [ev(i % 7) for i in range(30)]  # ids repeat every 7, across checkpoints
        results = led.append_many(0, batch)
        assert [r.duplicate for r in results] == [i >= 7 for i in range(30)]
        assert [r.index for r in results] == [1 + i % 7 for i in range(30)]
        assert [r.leaf_hash for r in results[7:]] == [
            results[i % 7].leaf_hash for i in range(7, 30)
        ]
        assert led.size(0) == 8


def test_an_id_is_a_duplicate_in_every_partition(
    tmp_path: Path, key: SigningKey, small_windows: None
) -> None:
    with Ledger.open(tmp_path, signer=key, partitions=3) as led:
        first = led.append(1, ev("x"))
        led.append_many(1, [ev(i) for i in range(20)])
        assert led.append(0, ev("x")) == type(first)(1, first.index, first.leaf_hash, True)
        assert led.append_many(2, [ev("x"), ev(3)])[1].partition == 1
    with Ledger.open(tmp_path, signer=key) as led:
        assert led.append(2, ev("x")) == type(first)(1, first.index, first.leaf_hash, True)
        assert [led.size(p) for p in range(3)] == [1, 22, 1]


@pytest.mark.parametrize("reopen", [False, True], ids=["same process", "after reopen"])
@pytest.mark.parametrize("batch", [False, True], ids=["append", "append_many"])
def test_a_key_collision_appends_both_events(
    tmp_path: Path,
    key: SigningKey,
    small_windows: None,
    monkeypatch: pytest.MonkeyPatch,
    reopen: bool,
    batch: bool,
) -> None:
    monkeypatch.setattr(ledger.idindex, "default_key", colliding("ev-a", "ev-b", "ev-c"))
    led = Ledger.open(tmp_path, signer=key)
    a = led.append(0, ev("a"))
    led.append_many(0, [ev(i) for i in range(10)])  # push "a" out of the recent maps
    if reopen:
        led.close()
        led = Ledger.open(tmp_path, signer=key)
    if batch:
        b, c, b_again = led.append_many(0, [ev("b"), ev("c"), ev("b")])
    else:
        b, c, b_again = led.append(0, ev("b")), led.append(0, ev("c")), led.append(0, ev("b"))
    assert (a.duplicate, b.duplicate, c.duplicate) == (False, False, False)
    assert len({a.index, b.index, c.index}) == 3
    assert (b_again.index, b_again.duplicate) == (b.index, True)
    led.append_many(0, [ev(i) for i in range(10, 20)])
    assert led.append(0, ev("a")).index == a.index
    assert led.append(0, ev("c")).index == c.index
    led.close()
    ids = [e.event["event_id"] for e in iter_entries(tmp_path, 0)]
    assert sorted(i for i in ids if i in ("ev-a", "ev-b", "ev-c")) == ["ev-a", "ev-b", "ev-c"]
    assert verify(tmp_path, trusted=[key.vkey()]).entries == len(ids)


def test_ids_that_need_escaping_are_found_in_ids_txt(
    tmp_path: Path, key: SigningKey, small_windows: None
) -> None:
    odd = ['quote"d', "back\\slash", "new\nline", "tab\there", "é-ü-漢", "\x00", " ", '"']
    with Ledger.open(tmp_path, signer=key) as led:
        first = {eid: led.append(0, {"event_id": eid}) for eid in odd}
        led.append_many(0, [ev(i) for i in range(40)])
    with Ledger.open(tmp_path, signer=key) as led:
        for eid in odd:
            again = led.append(0, {"event_id": eid})
            assert (again.index, again.duplicate) == (first[eid].index, True), eid
        assert led.size(0) == 1 + len(odd) + 40


def test_index_is_rebuilt_from_the_segments_when_side_files_are_lost(
    tmp_path: Path, key: SigningKey, small_windows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger.chain, "REBUILD_CHUNK", 7)
    with Ledger.open(tmp_path, signer=key, partitions=2) as led:
        first = [led.append(i % 2, ev(i)) for i in range(100)]
    for p in (0, 1):
        for f in (tmp_path / f"p{p}" / "index").iterdir():
            f.unlink()
    with Ledger.open(tmp_path, signer=key) as led:
        order = list(range(100))
        random.Random(7).shuffle(order)
        for i in order:
            again = led.append((i + 1) % 2, ev(i))
            assert (again.partition, again.index, again.duplicate) == (i % 2, first[i].index, True)
    assert verify(tmp_path, trusted=[key.vkey()]).entries == 102


def test_splits_while_writing_keep_every_id(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger.idindex, "MAX_FILL", 2)
    with Ledger.open(tmp_path, signer=key) as led:
        led.append_many(0, [ev(i) for i in range(4000)])
        assert led._index.bits > ledger.idindex.START_BITS
        assert_well_formed(led._index)
        assert not any(
            r.duplicate is False for r in led.append_many(0, [ev(i) for i in range(4000)])
        )
    with Ledger.open(tmp_path, signer=key) as led:
        assert len(led._index) == 4001
        assert_well_formed(led._index)
        assert all(led.append(0, ev(i)).duplicate for i in range(0, 4000, 7))
        assert led.size(0) == 4001


def test_the_very_first_entry_is_found_in_the_recent_map(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as led:
        genesis = next(iter_entries(tmp_path, 0))
        again = led.append(0, {"event_id": genesis.event["event_id"]})
        assert again == type(again)(0, 0, genesis.leaf_hash, True)


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "bad", "x": float("nan")},
        {"event_id": ""},
        {"event_id": "big", "x": "x" * (1 << 24)},
    ],
    ids=["no canonical form", "empty id", "too large"],
)
def test_a_bad_event_in_a_batch_keeps_the_ones_before_it(
    tmp_path: Path, key: SigningKey, bad: dict
) -> None:
    """They were counted (size, id index) before the bad one raised: they must be written,
    or a retry would call them duplicates of entries that do not exist."""
    with Ledger.open(tmp_path, signer=key) as led:
        with pytest.raises(ledger.LedgerError):
            led.append_many(0, [ev(1), ev(2), bad, ev(3)])
        assert [r.duplicate for r in led.append_many(0, [ev(1), ev(2), ev(3)])] == [
            True,
            True,
            False,
        ]
    ids = [e.event["event_id"] for e in iter_entries(tmp_path, 0)][1:]
    assert ids == ["ev-1", "ev-2", "ev-3"]
    assert verify(tmp_path, trusted=[key.vkey()]).entries == 4
