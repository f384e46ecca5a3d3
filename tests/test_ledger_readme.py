"""The worked example in ledger/README.md is recomputed here, so the doc cannot drift."""

from __future__ import annotations

import json
import re
from hashlib import sha256
from pathlib import Path

from ledger.canonical import canonical_json
from ledger.checkpoint import Checkpoint
from ledger.keys import SigningKey
from ledger.layout import LEAF_HEAD
from ledger.merkle import node_hash
from ledger.note import verify_note

README = (Path(__file__).resolve().parents[1] / "ledger" / "README.md").read_text()


def _blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.DOTALL)


def _example() -> dict:
    return json.loads(next(b for b in _blocks() if b.startswith('{"event_id"')))


def test_readme_jcs_bytes_are_the_canonical_form() -> None:
    jcs = next(b for b in _blocks() if b.startswith('{"causation_id"')).strip()
    assert canonical_json(_example()).decode() == jcs


def test_readme_header_leaf_root_and_checkpoint() -> None:
    prev = bytes.fromhex("6f22672c1c2ef9d634d865304895a12ff7d0e13fa210db871ec1e2b87f35aa65")
    header = LEAF_HEAD.pack(0, 1, 0, 0, 1, prev)
    assert (
        header.hex() in README.replace(" ", "").replace("\n", "")
        or ("00 01 00 00000000 0000000000000001 " + prev.hex()) in README
    )
    leaf = sha256(header + canonical_json(_example())).digest()
    assert leaf.hex() in README
    root = node_hash(prev, leaf)
    assert root.hex() in README
    skey = re.search(r"`(PRIVATE\+KEY\+[^`]+)`", README).group(1)  # type: ignore[union-attr]
    key = SigningKey.from_private_text(skey)
    assert key.vkey() in README
    note = next(b for b in _blocks() if b.startswith("example.org/ledger/p0"))
    assert Checkpoint("example.org/ledger/p0", 2, root).sign([key]) == note
    verify_note(note, [key.verifier])
