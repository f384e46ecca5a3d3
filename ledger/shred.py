"""GDPR erasure by crypto-shredding: personal fields are AES-256-GCM encrypted with a key per
data subject, kept in a key store outside the ledger. `erase(subject)` destroys the key; the
ledger keeps its ciphertext unchanged, so it still verifies, but the fields can no longer be read.

    store = SubjectKeyStore(Path("~/.local/share/worker-certification/subject-keys"))
    event["payload"]["approver_email"] = encrypt_field(store, "user:42", "alice@example.com")
    ledger.append(p, event)
    decrypt_field(store, blob)        # -> "alice@example.com"
    store.erase("user:42")            # afterwards decrypt_field raises ShreddedError

An encrypted field is a JSON object {"enc": "A256GCM", "kid": <key id>, "iv": b64, "ct": b64}:
key id = first 16 hex digits of SHA-256("subject-key\\n" || subject); the associated data is
"worker-certification/shred/v1\\n<kid>\\n<context>" so a ciphertext cannot be moved to another
subject or field (pass the field path as `context`). Key files hold 32 random bytes, 0600 in a
0700 folder, named by key id (subject ids do not appear in file names). Erasure removes the
file, fsyncs the folder and leaves a tombstone (key id, time) so "erased" differs from "never
existed". Deleting a file does not scrub old disk blocks or backups: keep the store on
encrypted storage and out of backups that outlive the retention period.
"""

from __future__ import annotations

import base64
import json
import os
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.errors import LedgerError
from ledger.layout import fsync_dir

ALG = "A256GCM"


class ShreddedError(LedgerError):
    """The subject's key was erased (or never existed): the field cannot be read."""

    code = "ledger.shredded"


def subject_key_id(subject: str) -> str:
    return sha256(b"subject-key\n" + subject.encode()).hexdigest()[:16]


def _aad(kid: str, context: str) -> bytes:
    return f"worker-certification/shred/v1\n{kid}\n{context}".encode()


class SubjectKeyStore:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def _path(self, kid: str) -> Path:
        return self.dir / f"{kid}.key"

    def _tombstone(self, kid: str) -> Path:
        return self.dir / f"{kid}.erased"

    def key(self, subject: str, *, create: bool = True) -> tuple[str, bytes]:
        kid = subject_key_id(subject)
        path = self._path(kid)
        try:
            return kid, path.read_bytes()
        except FileNotFoundError:
            if not create:
                raise ShreddedError(f"no key for subject key id {kid}", kid=kid) from None
        if self._tombstone(kid).exists():
            raise ShreddedError(
                f"subject key {kid} was erased; nothing new is encrypted for it", kid=kid
            )
        secret = AESGCM.generate_key(bit_length=256)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replace a key another writer created meanwhile
        except FileExistsError:
            os.unlink(tmp)
            return kid, path.read_bytes()
        os.unlink(tmp)
        fsync_dir(self.dir)
        return kid, secret

    def key_by_id(self, kid: str) -> bytes:
        try:
            return self._path(kid).read_bytes()
        except FileNotFoundError:
            erased = self._tombstone(kid).exists()
            raise ShreddedError(
                f"subject key {kid} " + ("was erased" if erased else "is unknown"),
                kid=kid,
                erased=erased,
            ) from None

    def erase(self, subject: str, *, now: float | None = None) -> bool:
        """Destroy the subject's key. Returns False if there was none."""
        kid = subject_key_id(subject)
        stone = {"kid": kid, "erased_at": time.time() if now is None else now}
        self._tombstone(kid).write_text(json.dumps(stone) + "\n")
        try:
            self._path(kid).unlink()
        except FileNotFoundError:
            fsync_dir(self.dir)
            return False
        fsync_dir(self.dir)
        return True

    def is_erased(self, subject: str) -> bool:
        return self._tombstone(subject_key_id(subject)).exists()


def encrypt_field(
    store: SubjectKeyStore, subject: str, value: Any, *, context: str = ""
) -> dict[str, str]:
    """Encrypt a JSON-able value for `subject`; the result is what goes into the event."""
    kid, secret = store.key(subject)
    iv = os.urandom(12)
    plain = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ct = AESGCM(secret).encrypt(iv, plain, _aad(kid, context))
    return {
        "enc": ALG,
        "kid": kid,
        "iv": base64.b64encode(iv).decode(),
        "ct": base64.b64encode(ct).decode(),
    }


def is_encrypted(value: Any) -> bool:
    return (
        isinstance(value, dict) and value.get("enc") == ALG and {"kid", "iv", "ct"} <= value.keys()
    )


def decrypt_field(store: SubjectKeyStore, blob: dict[str, str], *, context: str = "") -> Any:
    """The value, or ShreddedError if the subject's key is gone."""
    if not is_encrypted(blob):
        raise LedgerError("not an encrypted field", code="ledger.bad_argument")
    secret = store.key_by_id(blob["kid"])
    try:
        plain = AESGCM(secret).decrypt(
            base64.b64decode(blob["iv"]), base64.b64decode(blob["ct"]), _aad(blob["kid"], context)
        )
    except InvalidTag as exc:
        raise LedgerError(
            "encrypted field fails authentication", code="ledger.bad_ciphertext"
        ) from exc
    return json.loads(plain)
