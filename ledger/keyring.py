"""The key registry a ledger partition keeps inside itself, and the key events that change it.

Key events are ledger entries of kind 0x01 (only the ledger writes them; `append` cannot):

* ``ledger.key_added`` at index 0, unendorsed: the genesis key (signed by itself only).
* ``ledger.key_added`` later: a second key, signed by an active key and by the new key.
* ``ledger.key_rotated``: signed by the outgoing key (authorisation) and the incoming key
  (proof of possession); the outgoing key may sign checkpoints up to size index+1, the new
  one from size index+1 on.

Each signature is over `statement(...)`, which binds origin, partition and index, so a signed
statement cannot be replayed elsewhere. A checkpoint of size s is accepted if a key of the
registry whose window contains s signed it. All keys of a registry are linked by these double
signatures, so trusting any one of them (an anchor) trusts the registry; see README "Trust".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import LedgerError
from ledger.keys import SigningKey, VerifierKey

KEY_ADDED = "ledger.key_added"
KEY_ROTATED = "ledger.key_rotated"
TAIL_TRUNCATED = "ledger.tail_truncated"
KEY_EVENT_TYPES = (KEY_ADDED, KEY_ROTATED)


class KeyEventError(LedgerError):
    code = "ledger.bad_key_event"


def statement(origin_p: str, index: int, action: str, old: str | None, new: str) -> bytes:
    return (
        "worker-certification ledger key event v1\n"
        f"origin {origin_p}\nindex {index}\naction {action}\nold {old or '-'}\nnew {new}\n"
    ).encode()


def key_event_payload(
    origin_p: str, index: int, action: str, new: SigningKey, old: SigningKey | None
) -> dict[str, Any]:
    msg = statement(origin_p, index, action, old.vkey() if old else None, new.vkey())
    payload: dict[str, Any] = {
        "action": action,
        "new_vkey": new.vkey(),
        "old_vkey": old.vkey() if old else None,
        "sig_new": base64.b64encode(new.sign(msg)).decode(),
        "sig_old": base64.b64encode(old.sign(msg)).decode() if old else None,
    }
    return payload


@dataclass
class KeyRecord:
    key: VerifierKey
    valid_from: int  # smallest checkpoint size it may sign
    valid_until: int | None = None  # largest checkpoint size it may sign (None: open)
    added_at: int = 0

    def covers(self, size: int) -> bool:
        return self.valid_from <= size and (self.valid_until is None or size <= self.valid_until)


@dataclass
class Keyring:
    origin_p: str
    records: dict[tuple[str, bytes], KeyRecord] = field(default_factory=dict)
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def signers_for(self, size: int) -> list[VerifierKey]:
        return [r.key for r in self.records.values() if r.covers(size)]

    def active(self, at_index: int) -> list[VerifierKey]:
        return self.signers_for(at_index + 1)

    def find(self, key: VerifierKey) -> KeyRecord | None:
        rec = self.records.get((key.name, key.key_id))
        return rec if rec is not None and rec.key.public == key.public else None

    def apply(self, index: int, event: dict[str, Any]) -> None:
        """Check a key event found at `index` and update the registry; raise KeyEventError."""
        etype = event.get("type")
        payload = event.get("payload")
        if etype not in KEY_EVENT_TYPES or not isinstance(payload, dict):
            if etype == TAIL_TRUNCATED:
                return
            raise KeyEventError(f"unknown ledger event type {etype!r} at index {index}")
        try:
            action = payload["action"]
            new = VerifierKey.parse(payload["new_vkey"])
            old = VerifierKey.parse(payload["old_vkey"]) if payload.get("old_vkey") else None
            sig_new = base64.b64decode(payload["sig_new"], validate=True)
            sig_old = base64.b64decode(payload["sig_old"], validate=True) if old else None
        except (KeyError, TypeError, ValueError, binascii.Error, LedgerError) as exc:
            raise KeyEventError(f"malformed key event at index {index}: {exc}") from exc
        want_action = "rotated" if etype == KEY_ROTATED else "added"
        if action != want_action:
            raise KeyEventError(f"key event at index {index} says {action!r} for {etype}")
        msg = statement(self.origin_p, index, action, old.vkey() if old else None, new.vkey())
        if not new.verify(msg, sig_new):
            raise KeyEventError(f"new key's signature fails at index {index}")
        if (new.name, new.key_id) in self.records:
            raise KeyEventError(f"key {new.vkey()} added twice (index {index})")
        if old is None:
            if etype != KEY_ADDED or index != 0:
                raise KeyEventError(f"unendorsed key event at index {index} (only genesis is)")
        else:
            rec = self.find(old)
            if rec is None or not rec.covers(index + 1):
                raise KeyEventError(f"endorsing key {old.vkey()} is not active at index {index}")
            if sig_old is None or not old.verify(msg, sig_old):
                raise KeyEventError(f"endorsing key's signature fails at index {index}")
            if etype == KEY_ROTATED:
                rec.valid_until = index + 1
        self.records[(new.name, new.key_id)] = KeyRecord(new, index + 1, None, index)
        self.events.append((index, event))

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin_p, "events": [[i, e] for i, e in self.events]}

    @classmethod
    def from_events(cls, origin_p: str, events: list[tuple[int, dict[str, Any]]]) -> Keyring:
        ring = cls(origin_p)
        for index, event in events:
            ring.apply(index, event)
        return ring
