"""The report registry: every report made, with the signed checkpoints it was computed from.

    <data dir>/reports/registry.jsonl     one JSON object per report, append-only
    <data dir>/reports/<report id>.json   the report itself (the other formats render from it)

The next report proves that the ledger it reads extends the checkpoints of the last one
(a consistency proof per partition): nothing recorded before the previous report has been
removed or changed since, so a change that was in a period then is still in it now.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

REGISTRY = "registry.jsonl"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")


class Registry:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    @property
    def path(self) -> Path:
        return self.dir / REGISTRY

    def entries(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line (crash mid-append) is ignored, never fatal
            if isinstance(entry, dict) and "report_id" in entry:
                out.append(entry)
        return out

    def last(self) -> dict[str, Any] | None:
        entries = self.entries()
        return entries[-1] if entries else None

    def add(self, entry: dict[str, Any], document: bytes) -> None:
        """Store the report and append its entry (report first: an entry never names a
        report that is not there)."""
        report_id = entry["report_id"]
        if not _ID.match(report_id):
            raise ValueError(f"bad report id {report_id!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self.dir / f"{report_id}.json"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(document)
        os.replace(tmp, target)
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def raw(self, report_id: str) -> bytes | None:
        """The stored bytes of a report (its JSON rendering, as signed)."""
        if not _ID.match(report_id):
            return None
        try:
            return (self.dir / f"{report_id}.json").read_bytes()
        except FileNotFoundError:
            return None

    def load(self, report_id: str) -> dict[str, Any] | None:
        if not _ID.match(report_id):
            return None
        try:
            return json.loads((self.dir / f"{report_id}.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
