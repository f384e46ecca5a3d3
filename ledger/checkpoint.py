"""C2SP tlog-checkpoint bodies: "<origin>\\n<size>\\n<base64 root>\\n", signed as a note.

Each ledger partition is its own log with origin "<ledger origin>/p<N>".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import SigningKey, VerifierKey
from ledger.note import parse_note, sign_note, verify_note


def partition_origin(origin: str, partition: int) -> str:
    return f"{origin}/p{partition}"


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    def sign(self, signers: Iterable[SigningKey]) -> str:
        return sign_note(self.body(), signers)

    @classmethod
    def parse_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[0]:
            raise NoteError("checkpoint needs origin, size and root lines")
        origin, size_s, root_s = lines[0], lines[1], lines[2]
        if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s[0] == "0"):
            raise NoteError(f"bad checkpoint size {size_s!r}")
        try:
            root = base64.b64decode(root_s, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError("bad checkpoint root") from exc
        if len(root) != 32:
            raise NoteError("checkpoint root must be 32 bytes")
        if any(not line for line in lines[3:-1]):
            raise NoteError("empty extension line")
        return cls(origin, int(size_s), root)

    @classmethod
    def parse(cls, note: str) -> Checkpoint:
        """Parse without verifying signatures (use `verify` for anything you rely on)."""
        text, _ = parse_note(note)
        return cls.parse_body(text)

    @classmethod
    def verify(
        cls, note: str, known: Iterable[VerifierKey]
    ) -> tuple[Checkpoint, list[VerifierKey]]:
        text, good = verify_note(note, known)
        return cls.parse_body(text), good
