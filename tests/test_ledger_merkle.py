"""RFC 9162 tree: the transparency-dev test vectors, and our proofs checked by an independent
verifier written here straight from RFC 9162 2.1.3.2 and 2.1.4.2 (it shares no code with ledger/).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    TreeState,
    consistency_path,
    inclusion_path,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "data" / "merkle-testdata"


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _b(s: str) -> bytes:
    return base64.b64decode(s) if s else b""


@pytest.mark.parametrize(
    "path", _vector_files("inclusion"), ids=lambda p: str(p.relative_to(VECTORS))
)
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [_b(p) for p in v["proof"] or []]
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(v["leafIdx"], v["treeSize"], _b(v["leafHash"]), proof, _b(v["root"]))
    else:
        verify_inclusion(v["leafIdx"], v["treeSize"], _b(v["leafHash"]), proof, _b(v["root"]))


@pytest.mark.parametrize(
    "path", _vector_files("consistency"), ids=lambda p: str(p.relative_to(VECTORS))
)
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [_b(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], _b(v["root1"]), _b(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_all_vectors_are_present() -> None:
    assert len(_vector_files("inclusion")) + len(_vector_files("consistency")) == 196


# ---- an independent reference, straight from the RFC text -------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over leaf *data*."""
    n = len(leaves)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _h(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:]))


def ref_verify_inclusion(
    leaf_index: int, tree_size: int, hash_: bytes, path: list[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, hash_
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def ref_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 2.1.4.2, step by step (for 0 < first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    levels = [[leaf_hash(x) for x in leaves]]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([_h(b"\x01" + prev[i] + prev[i + 1]) for i in range(0, len(prev) - 1, 2)])
    return levels


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=80), st.data())
def test_our_proofs_verify_in_the_reference(leaves: list[bytes], data: st.DataObject) -> None:
    levels = _levels(leaves)
    n = len(leaves)
    root = ref_mth(leaves)
    assert root_of(levels[0]) == root
    index = data.draw(st.integers(0, n - 1))
    path = inclusion_path(index, n, lambda lv, i: levels[lv][i])
    assert ref_verify_inclusion(index, n, levels[0][index], path, root)
    old = data.draw(st.integers(1, n))
    if old < n:
        proof = consistency_path(old, n, lambda lv, i: levels[lv][i])
        assert ref_verify_consistency(old, n, ref_mth(leaves[:old]), root, proof)


def test_tree_state_grows_in_any_batch_sizes() -> None:
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(300)]
    for batch in (1, 2, 3, 7, 64, 300):
        state = TreeState()
        for i in range(0, 300, batch):
            state.extend(leaves[i : i + batch])
            assert state.root() == root_of(leaves[: i + len(leaves[i : i + batch])])
    assert TreeState().root() == EMPTY_ROOT


def test_tree_state_rebuilds_from_stored_levels() -> None:
    leaves = [bytes([i]) for i in range(77)]
    levels = _levels(leaves)
    for n in range(1, 78):
        assert TreeState.at(n, lambda lv, i: levels[lv][i]).root() == ref_mth(leaves[:n])
