"""Where the projector reads entries: the ledger directory, through the ledger's own reader.

The ledger package is imported lazily, so that projections (and their tests with a stand-in
source) do not need it at import time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from projections.batch import EntryLike

if TYPE_CHECKING:
    from ledger.scan import Block

_PARTITION_DIR = re.compile(r"^p(\d+)$")


class Source(Protocol):
    def partitions(self) -> list[int]: ...

    def entries(self, partition: int, start: int) -> Iterator[EntryLike]: ...


class RawSource(Source, Protocol):
    """A source that can also hand out entries as stored: (index, leaf hash, event bytes)."""

    def raw_entries(self, partition: int, start: int) -> Iterator[tuple[int, bytes, bytes]]: ...


class BlockSource(Source, Protocol):
    """A source that hands out stored frames in bulk (`ledger.scan.Block`), checkpoints too."""

    def blocks(self, partition: int, start: int, max_entries: int) -> Iterator[Block]: ...


class LedgerDirectory:
    """The ledger at `directory`: its partitions, and each partition's entries from an index."""

    def __init__(self, directory: Path, *, check_hashes: bool = True) -> None:
        self.directory = Path(directory)
        # Check every frame's SHA-256 while reading (the ledger's own readers do); False
        # skips it (about half the cost of reading; `certify ledger verify` checks everything).
        self.check_hashes = check_hashes
        # partition -> (next index, segment files' stat) after the last read to the end: an
        # idle catch-up then costs a stat per segment, not a scan of the partition.
        self._seen: dict[int, tuple[int, tuple[tuple[str, int, int], ...]]] = {}

    def partitions(self) -> list[int]:
        if not self.directory.is_dir():
            return []  # nothing appended yet: nothing to project
        import ledger

        listed = getattr(ledger, "partitions", None)
        if callable(listed):
            return sorted(int(p) for p in listed(self.directory))
        return discover_partitions(self.directory)

    def entries(self, partition: int, start: int) -> Iterator[EntryLike]:
        from ledger import iter_entries

        return iter_entries(self.directory, partition, start)

    @property
    def raw_supported(self) -> bool:
        """Whether the ledger's reader hands out stored bytes (else: parsed entries only)."""
        try:
            from ledger.layout import partition_dir  # noqa: F401
            from ledger.reader import iter_raw  # noqa: F401
        except ImportError:
            return False
        return True

    def raw_entries(self, partition: int, start: int) -> Iterator[tuple[int, bytes, bytes]]:
        """The ledger's frames as stored (hash-checked by the ledger's reader), events left as
        canonical JSON bytes for DuckDB to parse: no JSON work in Python."""
        from ledger.layout import SEGMENT_SUFFIX, partition_dir
        from ledger.reader import iter_raw

        pdir = partition_dir(self.directory, partition)
        files = _stat(pdir, SEGMENT_SUFFIX)
        if self._seen.get(partition) == (start, files):
            return  # not a byte appended since we read it all
        following = start
        for index, leaf_hash, _kind, _prev, body in iter_raw(pdir, partition, start):
            yield index, leaf_hash, body
            following = index + 1
        self._seen[partition] = (following, files)


    def blocks(self, partition: int, start: int, max_entries: int) -> Iterator[Block]:
        """The ledger's frames in bulk from entry `start` (`ledger.scan`), with the signed
        checkpoints of size >= `start`; an idle partition costs a stat per segment."""
        from ledger.layout import SEGMENT_SUFFIX, partition_dir
        from ledger.scan import scan

        pdir = partition_dir(self.directory, partition)
        files = _stat(pdir, SEGMENT_SUFFIX)
        if self._seen.get(partition) == (start, files):
            return  # not a byte appended since we read it all
        following = start
        for block in scan(pdir, partition, start, check=self.check_hashes,
                          max_entries=max_entries):
            yield block
            following = block.next_index or following
        self._seen[partition] = (following, files)


def _stat(pdir: Path, suffix: str) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of every file of a partition's segments, taken before reading."""
    try:
        found = [(entry.name, entry.stat()) for entry in os.scandir(pdir)
                 if entry.name.endswith(suffix)]
    except FileNotFoundError:
        return ()
    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in found))


def discover_partitions(directory: Path) -> list[int]:
    """Fallback while the ledger has no partition listing: LEDGER.json's count, else p<N>/."""
    found = {int(m.group(1)) for child in directory.iterdir()
             if child.is_dir() and (m := _PARTITION_DIR.match(child.name))}
    try:
        meta = json.loads((directory / "LEDGER.json").read_text())
        count = int(meta.get("partitions", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        count = 0
    return sorted(found | set(range(count)))


class CheckpointFollower:
    """The signed checkpoints a ledger writes, read as they come (`ledger.scan`), for a
    projector fed entries by other means (`Projector.project_entries`): each call reads only
    the frames appended since the last (the entries among them hash-checked, as by catch-up),
    an idle partition costs a stat per segment."""

    def __init__(self, directory: Path, *, check_hashes: bool = True) -> None:
        self.directory = Path(directory)
        self.check_hashes = check_hashes
        self.start: dict[int, int] = {}  # partition -> where the next read starts
        self._files: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._last: dict[int, tuple[int, set[str]]] = {}  # partition -> (size, its notes)

    def partitions(self) -> list[int]:
        return LedgerDirectory(self.directory).partitions()

    def read(self, partition: int, start: int) -> list[tuple[int, str]]:
        """(size, note) of the checkpoints of size >= `start` (the first call) or written
        since the last call, in the order written; each handed out once."""
        from ledger.layout import SEGMENT_SUFFIX, partition_dir
        from ledger.scan import scan

        pdir = partition_dir(self.directory, partition)
        files = _stat(pdir, SEGMENT_SUFFIX)
        if self._files.get(partition) == files and partition in self.start:
            return []
        begin = self.start.setdefault(partition, start)
        found: list[tuple[int, str]] = []
        size, notes = self._last.get(partition, (-1, set()))
        for block in scan(pdir, partition, begin, check=self.check_hashes):
            for checkpoint in block.checkpoints:
                if checkpoint[0] < size or (checkpoint[0] == size and checkpoint[1] in notes):
                    continue  # met again (a read resumes at the entry before its start)
                if checkpoint[0] > size:
                    size, notes = checkpoint[0], set()
                notes.add(checkpoint[1])
                found.append(checkpoint)
            if block.next_index is not None:
                self.start[partition] = block.next_index
        self._last[partition] = (size, notes)
        self._files[partition] = files
        return found
