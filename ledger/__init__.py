"""Tamper-evident, signed, provable ledger. See ledger/README.md.

Imports nothing of the project: canonical JSON, hash chains, RFC 9162 Merkle trees, C2SP
checkpoints and its own storage.
"""

from ledger.chain import (
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_INTERVAL_S,
    DEFAULT_ORIGIN,
    AppendResult,
    Ledger,
)
from ledger.errors import (
    KeyStoreError,
    LedgerError,
    NoteError,
    PrevMismatchError,
    ProofError,
    VerificationError,
)
from ledger.export import export_jsonl, export_parquet
from ledger.keys import SigningKey, VerifierKey
from ledger.keystore import (
    check_key_location,
    default_key_path,
    keys_generate,
    keys_rotate,
    keys_show,
)
from ledger.layout import Entry
from ledger.partitioner import partition_for
from ledger.proofs import (
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    latest_checkpoints,
    tlog_proof,
    verify_tlog_proof,
)
from ledger.reader import iter_entries
from ledger.shred import ShreddedError, SubjectKeyStore, decrypt_field, encrypt_field
from ledger.verify import PartitionReport, VerifyReport, verify

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_CHECKPOINT_INTERVAL_S",
    "DEFAULT_ORIGIN",
    "AppendResult",
    "Entry",
    "KeyStoreError",
    "Ledger",
    "LedgerError",
    "NoteError",
    "PartitionReport",
    "PrevMismatchError",
    "ProofError",
    "ShreddedError",
    "SigningKey",
    "SubjectKeyStore",
    "VerificationError",
    "VerifierKey",
    "VerifyReport",
    "check_key_location",
    "consistency_proof",
    "decrypt_field",
    "default_key_path",
    "encrypt_field",
    "export_jsonl",
    "export_parquet",
    "inclusion_proof",
    "iter_entries",
    "keys_generate",
    "keys_rotate",
    "keys_show",
    "latest_checkpoint",
    "latest_checkpoints",
    "partition_for",
    "tlog_proof",
    "verify",
    "verify_tlog_proof",
]
