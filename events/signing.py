"""What approvers sign, defined once: the canonical approval bytes and the request hash.

Canonical approval (approve, deny, revoke, resume, and emergency "override")
---------------------------------------------------------------------------
A JSON object with exactly these seven members, every value a string::

    approver_id     the approver's registered id
    approver_role   the role the approver acts in (one they are registered with)
    context         "worker-certification/approval/v1" (domain separation: these bytes can
                    never be mistaken for another signed message of ours)
    decided_at      UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ (exactly 6 fraction digits, "Z")
    decision        "approve" | "deny" | "revoke" | "resume" | "override"
    permit_id       the permit id (for an emergency override: the override id)
    request_sha256  64 lowercase hex digits: the hash of the request as approved (below)

serialised with the members in this (sorted) order, no whitespace, UTF-8. Strings escape only
`"`, `\\` and U+0000..U+001F (as \\b \\t \\n \\f \\r or lowercase \\u00xx); every other
character is written as itself. That is RFC 8785 (JCS) for a string-only object, and it is
exactly what a browser produces with

    const bytes = new TextEncoder().encode(JSON.stringify({
      approver_id, approver_role, context: "worker-certification/approval/v1",
      decided_at, decision, permit_id, request_sha256 }));   // keys in this order
    const sig = await crypto.subtle.sign("Ed25519", privateKey, bytes);

(JS `toISOString()` gives milliseconds: append "000" before the "Z".) Lone UTF-16 surrogates
are refused (JSON.stringify would escape them, Python would not encode them).

The signature is Ed25519 (RFC 8032) over those bytes, sent as standard base64 (with padding)
of the 64 signature bytes. Public keys are standard base64 of the 32 raw key bytes; a key's id
is the first 16 hex digits of SHA-256 over those 32 bytes.

The role is signed as well as the approver: quorums count roles, and nobody may relabel an
approval given as `security_lead` into one given as `cto`.

Request hash
------------
`request_sha256` = SHA-256 (lowercase hex) of the RFC 8785 canonical JSON of the request
document: the `permit.requested` payload (or `override.requested` payload) as JSON, without
the members `request_sha256`, `key_id` and `signature`, times written as decided_at above.
An approval names the request it approves; if the request changes, old approvals no longer
match it and are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from events.envelope import format_time

APPROVAL_CONTEXT = "worker-certification/approval/v1"
DECISIONS = ("approve", "deny", "revoke", "resume", "override")
UNSIGNED_FIELDS = frozenset({"request_sha256", "key_id", "signature"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class SigningError(ValueError):
    """An approval that cannot be put into canonical form (bad value, bad key, bad base64)."""


def canonical_approval(*, permit_id: str, request_sha256: str, decision: str,
                       decided_at: datetime, approver_id: str, approver_role: str) -> bytes:
    """The bytes an approver signs. See the module docstring for the exact construction."""
    if decision not in DECISIONS:
        raise SigningError(f"decision must be one of {', '.join(DECISIONS)}")
    if not _HEX64.match(request_sha256):
        raise SigningError("request_sha256 must be 64 lowercase hex digits")
    if decided_at.tzinfo is None:
        raise SigningError("decided_at needs a time zone")
    members = {"approver_id": approver_id, "approver_role": approver_role,
               "context": APPROVAL_CONTEXT, "decided_at": format_time(decided_at),
               "decision": decision, "permit_id": permit_id, "request_sha256": request_sha256}
    for name, value in members.items():
        if not isinstance(value, str) or not value:
            raise SigningError(f"{name} must be non-empty text")
        if _SURROGATE.search(value):
            raise SigningError(f"{name} contains a lone surrogate")
    return json.dumps(members, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def request_document(request: BaseModel) -> dict[str, Any]:
    """The request as hashed: JSON values, times in the one spelling, unsigned fields dropped.

    Takes the validated payload model, never a raw dict: a dict from JSON may spell its times
    differently, and the same request must always have the same hash."""
    data = request.model_dump()
    return {k: _jsonable(v) for k, v in data.items() if k not in UNSIGNED_FIELDS}


_SAFE_INT = 2**53
_ASTRAL = re.compile("[\U00010000-\U0010ffff\ud800-\udfff]")


def _plain(value: Any) -> bool:
    """True when the stdlib encoder (sorted keys, compact, UTF-8) writes exactly RFC 8785:
    no floats, integers within +-2**53, no characters outside the BMP (where UTF-16 key order
    and code-point order could differ) and no lone surrogates. (ledger/canonical.py makes the
    same argument for ledger entries; events may not import the ledger.)"""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -_SAFE_INT < value < _SAFE_INT
    if isinstance(value, str):
        return _ASTRAL.search(value) is None
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(k) and _plain(v) for k, v in value.items())
    return False  # floats and anything else: the reference encoder decides


def canonical_json(document: Any) -> bytes:
    """RFC 8785 bytes of a JSON value (stdlib fast path when it is exact, else rfc8785)."""
    if _plain(document):
        return json.dumps(document, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    try:
        return rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as error:
        raise SigningError(f"no canonical form: {error}") from None


def request_sha256(request: BaseModel) -> str:
    """SHA-256 hex of the RFC 8785 form of `request_document(request)`."""
    return hashlib.sha256(canonical_json(request_document(request))).hexdigest()


# --- keys and signatures ------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SigningError(f"{what} is not standard base64") from None


def public_key_bytes(public_key: str) -> bytes:
    raw = _b64decode(public_key, "public key")
    if len(raw) != 32:
        raise SigningError("an Ed25519 public key has 32 bytes")
    return raw


def key_id_for(public_key: str) -> str:
    return hashlib.sha256(public_key_bytes(public_key)).hexdigest()[:16]


def public_key_of(private_key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def sign(private_key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message)).decode("ascii")


def verify(public_key: str, message: bytes, signature: str) -> bool:
    """True only for a valid Ed25519 signature; never raises on bad input."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_bytes(public_key))
        raw = _b64decode(signature, "signature")
    except (SigningError, ValueError):
        return False
    if len(raw) != 64:
        return False
    try:
        key.verify(raw, message)
    except InvalidSignature:
        return False
    return True


def sign_approval(private_key: Ed25519PrivateKey, *, permit_id: str, request_sha256: str,
                  decision: str, decided_at: datetime, approver_id: str, approver_role: str
                  ) -> dict[str, str]:
    """The signed fields of an approval, ready to send (what the CLI and client use)."""
    message = canonical_approval(permit_id=permit_id, request_sha256=request_sha256,
                                 decision=decision, decided_at=decided_at,
                                 approver_id=approver_id, approver_role=approver_role)
    public = public_key_of(private_key)
    return {"permit_id": permit_id, "request_sha256": request_sha256, "decision": decision,
            "decided_at": format_time(decided_at), "approver_id": approver_id,
            "approver_role": approver_role, "key_id": key_id_for(public),
            "signature": sign(private_key, message)}
