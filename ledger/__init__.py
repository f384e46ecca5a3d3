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
from ledger.keys import SigningKey, VerifierKey
from ledger.layout import Entry
from ledger.partitioner import partition_for
from ledger.reader import iter_entries
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
    "PrevMismatchError",
    "ProofError",
    "SigningKey",
    "VerificationError",
    "VerifierKey",
    "PartitionReport",
    "VerifyReport",
    "iter_entries",
    "partition_for",
    "verify",
]
