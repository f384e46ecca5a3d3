"""C2SP signed notes: text, a blank line, then lines "— <key name> base64(key ID || signature)".

Verification follows the spec: signatures from unknown keys (name and ID not both known) are
ignored; a known key whose signature fails rejects the note; no verified known key rejects it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import SigningKey, VerifierKey

SIG_PREFIX = "\u2014 "
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
MAX_SIGNATURES = 64
MAX_NOTE_BYTES = 64 * 1024


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def sign_note(text: str, signers: Iterable[SigningKey]) -> str:
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    message = text.encode()
    lines = []
    for key in signers:
        blob = base64.b64encode(key.key_id + key.sign(message)).decode()
        lines.append(f"{SIG_PREFIX}{key.name} {blob}\n")
    if not lines:
        raise NoteError("a note needs at least one signature")
    return text + "\n" + "".join(lines)


def parse_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a note into its text and signatures (nothing verified yet)."""
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise NoteError("note is too large")
    if _CONTROL.search(note):
        raise NoteError("note contains control characters")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("note has no signature block")
    text, block = note[: cut + 1], note[cut + 2 :]
    sigs: list[NoteSignature] = []
    for line in block.split("\n")[:-1]:
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"malformed signature line {line!r}")
        name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise NoteError(f"malformed signature line {line!r}") from exc
        if not name or " " in b64 or len(raw) < 5:
            raise NoteError(f"malformed signature line {line!r}")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise NoteError("note needs 1..64 signatures")
    return text, sigs


def verify_note(note: str, known: Iterable[VerifierKey]) -> tuple[str, list[VerifierKey]]:
    """Return (text, keys whose signatures verified). Raise NoteError as the spec requires."""
    text, sigs = parse_note(note)
    by_id = {(k.name, k.key_id): k for k in known}
    message = text.encode()
    good: list[VerifierKey] = []
    for sig in sigs:
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not key.verify(message, sig.signature):
            raise NoteError(f"signature by known key {key.vkey()} does not verify")
        good.append(key)
    if not good:
        raise NoteError("no signature from a trusted key")
    return text, good
