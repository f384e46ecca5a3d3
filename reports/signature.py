"""Signed reports: the ledger's key signs a report's bytes, a `report.generated` event records
the signature in the ledger, and anyone with the file and the ledger (or the ledger's
verifier key) can check both offline.

What is signed: the report's JSON as written (compact, UTF-8, `reports.render` "json") without
its last member `signature`, i.e. the file's bytes before `,"signature":` followed by `}`.
The signature member is always the last one, so

    signed = data[:data.rindex(b',"signature":{')] + b"}"

recovers the signed bytes from a report file in any language; Ed25519 over `signed` must
verify with the key in `signature.vkey` (a C2SP verifier key: name+keyid+base64(0x01||key)),
and SHA-256(`signed`) is `signature.sha256`, which the `report.generated` event in the ledger
(`signature.ledger`: event id, partition, index) also names. Nothing but the signature member
may follow the signed bytes: a file with anything changed, added or re-indented fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from events import Envelope
from events.payloads import ReportGenerated
from ledger.errors import LedgerError, NoteError, ProofError
from ledger.keys import SigningKey, VerifierKey
from ledger.layout import partition_dir
from ledger.merkle import verify_inclusion
from ledger.partitioner import partition_for
from ledger.proofs import inclusion_proof
from ledger.reader import iter_raw, read_entry
from reports.lazy import raw_of

SIGNATURE_FORMAT = "worker-certification-report-signature/1"
LAZY_PARTS = (("population", "changes"), ("evidence", "entries"))
MARKER = b',"signature":{'
EVENT_TYPE = "report.generated"
PRODUCER = "reports"
SIGNED = ("the report's compact JSON as written, without this last member: the file's bytes "
          "before ',\"signature\":' followed by '}' (docs/reports.md)")

# (report.generated envelope) -> the ledger index it was recorded at, if the recorder knows it
Recorder = Callable[[Envelope], int | None]


def dumps(document: dict[str, Any],
          raw: dict[tuple[str, str], str | None] | None = None) -> bytes:
    """The JSON rendering of a report (what is written, stored and signed).

    `raw` maps (member, sub-member) to JSON text that is already the value's encoding (the
    lines and evidence entries as DuckDB built them, which the document holds parsed): that
    text is written in place of encoding the value again."""
    parts: dict[tuple[str, str], str] = {}
    for key in LAZY_PARTS:
        outer = document.get(key[0])
        value = outer.get(key[1]) if isinstance(outer, dict) else None
        text = (raw or {}).get(key) or raw_of(value)  # reports/lazy.py: text nobody read yet
        if text is not None:
            parts[key] = text
    if not parts:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode()
    shallow = dict(document)
    tokens: dict[str, str] = {}
    for (outer, inner), text in parts.items():
        token = f"raw-{secrets.token_hex(16)}"
        shallow[outer] = {**shallow[outer], inner: token}
        tokens[f'"{token}"'] = text
    # spliced as bytes: the small rest of the document may hold non-ASCII text, which would
    # widen the big (ASCII) parts if they were joined as str
    out = json.dumps(shallow, separators=(",", ":"), ensure_ascii=False,
                     default=str).encode()
    found = sorted((out.find(quoted.encode()), quoted) for quoted in tokens)
    if any(at < 0 for at, _ in found):
        raise ValueError("raw JSON placeholder lost")
    pieces: list[bytes] = []
    done = 0
    for at, quoted in found:
        pieces += [out[done:at], tokens[quoted].encode()]
        done = at + len(quoted)
    return b"".join([*pieces, out[done:]])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def report_event(document: dict[str, Any], body_sha256: str, signer: SigningKey,
                 signature: bytes, generated_by: str) -> Envelope:
    consistency = document.get("consistency") or {}
    payload = ReportGenerated(
        report_id=document["report_id"], framework=document["framework"]["key"],
        period_from=datetime.fromisoformat(document["period"]["from"]),
        period_to=datetime.fromisoformat(document["period"]["to"]), format="json",
        report_sha256=body_sha256,
        checkpoint={str(c["partition"]): {"size": c["size"], "root": c["root"]}
                    for c in document.get("checkpoints", [])},
        previous_report_id=consistency.get("previous_report"),
        population=document["population"]["count"],
        exceptions=document["exceptions"]["count"], key_id=signer.key_id_hex,
        signature=_b64(signature), generated_by=generated_by or "certify")
    return Envelope(type=EVENT_TYPE, occurred_at=datetime.fromisoformat(
        document["generated_at"]), producer=PRODUCER, subject=document["report_id"],
        payload=payload.model_dump(mode="json"))


def sign(document: dict[str, Any], signer: SigningKey, *, partitions: int | None = None,
         record: Recorder | None = None, generated_by: str = "",
         body: bytes | None = None) -> bytes:
    """Sign the document (which must have no `signature` yet), record `report.generated` with
    `record` (if given) and add the `signature` member, last. Returns the JSON bytes of the
    signed document (what `render(document, "json")` gives, without its final newline)."""
    if "signature" in document:
        raise ValueError("the document is signed already")
    body = dumps(document)
    digest = hashlib.sha256(body).hexdigest()
    value = signer.sign(body)
    event = report_event(document, digest, signer, value, generated_by)
    ledger: dict[str, Any] | None = None
    if record is not None:
        index = record(event)
        ledger = {"event_id": event.event_id, "type": EVENT_TYPE,
                  "partition": partition_for(event.subject, partitions or 1),
                  "index": index}
    block = {"format": SIGNATURE_FORMAT, "algorithm": "Ed25519", "signed": SIGNED,
             "sha256": digest, "key_id": signer.key_id_hex, "vkey": signer.vkey(),
             "value": _b64(value), "ledger": ledger}
    document["signature"] = block
    return body[:-1] + b',"signature":' + dumps(block) + b"}"


# --- verification ------------------------------------------------------------------------------


class SignatureFormatError(ValueError):
    """The file is not a signed JSON report."""


def split(data: bytes) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """(signed bytes, signature member, the document without it) of a report file."""
    data = data[:-1] if data.endswith(b"\n") else data
    at = data.rfind(MARKER)
    if at < 0 or not data.endswith(b"}"):
        raise SignatureFormatError("not a signed JSON report (no signature member at its end; "
                                   "only the JSON rendering carries the signature)")
    signed = data[:at] + b"}"
    try:
        block = json.loads(data[at + len(MARKER) - 1:-1])
        document = json.loads(signed)
    except ValueError as error:
        raise SignatureFormatError(f"not a signed JSON report ({error})") from None
    if not isinstance(block, dict) or not isinstance(document, dict) or \
            "signature" in document:
        raise SignatureFormatError("not a signed JSON report (the signature must be the "
                                   "document's last member, and its only one)")
    return signed, block, document


@dataclass
class Verdict:
    report_id: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append({"check": name, "passed": bool(passed), "detail": detail})
        return bool(passed)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"report_id": self.report_id, "verified": self.verified, "checks": self.checks}


def verify_report(data: bytes, *, ledger_dir: Path | None = None,
                  trusted: Iterable[str] = ()) -> Verdict:
    """Check a report file: its signature, that the key is trusted (one of `trusted`, or in
    the ledger's key registry), and (with `ledger_dir`) that the ledger records this report's
    signature in a `report.generated` entry covered by a signed checkpoint. Never raises for a
    bad file: the verdict says what failed."""
    verdict = Verdict()
    try:
        signed, block, document = split(data)
    except SignatureFormatError as error:
        verdict.check("format", False, str(error))
        return verdict
    verdict.report_id = document.get("report_id")
    digest = hashlib.sha256(signed).hexdigest()
    try:
        key = VerifierKey.parse(str(block.get("vkey")))
        value = base64.b64decode(str(block.get("value")), validate=True)
    except (ValueError, binascii.Error, LedgerError) as error:
        verdict.check("signature", False, f"bad signature member ({error})")
        return verdict
    ok = key.key_id_hex == block.get("key_id") and digest == block.get("sha256") and \
        key.verify(signed, value)
    verdict.check("signature", ok, f"Ed25519 by {key.vkey()} over {len(signed)} bytes, sha256 "
                  f"{digest}" if ok else "the signature does not verify over the report's bytes "
                  "(the file was changed, or it was signed by another key)")
    anchors = [VerifierKey.parse(v) for v in trusted]
    in_anchors = any(a.public == key.public for a in anchors)
    _check_evidence(verdict, document, ledger_dir, [key, *anchors], [a.vkey() for a in anchors])
    location = block.get("ledger") or None
    if ledger_dir is None:
        verdict.check("key", in_anchors, "one of the trusted keys" if in_anchors else
                      "not among the trusted keys (give --trusted-key, or the ledger)")
        return verdict
    from reports.evidence import EvidenceError, keyring

    partition = location.get("partition") if isinstance(location, dict) else None
    if not isinstance(partition, int):
        verdict.check("key", in_anchors, "one of the trusted keys" if in_anchors else
                      "not among the trusted keys")
        verdict.check("ledger", False, "the report names no ledger entry (made with "
                      "--no-register, or by a host without the ledger)")
        return verdict
    try:
        ring = keyring(ledger_dir, partition)
    except EvidenceError as error:
        verdict.check("key", False, error.message)
        return verdict
    registered = ring.find(key) is not None
    anchored = not anchors or any(ring.find(a) for a in anchors)
    verdict.check("key", (registered and anchored) or in_anchors,
                  ("in the ledger's key registry" + ("" if anchors else
                   " (not anchored: no --trusted-key given)")) if registered and anchored else
                  "one of the trusted keys" if in_anchors else
                  "neither in the ledger's key registry (anchored to a trusted key) nor trusted")
    _check_ledger(verdict, Path(ledger_dir), partition, location, block, digest, anchors)
    return verdict


def _check_evidence(verdict: Verdict, document: dict[str, Any], ledger_dir: Path | None,
                    keys: list[VerifierKey], trusted: list[str]) -> None:
    """Every partition's multiproof rebuilds the root of the signed checkpoint the report names
    (the note's signature checked against the ledger's key registry, or without the ledger
    against the report's own key and the trusted keys), from the leaf hashes of the entries it
    proves; with proofs "all", every cited entry is proven."""
    from ledger.checkpoint import Checkpoint
    from reports import multiproof
    from reports.evidence import EvidenceError, verify_checkpoint

    evidence = document.get("evidence") or {}
    entries, proofs = evidence.get("entries") or {}, evidence.get("multiproofs") or {}
    notes = {str(c.get("partition")): c.get("note") for c in document.get("checkpoints") or []}
    proven = 0
    try:
        for partition, proof in sorted(proofs.items()):
            note = notes.get(partition)
            if not isinstance(note, str):
                raise ValueError(f"partition {partition}: no checkpoint named")
            if ledger_dir is not None:
                checkpoint = verify_checkpoint(ledger_dir, int(partition), note, trusted)
                size, top = checkpoint.size, checkpoint.root
            else:
                parsed, _ = Checkpoint.verify(note, keys)
                size, top = parsed.size, parsed.root
            if proof.get("tree_size") != size:
                raise ValueError(f"partition {partition}: tree size is not the checkpoint's")
            leaves = {int(i): bytes.fromhex(entries[f"{partition}:{i}"]["leaf_hash"])
                      for i in proof.get("indexes") or []}
            nodes = [base64.b64decode(h, validate=True) for h in proof.get("nodes") or []]
            if multiproof.root(size, leaves, nodes) != top:
                raise ValueError(f"partition {partition}: the multiproof does not lead to the "
                                 "checkpoint's root")
            proven += len(leaves)
    except (ValueError, KeyError, TypeError, binascii.Error, LedgerError, EvidenceError) as error:
        verdict.check("evidence", False, str(getattr(error, "message", None) or error))
        return
    if evidence.get("proofs") == "all" and proven != len(entries):
        verdict.check("evidence", False, f"{len(entries) - proven} cited entries carry no proof")
        return
    verdict.check("evidence", True, f"{proven} of {len(entries)} cited entries proven included "
                  f"in the signed checkpoints ({len(proofs)} multiproofs)" if proofs else
                  "the report carries no inclusion proofs (made with --proofs none, or "
                  "without the ledger)")


def _find(ledger_dir: Path, partition: int, event_id: str, hint: Any) -> int | None:
    """The index of an event in a partition: the hint if it holds it, else the ids side file,
    else a scan of the entries."""
    pdir = partition_dir(ledger_dir, partition)
    if isinstance(hint, int) and hint >= 0:
        try:
            if read_entry(pdir, partition, hint).event.get("event_id") == event_id:
                return hint
        except LedgerError:
            pass
    try:
        data = (pdir / "index" / "ids.txt").read_bytes()
        needle = event_id.encode() + b"\n"
        at = 0 if data.startswith(needle) else data.find(b"\n" + needle)
        if at >= 0:
            return data.count(b"\n", 0, at + (1 if at else 0))
    except OSError:
        pass
    quoted = b'"event_id":' + json.dumps(event_id).encode()
    for index, _, _, _, body in iter_raw(pdir, partition):
        if quoted in body and json.loads(body).get("event_id") == event_id:
            return index
    return None


def _check_ledger(verdict: Verdict, ledger_dir: Path, partition: int, location: dict[str, Any],
                  block: dict[str, Any], digest: str, anchors: list[VerifierKey]) -> None:
    from reports.evidence import EvidenceError, verify_checkpoint

    event_id = str(location.get("event_id"))
    try:
        index = _find(ledger_dir, partition, event_id, location.get("index"))
    except (OSError, LedgerError, ValueError) as error:
        verdict.check("ledger", False, f"partition {partition} unreadable ({error})")
        return
    if index is None:
        verdict.check("ledger", False, f"no entry {event_id} in partition {partition}")
        return
    event = read_entry(partition_dir(ledger_dir, partition), partition, index).event
    payload = event.get("payload") or {}
    same = (event.get("type") == EVENT_TYPE and payload.get("report_sha256") == digest
            and payload.get("signature") == block.get("value")
            and payload.get("key_id") == block.get("key_id"))
    where = f"p{partition}#{index}"
    if not verdict.check("ledger", same, f"{EVENT_TYPE} at {where} records this sha256 and "
                         "signature" if same else f"the entry at {where} does not record this "
                         "report's sha256 and signature"):
        return
    try:
        proof = inclusion_proof(ledger_dir, partition, index)
        note = proof["checkpoint"]
        if note is None:
            raise ProofError("no checkpoint note for the proof")
        checkpoint = verify_checkpoint(ledger_dir, partition, note,
                                       [a.vkey() for a in anchors])
        verify_inclusion(index, checkpoint.size, base64.b64decode(proof["leafHash"]),
                         [base64.b64decode(h) for h in proof["proof"]], checkpoint.root)
    except (LedgerError, NoteError, EvidenceError) as error:
        message = getattr(error, "message", None) or str(error)
        verdict.check("checkpoint", False, f"{where} is not covered by a verified signed "
                      f"checkpoint yet ({message})")
        return
    verdict.check("checkpoint", True, f"{where} is included in the signed checkpoint of size "
                  f"{checkpoint.size} (RFC 9162 inclusion proof verified)")
