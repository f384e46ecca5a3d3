"""Key management for `certify keys generate|rotate|show`: functions over a key file path.

The signing key lives outside the repository and the ledger folder (the CLI picks the path;
`default_key_path()` is a suggestion: $XDG_CONFIG_HOME/worker-certification/ledger.key).
Rotation keeps the old key (as <name>.<keyid>.retired, 0600) so old notes stay attributable,
and is resumable: the new key is written first as <name>.next, the ledger rotation is
recorded, then the files are swapped. Running rotate again after a crash finishes the job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ledger.chain import DEFAULT_ORIGIN, Ledger
from ledger.errors import KeyStoreError
from ledger.keys import SigningKey


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "worker-certification" / "ledger.key"


def check_key_location(
    key_path: Path, ledger_dir: Path | None = None, repo_dir: Path | None = None
) -> None:
    """Refuse a key file inside the ledger folder or the repository."""
    key = Path(key_path).resolve()
    for folder, what in ((ledger_dir, "ledger folder"), (repo_dir, "repository")):
        if folder is not None and key.is_relative_to(Path(folder).resolve()):
            raise KeyStoreError(
                f"signing key {key} must live outside the {what} {folder}",
                code="ledger.key_location",
            )


def keys_generate(
    key_path: Path,
    name: str = DEFAULT_ORIGIN,
    *,
    ledger_dir: Path | None = None,
    repo_dir: Path | None = None,
    overwrite: bool = False,
) -> SigningKey:
    check_key_location(key_path, ledger_dir, repo_dir)
    key = SigningKey.generate(name)
    key.save(Path(key_path), overwrite=overwrite)
    return key


def keys_show(key_path: Path) -> str:
    """The verifier key (vkey) auditors pin: name+keyid+base64(0x01||pubkey)."""
    return SigningKey.load(Path(key_path)).vkey()


def _next_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".next")


def keys_rotate(
    key_path: Path,
    ledger_dir: Path,
    *,
    origin: str = DEFAULT_ORIGIN,
    name: str | None = None,
    **ledger_options: Any,
) -> dict[str, str]:
    """Rotate the ledger's signing key; returns {"old": vkey, "new": vkey, "retired_file": ...}.

    The ledger must not be open elsewhere (its writer lock is taken).
    """
    key_path = Path(key_path)
    check_key_location(key_path, ledger_dir)
    old = SigningKey.load(key_path)
    nxt = _next_path(key_path)
    if nxt.exists():
        new = SigningKey.load(nxt)  # resume an interrupted rotation
    else:
        new = SigningKey.generate(name or old.name)
        new.save(nxt)
    ledger = Ledger.open(
        Path(ledger_dir), signer=new, retired_signers=[old], origin=origin, **ledger_options
    )
    ledger.close()
    retired = key_path.with_name(f"{key_path.name}.{old.key_id_hex}.retired")
    if not retired.exists():
        old.save(retired)
    os.replace(nxt, key_path)
    return {"old": old.vkey(), "new": new.vkey(), "retired_file": str(retired)}
