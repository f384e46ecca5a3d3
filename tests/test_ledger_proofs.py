"""Proofs from a real ledger, checked by the independent RFC verifier of test_ledger_merkle,
plus the C2SP tlog-proof text form, exports, and key management."""

from __future__ import annotations

import base64
import io
import json
import stat
from hashlib import sha256
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ledger import (
    KeyStoreError,
    Ledger,
    LedgerError,
    ProofError,
    SigningKey,
    consistency_proof,
    export_jsonl,
    export_parquet,
    inclusion_proof,
    iter_entries,
    keys_generate,
    keys_rotate,
    keys_show,
    latest_checkpoint,
    tlog_proof,
    verify,
    verify_tlog_proof,
)
from ledger.checkpoint import Checkpoint
from ledger.keys import VerifierKey
from ledger.note import verify_note
from tests.test_ledger_merkle import ref_verify_consistency, ref_verify_inclusion

KEY = SigningKey.generate("wc")


def b64(s: str) -> bytes:
    return base64.b64decode(s)


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ledger")
    with Ledger.open(root, signer=KEY, partitions=2, checkpoint_every=100) as ledger:
        for i in range(1234):
            ledger.append(i % 2, {"event_id": f"e{i}", "type": "t", "payload": {"i": i}})
    return root


@pytest.mark.parametrize("index", [0, 1, 2, 100, 511, 512, 616])
def test_inclusion_proof_verifies_independently(ledger_dir: Path, index: int) -> None:
    p = inclusion_proof(ledger_dir, 0, index)
    leaf_data = b64(p["leafData"])
    assert sha256(b"\x00" + leaf_data).digest() == b64(p["leafHash"])
    assert ref_verify_inclusion(
        p["leafIdx"],
        p["treeSize"],
        b64(p["leafHash"]),
        [b64(h) for h in p["proof"]],
        b64(p["root"]),
    )
    cp, _ = Checkpoint.verify(p["checkpoint"], [KEY.verifier])
    assert (cp.size, cp.root) == (p["treeSize"], b64(p["root"]))


def test_leaf_data_holds_the_documented_header_and_event(ledger_dir: Path) -> None:
    p = inclusion_proof(ledger_dir, 1, 5)
    data = b64(p["leafData"])
    assert data[0:2] == b"\x01\x00"  # version 1, kind event
    assert int.from_bytes(data[2:6], "big") == 1 and int.from_bytes(data[6:14], "big") == 5
    entries = list(iter_entries(ledger_dir, 1, start=4))
    assert data[14:46] == entries[0].leaf_hash
    assert json.loads(data[46:]) == entries[1].event


@pytest.mark.parametrize(("old", "new"), [(1, 618), (2, 618), (100, 400), (617, 618), (618, 618)])
def test_consistency_proof_verifies_independently(ledger_dir: Path, old: int, new: int) -> None:
    p = consistency_proof(ledger_dir, 0, old, new)
    assert (p["size1"], p["size2"]) == (old, new)
    if old == new:
        assert p["proof"] == [] and p["root1"] == p["root2"]
    else:
        assert ref_verify_consistency(
            old, new, b64(p["root1"]), b64(p["root2"]), [b64(h) for h in p["proof"]]
        )


def test_consistency_to_the_latest_checkpoint_carries_it(ledger_dir: Path) -> None:
    p = consistency_proof(ledger_dir, 1, 10)
    assert p["checkpoint"] == latest_checkpoint(ledger_dir, 1)
    assert Checkpoint.parse(p["checkpoint"]).size == p["size2"] == 618


def test_proofs_outside_the_tree_are_refused(ledger_dir: Path) -> None:
    with pytest.raises(LedgerError):
        inclusion_proof(ledger_dir, 0, 618)
    with pytest.raises(LedgerError):
        consistency_proof(ledger_dir, 0, 0)


def test_tlog_proof_text_is_the_c2sp_format_and_verifies(ledger_dir: Path) -> None:
    text = tlog_proof(ledger_dir, 0, 42)
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1].startswith("extra ") and lines[2] == "index 42"
    _, _, note = text.partition("\n\n")
    assert note == latest_checkpoint(ledger_dir, 0)
    verify_note(note, [KEY.verifier])
    result = verify_tlog_proof(text, trusted=[KEY.vkey()])
    assert (result["index"], result["tree_size"]) == (42, 618)


def test_tlog_proof_with_other_leaf_data_fails(ledger_dir: Path) -> None:
    text = tlog_proof(ledger_dir, 0, 42)
    with pytest.raises(ProofError):
        verify_tlog_proof(text, trusted=[KEY.vkey()], leaf_data=b"something else")
    with pytest.raises(ProofError):
        verify_tlog_proof(text, trusted=[SigningKey.generate("wc").vkey()])


def test_jsonl_export_carries_the_hashed_bytes(ledger_dir: Path) -> None:
    out = io.StringIO()
    assert export_jsonl(ledger_dir, out) == 1236
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["index"] for r in rows[:3]] == [0, 1, 2]
    row = rows[5]
    header = (
        b"\x00\x01"
        + bytes([row["kind"]])
        + row["partition"].to_bytes(4, "big")
        + row["index"].to_bytes(8, "big")
        + bytes.fromhex(row["prev_hash"])
    )
    line = out.getvalue().splitlines()[5]
    body = line[line.index('"event":') + 8 : -1].encode()
    assert sha256(header + body).hexdigest() == row["leaf_hash"]


def test_parquet_export_has_one_row_per_entry(ledger_dir: Path, tmp_path: Path) -> None:
    assert export_parquet(ledger_dir, tmp_path / "x.parquet", partition=1) == 618
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.num_rows == 618
    assert table.column("event_id")[1].as_py() == "e1"


def test_keys_generate_show_rotate(tmp_path: Path) -> None:
    key_path = tmp_path / "keys" / "ledger.key"
    ledger_dir = tmp_path / "ledger"
    key = keys_generate(key_path, "wc", ledger_dir=ledger_dir)
    assert keys_show(key_path) == key.vkey()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    with Ledger.open(ledger_dir, signer=key) as ledger:
        ledger.append(0, {"event_id": "a"})
    result = keys_rotate(key_path, ledger_dir)
    assert result["old"] == key.vkey() and keys_show(key_path) == result["new"]
    assert SigningKey.load(Path(result["retired_file"])).vkey() == key.vkey()
    with Ledger.open(ledger_dir, signer=SigningKey.load(key_path)) as ledger:
        ledger.append(0, {"event_id": "b"})
    assert verify(ledger_dir, trusted=[key.vkey()]).ok
    assert verify(ledger_dir, trusted=[result["new"]]).ok
    VerifierKey.parse(result["new"])


def test_rotation_resumes_after_a_crash_before_the_file_swap(tmp_path: Path) -> None:
    key_path = tmp_path / "k" / "ledger.key"
    ledger_dir = tmp_path / "ledger"
    old = keys_generate(key_path, "wc")
    Ledger.open(ledger_dir, signer=old).close()
    new = SigningKey.generate("wc")
    new.save(key_path.with_name("ledger.key.next"))
    Ledger.open(ledger_dir, signer=new, retired_signers=[old]).close()  # crash after this
    result = keys_rotate(key_path, ledger_dir)
    assert result["new"] == new.vkey()
    with Ledger.open(ledger_dir, signer=SigningKey.load(key_path)):
        pass


def test_key_inside_the_ledger_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError) as err:
        keys_generate(tmp_path / "ledger" / "ledger.key", ledger_dir=tmp_path / "ledger")
    assert err.value.code == "ledger.key_location"
