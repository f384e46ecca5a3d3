"""Keys and notes in the C2SP signed-note formats, checked against the Go reference vectors."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest

from ledger import KeyStoreError, SigningKey, VerifierKey
from ledger.checkpoint import Checkpoint
from ledger.errors import NoteError
from ledger.note import sign_note, verify_note

# golang.org/x/mod/sumdb/note note_test.go
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def test_go_private_key_gives_the_go_verifier_key() -> None:
    assert SigningKey.from_private_text(GO_SKEY).vkey() == GO_VKEY


def test_signing_the_go_note_gives_the_go_signature() -> None:
    note = sign_note(GO_TEXT, [SigningKey.from_private_text(GO_SKEY)])
    assert note == GO_TEXT + "\n" + GO_SIG


def test_go_note_verifies_with_the_go_vkey() -> None:
    text, keys = verify_note(GO_TEXT + "\n" + GO_SIG, [VerifierKey.parse(GO_VKEY)])
    assert text == GO_TEXT
    assert keys[0].vkey() == GO_VKEY


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    key = SigningKey.generate("example.com/log")
    expected = hashlib.sha256(b"example.com/log\n\x01" + key.public).digest()[:4]
    assert key.key_id == expected
    material = base64.b64encode(b"\x01" + key.public).decode()
    assert key.vkey() == f"example.com/log+{expected.hex()}+{material}"


def test_unknown_signatures_are_ignored_and_a_bad_known_one_rejects() -> None:
    mine, other = SigningKey.generate("log"), SigningKey.generate("witness")
    note = sign_note("hello\n", [other, mine])
    assert verify_note(note, [mine.verifier])[1] == [mine.verifier]
    with pytest.raises(NoteError):
        verify_note(note, [SigningKey.generate("nobody").verifier])
    forged = note.replace(note.splitlines()[-1][-8:], "AAAAAAA=")
    with pytest.raises(NoteError):
        verify_note(forged, [mine.verifier])


def test_checkpoint_body_is_the_c2sp_format() -> None:
    key = SigningKey.generate("wc")
    note = Checkpoint("wc/p0", 20852163, b"\x0a" * 32).sign([key])
    body = "wc/p0\n20852163\nCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo=\n"
    assert note.startswith(body + "\n\u2014 wc ")
    assert Checkpoint.verify(note, [key.verifier])[0] == Checkpoint("wc/p0", 20852163, b"\x0a" * 32)


@pytest.mark.parametrize(
    "size", ["01", "-1", "1e3", ""], ids=["leading zero", "negative", "exp", "empty"]
)
def test_checkpoint_with_a_bad_size_is_refused(size: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse_body(f"o\n{size}\n{base64.b64encode(bytes(32)).decode()}\n")


def test_key_file_is_0600_in_a_0700_folder_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ledger.key"
    key = SigningKey.generate("wc")
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert SigningKey.load(path).vkey() == key.vkey()


def test_key_file_is_not_overwritten_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    SigningKey.generate("wc").save(path)
    with pytest.raises(KeyStoreError) as err:
        SigningKey.generate("wc").save(path)
    assert err.value.code == "ledger.key_exists"


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.key"
    SigningKey.generate("wc").save(path)
    path.chmod(0o644)
    with pytest.raises(KeyStoreError) as err:
        SigningKey.load(path)
    assert err.value.code == "ledger.key_permissions"


@pytest.mark.parametrize(
    "vkey",
    [GO_VKEY.replace("c74f20a3", "c74f20a4"), GO_VKEY[:-2], "a b+c74f20a3+ARpc", "nope"],
    ids=["wrong key id", "short key", "space in name", "garbage"],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(KeyStoreError):
        VerifierKey.parse(vkey)
