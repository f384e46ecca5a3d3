"""Crypto-shredding: erasing a subject's key makes its fields unreadable; the ledger still verifies."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ledger import Ledger, LedgerError, SigningKey, export_jsonl, iter_entries, verify
from ledger.shred import ShreddedError, SubjectKeyStore, decrypt_field, encrypt_field


def test_erased_subject_is_unreadable_and_the_ledger_still_verifies(tmp_path: Path) -> None:
    store = SubjectKeyStore(tmp_path / "subject-keys")
    key = SigningKey.generate("wc")
    email = encrypt_field(store, "user:42", "alice@example.com", context="payload.approver")
    other = encrypt_field(store, "user:7", {"name": "Bob"}, context="payload.approver")
    with Ledger.open(tmp_path / "ledger", signer=key) as ledger:
        ledger.append(
            0, {"event_id": "a", "type": "permit.approved", "payload": {"approver": email}}
        )
        ledger.append(
            0, {"event_id": "b", "type": "permit.approved", "payload": {"approver": other}}
        )
    stored = [
        e.event["payload"]["approver"] for e in iter_entries(tmp_path / "ledger", 0) if e.kind == 0
    ]
    assert decrypt_field(store, stored[0], context="payload.approver") == "alice@example.com"

    assert store.erase("user:42")
    with pytest.raises(ShreddedError) as err:
        decrypt_field(store, stored[0], context="payload.approver")
    assert err.value.details["erased"] is True
    assert decrypt_field(store, stored[1], context="payload.approver") == {"name": "Bob"}
    assert verify(tmp_path / "ledger", trusted=[key.vkey()]).ok
    assert "alice" not in (tmp_path / "ledger" / "p0").joinpath(
        next(p.name for p in (tmp_path / "ledger" / "p0").glob("seg-*"))
    ).read_text("latin-1")
    assert export_jsonl(tmp_path / "ledger", tmp_path / "out.jsonl") == 3


def test_ciphertext_is_bound_to_its_field(tmp_path: Path) -> None:
    store = SubjectKeyStore(tmp_path / "k")
    blob = encrypt_field(store, "user:1", "secret", context="payload.a")
    with pytest.raises(LedgerError) as err:
        decrypt_field(store, blob, context="payload.b")
    assert err.value.code == "ledger.bad_ciphertext"


def test_no_new_encryption_for_an_erased_subject(tmp_path: Path) -> None:
    store = SubjectKeyStore(tmp_path / "k")
    encrypt_field(store, "user:1", "x")
    store.erase("user:1")
    with pytest.raises(ShreddedError):
        encrypt_field(store, "user:1", "y")


def test_key_files_are_private_and_not_named_after_subjects(tmp_path: Path) -> None:
    store = SubjectKeyStore(tmp_path / "k")
    encrypt_field(store, "user:alice", "x")
    files = list((tmp_path / "k").iterdir())
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert not any("alice" in f.name for f in files)
