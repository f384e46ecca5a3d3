"""Where the ledger's signing key lives: outside the repository and the ledger folder, 0600."""

from __future__ import annotations

import sys

from pathlib import Path

from ledger import SigningKey, keys_generate
from streams.config import Settings


def load_signing_key(settings: Settings, *, create: bool = True) -> SigningKey:
    path = settings.signing_key_path
    if path.exists():
        return SigningKey.load(path)
    if not create:
        raise FileNotFoundError(f"no signing key at {path}; run `certify keys generate`")
    key = keys_generate(path, settings.key_name, ledger_dir=settings.ledger_dir,
                        repo_dir=Path(__file__).resolve().parents[1])
    print(f"generated ledger signing key {key.vkey()} at {path}", file=sys.stderr)
    return key
