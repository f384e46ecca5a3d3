"""One root error for the ledger, with stable codes the shell maps to exit codes and HTTP status.

Codes are part of the interface: never rename one. `diagnostics()` gives the details as data.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose. `code` is stable (``ledger.*``)."""

    code: str = "ledger.error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details = details

    def diagnostics(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (errors cross process pools)
        return (_rebuild, (type(self), self.message, self.code, self.details))


def _rebuild(
    cls: type[LedgerError], message: str, code: str, details: dict[str, Any]
) -> LedgerError:
    err = cls.__new__(cls)
    LedgerError.__init__(err, message, code=code, **details)
    if isinstance(err, VerificationError):
        err.reason, err.partition, err.index = (
            details["reason"],
            details["partition"],
            details["index"],
        )
    return err


class PrevMismatchError(LedgerError):
    """An append stated the previous hash it expected, and the chain head is another one."""

    code = "ledger.prev_mismatch"


class KeyStoreError(LedgerError):
    """Signing-key files: missing, malformed, too open, or in a forbidden place."""

    code = "ledger.key_error"


class ProofError(LedgerError):
    """A Merkle proof (or a checkpoint it relies on) does not verify."""

    code = "ledger.bad_proof"


class NoteError(LedgerError):
    """A signed note or checkpoint is malformed or carries no valid trusted signature."""

    code = "ledger.bad_note"


# Reasons a verification can fail; VerificationError.code is "ledger.verify.<reason>".
REASONS = (
    "bad_frame",  # a frame's header is impossible (length, type, version)
    "bad_hash",  # a frame's stored hash is not the SHA-256 of its bytes
    "bad_link",  # an entry's prev is not the leaf hash of the entry before it
    "gap",  # an entry index is missing (the found index is higher than expected)
    "reordered",  # an entry index repeats or goes backwards (duplicate, swap)
    "bad_partition",  # an entry names another partition
    "torn_tail",  # the last frame is cut short (crash) and was not repaired by a writer
    "truncated",  # fewer entries than a signed checkpoint covers
    "bad_checkpoint",  # a checkpoint is malformed or names the wrong origin or size
    "bad_signature",  # a checkpoint has no valid signature from a trusted key
    "bad_root",  # a checkpoint's root is not the Merkle root of the entries it covers
    "bad_key_event",  # a key event in the ledger is malformed or not signed as required
    "untrusted_keys",  # none of the trusted keys passed in appears in the ledger's key registry
    "unsigned_tail",  # entries after the last signed checkpoint (allow_unsigned_tail=False)
    "bad_segment",  # a segment file is misnamed or out of place
    "missing",  # the ledger or a partition folder does not exist
)


class VerificationError(LedgerError):
    """The ledger does not verify. Names the partition, the first bad index and a reason."""

    def __init__(self, reason: str, message: str, *, partition: int, index: int, **details: Any):
        if reason not in REASONS:  # pragma: no cover - programming error
            raise ValueError(f"unknown reason {reason}")
        super().__init__(
            f"partition {partition}, index {index}: {reason}: {message}",
            code=f"ledger.verify.{reason}",
            partition=partition,
            index=index,
            reason=reason,
            **details,
        )
        self.reason = reason
        self.partition = partition
        self.index = index
