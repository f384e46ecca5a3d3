"""Settings: read once in the shell (flags over environment variables over defaults), passed down
as values. Every flag has a CERTIFY_* variable; the README lists them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = Path("data")
# Keys live outside the repository and the ledger folder (issue 3), 0700/0600.
DEFAULT_KEY_DIR = Path("~/.local/share/worker-certification/keys")
DEFAULT_PARTITIONS = 4
DEFAULT_KEY_NAME = "worker-certification.ledger"
DEFAULT_ORIGIN = "worker-certification"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    key_dir: Path
    partitions: int
    key_name: str
    origin: str
    broker: str
    checkpoint_every: int
    checkpoint_interval_s: float

    @property
    def ledger_dir(self) -> Path:
        return self.data_dir / "ledger"

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "certify.duckdb"

    @property
    def dead_letter_dir(self) -> Path:
        return self.data_dir / "dead-letter"

    @property
    def signing_key_path(self) -> Path:
        return self.key_dir / f"{self.key_name}.key"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def load_settings(data_dir: str | None = None, key_dir: str | None = None,
                  partitions: int | None = None, broker: str | None = None) -> Settings:
    parts = partitions if partitions is not None else int(
        _env("CERTIFY_PARTITIONS", str(DEFAULT_PARTITIONS)))
    if parts < 1:
        raise ValueError("partitions: must be at least 1")
    return Settings(
        data_dir=Path(data_dir or _env("CERTIFY_DATA_DIR", str(DEFAULT_DATA_DIR))),
        key_dir=Path(key_dir or _env("CERTIFY_KEY_DIR", str(DEFAULT_KEY_DIR))).expanduser(),
        partitions=parts,
        key_name=_env("CERTIFY_KEY_NAME", DEFAULT_KEY_NAME),
        origin=_env("CERTIFY_ORIGIN", DEFAULT_ORIGIN),
        broker=broker or _env("CERTIFY_BROKER", "kafka://127.0.0.1:9092"),
        checkpoint_every=int(_env("CERTIFY_CHECKPOINT_EVERY", "1000")),
        checkpoint_interval_s=float(_env("CERTIFY_CHECKPOINT_INTERVAL_S", "1.0")),
    )
