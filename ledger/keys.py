"""Ed25519 signing keys in the C2SP signed-note formats.

key ID  = SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]
vkey    = name + "+" + hex8(key ID) + "+" + base64(0x01 || public key)      (what verifiers pin)
private = "PRIVATE+KEY+" + name + "+" + hex8(key ID) + "+" + base64(0x01 || 32-byte seed)
The private form is the one golang.org/x/mod/sumdb/note reads, so Go tools can use our keys.
Key files are written 0600 in a 0700 folder; loading refuses a file others can read.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyStoreError

ALG_ED25519 = 0x01


def check_key_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise KeyStoreError(
            f"bad key name {name!r}: non-empty, no spaces, no '+'", code="ledger.key_invalid"
        )
    return name


def key_id_for(name: str, public: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A public key as pinned by verifiers: name, 4-byte key ID, 32-byte Ed25519 key."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        try:
            name, hex_id, b64 = vkey.strip().split("+", 2)
            raw = base64.b64decode(b64, validate=True)
            key_id = bytes.fromhex(hex_id)
        except (ValueError, binascii.Error) as exc:
            raise KeyStoreError(f"not a verifier key: {vkey!r}", code="ledger.key_invalid") from exc
        check_key_name(name)
        if len(key_id) != 4 or len(raw) != 33 or raw[0] != ALG_ED25519:
            raise KeyStoreError(f"not an Ed25519 verifier key: {vkey!r}", code="ledger.key_invalid")
        public = raw[1:]
        if key_id_for(name, public) != key_id:
            raise KeyStoreError(
                f"key ID does not match the key: {vkey!r}", code="ledger.key_invalid"
            )
        return cls(name, key_id, public)

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def vkey(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_id.hex()}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """An Ed25519 private key with its note key name. Keep it outside the repo and the ledger."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = check_key_name(name)
        self._private = private
        self.public = private.public_key().public_bytes_raw()
        self.key_id = key_id_for(name, self.public)

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    @property
    def verifier(self) -> VerifierKey:
        return VerifierKey(self.name, self.key_id, self.public)

    def vkey(self) -> str:
        return self.verifier.vkey()

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_text(self) -> str:
        seed = self._private.private_bytes_raw()
        b64 = base64.b64encode(b"\x01" + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{b64}"

    @classmethod
    def from_private_text(cls, text: str) -> SigningKey:
        parts = text.strip().split("+", 4)
        try:
            if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
                raise ValueError("not PRIVATE+KEY+...")
            raw = base64.b64decode(parts[4], validate=True)
            if len(raw) != 33 or raw[0] != ALG_ED25519:
                raise ValueError("not an Ed25519 seed")
            key = cls(parts[2], Ed25519PrivateKey.from_private_bytes(raw[1:]))
        except (ValueError, binascii.Error) as exc:
            raise KeyStoreError(f"not a signing key: {exc}", code="ledger.key_invalid") from exc
        if key.key_id.hex() != parts[3].lower():
            raise KeyStoreError("signing key ID does not match the key", code="ledger.key_invalid")
        return key

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the key 0600 (folder 0700), atomically; refuse to replace a key by accident."""
        path = Path(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.exists() and not overwrite:
            raise KeyStoreError(f"a key already exists at {path}", code="ledger.key_exists")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (self.private_text() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyStoreError(
                    f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it",
                    code="ledger.key_permissions",
                )
            text = path.read_text()
        except FileNotFoundError as exc:
            raise KeyStoreError(f"no signing key at {path}", code="ledger.key_missing") from exc
        return cls.from_private_text(text)

    def __repr__(self) -> str:
        return f"SigningKey({self.vkey()!r})"
