"""Side files of a partition: Merkle tree levels and event ids, for proofs and idempotency.

    index/level-NN.bin  hash of every complete subtree of 2^NN leaves, in order (32 bytes each);
                        level-00 holds the leaf hashes. Append-only, like tessera's tiles.
    index/ids.txt       one JSON string per line: the event_id of entry i on line i.
    index/mark.json     {"size": W, "ids_bytes": B}: everything up to W entries was fsynced.
    index/seek.bin      (index, segment first index, byte offset) of every 4096th entry, as
                        big-endian u64s: hints for random access, checked when used.

They are derived data: written at checkpoints without fsync, fsynced every SYNC_EVERY entries
and on close (then the mark moves). After a crash the writer cuts them back to the mark and
recomputes the rest from the segments. Proofs made from them are checked against the signed
root before they are handed out, so a damaged side file can cause an error, never a false proof.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ledger.layout import SEEK_RECORD, write_atomic
from ledger.merkle import HASH_SIZE, TreeState

SYNC_EVERY = 65_536


def level_path(index_dir: Path, level: int) -> Path:
    return index_dir / f"level-{level:02d}.bin"


class NodeFiles:
    """Read-only access to stored tree levels (`node(level, index)`), used by proofs."""

    def __init__(self, index_dir: Path) -> None:
        self.dir = index_dir
        self._fds: dict[int, int] = {}

    def count(self, level: int) -> int:
        try:
            return level_path(self.dir, level).stat().st_size // HASH_SIZE
        except FileNotFoundError:
            return 0

    def node(self, level: int, index: int) -> bytes:
        fd = self._fds.get(level)
        if fd is None:
            fd = self._fds[level] = os.open(level_path(self.dir, level), os.O_RDONLY)
        data = os.pread(fd, HASH_SIZE, index * HASH_SIZE)
        if len(data) != HASH_SIZE:
            raise IndexError(f"level {level} has no node {index}")
        return data

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class SideFiles:
    """Writer side: buffers new nodes and ids, flushes them at checkpoints."""

    def __init__(self, pdir: Path) -> None:
        self.dir = pdir / "index"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._level_bufs: dict[int, list[bytes]] = {}
        self._level_fds: dict[int, int] = {}
        self._ids_buf: list[str] = []
        self._seek_buf: list[bytes] = []
        self._ids_fd = os.open(self.dir / "ids.txt", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.synced_size = 0
        self.reader = NodeFiles(self.dir)

    # -- writing --
    def sink(self, level: int, hashes: list[bytes]) -> None:
        buf = self._level_bufs.get(level)
        if buf is None:
            self._level_bufs[level] = list(hashes)
        else:
            buf.extend(hashes)

    def add_ids(self, ids: list[str]) -> None:
        self._ids_buf.extend(ids)

    def add_seek(self, index: int, segment_first: int, offset: int) -> None:
        self._seek_buf.append(SEEK_RECORD.pack(index, segment_first, offset))

    def _fd(self, level: int) -> int:
        fd = self._level_fds.get(level)
        if fd is None:
            fd = os.open(level_path(self.dir, level), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._level_fds[level] = fd
        return fd

    def flush(self) -> None:
        for level, buf in self._level_bufs.items():
            if buf:
                _write_all(self._fd(level), b"".join(buf))
                buf.clear()
        if self._ids_buf:
            _write_all(self._ids_fd, "".join(_id_line(i) for i in self._ids_buf).encode())
            self._ids_buf.clear()
        if self._seek_buf:  # self-checking hints (reader.py validates them): no fsync, no mark
            with open(self.dir / "seek.bin", "ab") as f:
                f.write(b"".join(self._seek_buf))
            self._seek_buf.clear()

    def sync(self, size: int) -> None:
        """Make everything up to `size` entries durable and move the mark there."""
        self.sync_job(size)()

    def sync_job(self, size: int) -> Callable[[], None]:
        """Flush now; return the blocking part (fsyncs, then the mark) to run on any thread."""
        self.flush()
        fds = [*self._level_fds.values(), self._ids_fd]
        ids_bytes = os.fstat(self._ids_fd).st_size
        mark = json.dumps({"size": size, "ids_bytes": ids_bytes}).encode()
        self.synced_size = size

        def job() -> None:
            for fd in fds:
                os.fdatasync(fd)
            write_atomic(self.dir / "mark.json", mark)

        return job

    # -- recovery --
    def restore(self, size: int) -> tuple[int, TreeState]:
        """Cut the files back to the last mark that is consistent; return (mark, tree).

        ids.txt then holds exactly `mark` lines (read them with `id_chunks()`); the caller feeds
        the entries from the mark to `size` through the tree and ids.
        """
        mark, ids_bytes = 0, 0
        try:
            data = json.loads((self.dir / "mark.json").read_text())
            mark, ids_bytes = int(data["size"]), int(data["ids_bytes"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        if mark > size or not self._long_enough(mark, ids_bytes):
            mark, ids_bytes = 0, 0
        for level in range(64):
            path = level_path(self.dir, level)
            if not path.exists():
                break
            keep = (mark >> level) * HASH_SIZE
            if path.stat().st_size > keep:
                os.truncate(path, keep)
        os.ftruncate(self._ids_fd, ids_bytes)
        os.lseek(self._ids_fd, 0, os.SEEK_END)
        if _count_lines(self._ids_fd, ids_bytes) != mark:  # the mark lies: rebuild everything
            return self.restore_from_zero()
        self.reader.close()
        tree = TreeState.at(mark, self.reader.node, self.sink)
        self.synced_size = mark
        return mark, tree

    def id_chunks(self) -> Iterator[list[str]]:
        """The ids in ids.txt (flushed ones), in order, a few MB of file at a time."""
        for block in _line_blocks(self._ids_fd, os.fstat(self._ids_fd).st_size):
            yield _parse_ids(block)

    def find_id(self, event_id: str) -> int | None:
        """Line (= entry index) of `event_id` in ids.txt, or None. Flush first to see all.

        Reads the file a few MB at a time: memory stays flat however long the ledger is."""
        needle = _id_line(event_id).encode("utf-8", "surrogatepass")
        line = 0
        for block in _line_blocks(self._ids_fd, os.fstat(self._ids_fd).st_size):
            if b"\\" in block:  # escaped lines: compare parsed ids, whatever the escaping
                ids = _parse_ids(block)
                if event_id in ids:
                    return line + ids.index(event_id)
            else:  # every line is '"' + id + '"': an exact byte search finds it
                pos = block.find(needle)
                while pos > 0 and block[pos - 1] != 0x0A:
                    pos = block.find(needle, pos + 1)
                if pos >= 0:
                    return line + block.count(b"\n", 0, pos)
            line += block.count(b"\n")
        return None

    def restore_from_zero(self) -> tuple[int, TreeState]:
        for level in range(64):
            path = level_path(self.dir, level)
            if path.exists():
                os.truncate(path, 0)
        os.ftruncate(self._ids_fd, 0)
        self.synced_size = 0
        return 0, TreeState(0, (), self.sink)

    def _long_enough(self, mark: int, ids_bytes: int) -> bool:
        for level in range(mark.bit_length()):
            try:
                if level_path(self.dir, level).stat().st_size < (mark >> level) * HASH_SIZE:
                    return False
            except FileNotFoundError:
                return False
        return os.fstat(self._ids_fd).st_size >= ids_bytes

    def close(self) -> None:
        for fd in self._level_fds.values():
            os.close(fd)
        self._level_fds.clear()
        os.close(self._ids_fd)
        self.reader.close()


def _id_line(event_id: str) -> str:
    if '"' in event_id or "\\" in event_id or not event_id.isprintable():
        return json.dumps(event_id) + "\n"
    return '"' + event_id + '"\n'


def _parse_ids(raw: bytes) -> list[str]:
    """Ids of whole lines (a partial last line is ignored)."""
    if not raw:
        return []
    text = raw.decode("utf-8")
    lines = text.split("\n")
    lines.pop()  # after the final newline
    if "\\" not in text:
        return [line[1:-1] for line in lines]
    return [json.loads(line) for line in lines]


ID_BLOCK_BYTES = 1 << 22  # ids.txt is read this much at a time (~100,000 ids)


def _line_blocks(fd: int, end: int) -> Iterator[bytes]:
    """Bytes [0, end) of the file, in blocks of whole lines (a partial last line is dropped)."""
    pos, carry = 0, b""
    while pos < end:
        block = os.pread(fd, min(ID_BLOCK_BYTES, end - pos), pos)
        if not block:
            break
        pos += len(block)
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut] if carry else data


def _count_lines(fd: int, end: int) -> int:
    """Number of complete lines in [0, end), or -1 if the last one is not complete."""
    count, pos = 0, 0
    last = b"\n"
    while pos < end:
        block = os.pread(fd, min(ID_BLOCK_BYTES, end - pos), pos)
        if not block:
            return -1
        pos += len(block)
        count += block.count(b"\n")
        last = block[-1:]
    return count if last == b"\n" else -1


def load_ids(index_dir: Path) -> list[str]:
    """Every id of a partition in one list (tools and tests; the writer streams instead)."""
    try:
        return _parse_ids((index_dir / "ids.txt").read_bytes())
    except FileNotFoundError:
        return []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])
