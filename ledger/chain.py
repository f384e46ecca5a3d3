"""The writer: `Ledger.open(...)`, `append`, checkpoints, key rotation, `close`.

One process writes a ledger at a time (an flock on <ledger>/LOCK fences zombies). Each
partition is its own hash chain and Merkle tree with its own signed checkpoints.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ledger.canonical import canonical_json
from ledger.checkpoint import Checkpoint, partition_origin
from ledger.errors import LedgerError, PrevMismatchError
from ledger.idindex import IdIndex
from ledger.keyring import (
    KEY_ADDED,
    KEY_ROTATED,
    TAIL_TRUNCATED,
    Keyring,
    key_event_payload,
)
from ledger.keys import SigningKey
from ledger.layout import (
    FORMAT,
    FRAME_HEAD,
    KIND_EVENT,
    KIND_LEDGER,
    LEAF_HEAD,
    LEAF_VERSION,
    MAX_TAIL,
    SEEK_EVERY,
    T_ENTRY,
    ZERO_HASH,
    checkpoint_frame,
    entry_frame,
    list_segments,
    partition_dir,
    read_frames,
    read_meta,
    write_atomic,
)
from ledger.merkle import TreeState
from ledger.sidefiles import SYNC_EVERY, SideFiles
from ledger.store import SegmentWriter
from ledger.syncer import Syncer

DEFAULT_ORIGIN = "worker-certification"
DEFAULT_CHECKPOINT_EVERY = 1_000  # entries
DEFAULT_CHECKPOINT_INTERVAL_S = 1.0  # no entry stays unsigned longer (if the runner ticks)
DEFAULT_SEGMENT_BYTES = 128 * 1024 * 1024
RECENT_IDS = 1 << 17  # where recently appended ids live, for fast duplicate answers
_WHERE_SHIFT = 32  # a recent map's value: index << _WHERE_SHIFT | partition (no tuple per id)
REBUILD_CHUNK = 65_536  # entries recomputed from the segments between side-file flushes
_LEAF_PACK = LEAF_HEAD.pack
_FRAME_PACK = FRAME_HEAD.pack
_ID_NAMESPACE = uuid.UUID("6f1d3c2e-8a41-4f0e-9d5b-2c7a9e4b1f60")


@dataclass(frozen=True)
class AppendResult:
    partition: int
    index: int
    leaf_hash: bytes
    duplicate: bool


class _Chain:
    """Mutable state of one partition while the ledger is open."""

    def __init__(self, partition: int, origin: str, pdir: Path) -> None:
        self.partition = partition
        self.origin_p = partition_origin(origin, partition)
        self.dir = pdir
        self.store = SegmentWriter(pdir, partition)
        self.side: SideFiles | None = None
        self.size = 0
        self.last = ZERO_HASH
        self.tree = TreeState()
        self.pending: list[bytes] = []  # leaf hashes not yet in the tree
        self.pending_ids: list[str] = []
        self.unsigned = 0
        self.first_unsigned_at = 0.0
        self.latest: str | None = None
        self.keyring = Keyring(self.origin_p)


class Ledger:
    """An open ledger (single writer). Use as a context manager, or call close()."""

    def __init__(self) -> None:  # use Ledger.open
        self._chains: list[_Chain] = []
        self._index = IdIndex()  # every event id, as a 64-bit key: hits are confirmed
        self._recent: dict[str, int] = {}  # event id -> index << _WHERE_SHIFT | partition
        self._recent_old: dict[str, int] = {}
        self._lock = threading.RLock()
        self._closed = True
        self._ticker: tuple[threading.Thread, threading.Event] | None = None

    # ---- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        signer: SigningKey,
        origin: str = DEFAULT_ORIGIN,
        partitions: int = 1,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval_s: float = DEFAULT_CHECKPOINT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        retired_signers: Sequence[SigningKey] = (),
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> Ledger:
        """Open (or create) the ledger in `directory`, repairing a torn tail if there is one.

        `partitions` is a minimum: an existing ledger keeps its partitions and may grow.
        `retired_signers`: if a partition's active key is one of these, the ledger rotates it
        to `signer` on open (this is how `keys rotate` works and how it resumes after a crash).
        """
        if checkpoint_every < 1 or checkpoint_interval_s <= 0 or partitions < 1:
            raise LedgerError("bad ledger options", code="ledger.bad_argument")
        self = cls()
        self.directory = Path(directory)
        self._signer = signer
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._clock = clock
        self._wall = wall_clock
        self._segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _take_lock(self.directory)
        self._syncer = Syncer()
        try:
            self.origin = origin
            recorded, count = self._meta(origin, partitions)
            self._closed = False
            for p in range(count):
                if p < recorded and not list_segments(partition_dir(self.directory, p)):
                    raise LedgerError(
                        f"partition {p} is missing from {self.directory}",
                        code="ledger.corrupt",
                        partition=p,
                    )
                self._chains.append(self._open_chain(p, retired_signers))
            self._write_meta(recorded, count)
            self._index.seal()
        except BaseException:
            self._syncer.stop()
            for ch in self._chains:
                ch.store.close()
                if ch.side is not None:
                    ch.side.close()
            self._release()
            raise
        return self

    def _meta(self, origin: str, partitions: int) -> tuple[int, int]:
        """(partitions recorded so far, partitions to open)."""
        if not (self.directory / "LEDGER.json").exists():
            return 0, partitions
        meta = read_meta(self.directory)
        if meta["origin"] != origin:
            raise LedgerError(
                f"ledger origin is {meta['origin']!r}, not {origin!r}",
                code="ledger.config_mismatch",
            )
        recorded = int(meta["partitions"])
        return recorded, max(recorded, partitions)

    def _write_meta(self, recorded: int, count: int) -> None:
        if count != recorded:  # after the new partitions exist, so a crash cannot lose one
            meta = {"format": FORMAT, "origin": self.origin, "partitions": count}
            write_atomic(
                self.directory / "LEDGER.json", json.dumps(meta, indent=1).encode() + b"\n"
            )

    def _open_chain(self, p: int, retired: Sequence[SigningKey]) -> _Chain:
        ch = _Chain(p, self.origin, partition_dir(self.directory, p))
        try:
            tail = ch.store.open()
            ch.side = SideFiles(ch.dir)
            ch.size, ch.last = tail.size, tail.last_hash
            ch.latest = tail.last_checkpoint or _read_text(ch.dir / "checkpoint")
            cp_size = tail.checkpoint_size if tail.last_checkpoint else _cp_size(ch.latest)
            self._rebuild(ch)
            ch.unsigned = ch.size - cp_size
            ch.first_unsigned_at = self._clock()
            if ch.size == 0:
                payload = key_event_payload(ch.origin_p, 0, "added", self._signer, None)
                self._append_internal(ch, KEY_ADDED, payload)
            elif self._signer.verifier not in ch.keyring.active(ch.size):
                self._adopt_signer(ch, retired)
            if tail.cut is not None:
                self._append_internal(ch, TAIL_TRUNCATED, tail.cut)
            if ch.unsigned:
                self._checkpoint(ch)
        except BaseException:
            self._syncer.drain()
            ch.store.close()
            if ch.side is not None:
                ch.side.close()
            raise
        return ch

    def _adopt_signer(self, ch: _Chain, retired: Sequence[SigningKey]) -> None:
        active = ch.keyring.active(ch.size)
        for old in retired:
            if old.verifier in active:
                self._rotate_chain(ch, old, self._signer)
                return
        known = ch.keyring.find(self._signer.verifier)
        raise LedgerError(
            f"partition {ch.partition}: key {self._signer.vkey()} "
            + ("was retired" if known else "is not in this ledger's key registry")
            + f"; active: {[k.vkey() for k in active]}. Rotate with `certify keys rotate`.",
            code="ledger.signer_unknown",
            partition=ch.partition,
        )

    def _rebuild(self, ch: _Chain) -> None:
        """Bring side files, id index and key registry up to the segments after a crash.

        Ids stream from ids.txt and the segments in chunks: no list of every id is built."""
        assert ch.side is not None
        mark, tree = ch.side.restore(ch.size)
        ch.tree = tree
        keys_path = ch.dir / "keys.json"
        events: list[tuple[int, dict[str, Any]]] = []
        keys_upto = 0
        try:
            data = json.loads(keys_path.read_text())
            events = [(int(i), e) for i, e in data["events"] if int(i) < ch.size]
            keys_upto = min(int(data["upto"]), ch.size)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            events, keys_upto = [], 0
        first = 0
        for chunk in ch.side.id_chunks():
            self._load_ids(ch, first, chunk)
            first += len(chunk)
        start = min(mark, keys_upto)
        leaves: list[bytes] = []
        new_ids: list[str] = []
        for index, digest, kind, body in _entries_from(ch.dir, start):
            if index >= ch.size:
                break
            if index >= mark:
                leaves.append(digest)
                new_ids.append(_event_id(body))
                if len(leaves) >= REBUILD_CHUNK:
                    self._rebuilt(ch, index + 1 - len(new_ids), leaves, new_ids)
                    leaves, new_ids = [], []
            if kind == KIND_LEDGER and index >= keys_upto:
                events.append((index, json.loads(body)))
        self._rebuilt(ch, ch.size - len(new_ids), leaves, new_ids)
        ch.side.sync(ch.size)
        ch.keyring = Keyring.from_events(ch.origin_p, sorted(events, key=lambda x: x[0]))
        self._save_keys(ch)

    def _rebuilt(self, ch: _Chain, first: int, leaves: list[bytes], ids: list[str]) -> None:
        """Entries first.. recomputed from the segments: into the tree, ids.txt and the index."""
        assert ch.side is not None
        ch.tree.extend(leaves)
        ch.side.add_ids(ids)
        ch.side.flush()
        self._load_ids(ch, first, ids)

    def _load_ids(self, ch: _Chain, first: int, ids: list[str]) -> None:
        """Ids of entries first, first+1, ... of the chain: into the index, the newest (the last
        RECENT_IDS of the partition) also into the recent map."""
        self._index.add_many(ids)
        recent_from = ch.size - RECENT_IDS
        if first + len(ids) > recent_from:
            recent, p = self._recent, ch.partition
            for i in range(max(0, recent_from - first), len(ids)):
                recent[ids[i]] = (first + i) << _WHERE_SHIFT | p

    # ---- appending ----------------------------------------------------------------------------

    def append(
        self, partition: int, event: dict[str, Any], *, expected_prev: bytes | None = None
    ) -> AppendResult:
        """Append one event (idempotent by event_id). Returns once the OS has the bytes."""
        with self._lock:
            ch = self._chain(partition)
            eid = _check_event(event)
            if self._index.might_contain(eid):
                found = self._find(eid)
                if found is not None:
                    return self._duplicate(*found)
                # else another id has the same 64-bit key: this event is new, append it
            if expected_prev is not None and expected_prev != ch.last:
                raise PrevMismatchError(
                    f"partition {partition}: expected prev {expected_prev.hex()}, "
                    f"chain head is {ch.last.hex()}",
                    partition=partition,
                    expected=expected_prev.hex(),
                    actual=ch.last.hex(),
                    size=ch.size,
                )
            index = ch.size
            tail = _LEAF_PACK(T_ENTRY, LEAF_VERSION, KIND_EVENT, partition, index, ch.last)
            tail += canonical_json(event)
            if len(tail) > MAX_TAIL:
                raise LedgerError("event too large", code="ledger.event_too_large")
            digest = sha256(tail).digest()
            if not index % SEEK_EVERY:
                self._seek_hint(ch, index, 0)
            ch.store.write(_FRAME_PACK(len(tail), digest) + tail)
            self._note_appended(ch, eid, digest)
            if ch.unsigned >= self._every or self._clock() - ch.first_unsigned_at >= self._interval:
                self._checkpoint(ch)
            return AppendResult(partition, index, digest, False)

    def append_many(self, partition: int, events: Iterable[dict[str, Any]]) -> list[AppendResult]:
        """Append a batch with one write() per checkpoint interval (the fast path)."""
        results: list[AppendResult] = []
        with self._lock:
            ch = self._chain(partition)
            frames: list[bytes] = []
            might_contain = self._index.might_contain
            try:
                for event in events:
                    eid = _check_event(event)
                    if might_contain(eid):
                        if frames:
                            self._flush_frames(ch, frames)
                        found = self._find(eid)
                        if found is not None:
                            results.append(self._duplicate(*found))
                            continue
                    tail = _LEAF_PACK(
                        T_ENTRY, LEAF_VERSION, KIND_EVENT, partition, ch.size, ch.last
                    )
                    tail += canonical_json(event)
                    if len(tail) > MAX_TAIL:
                        raise LedgerError("event too large", code="ledger.event_too_large")
                    digest = sha256(tail).digest()
                    if not ch.size % SEEK_EVERY:
                        self._seek_hint(ch, ch.size, sum(map(len, frames)))
                    frames.append(_FRAME_PACK(len(tail), digest))
                    frames.append(tail)
                    results.append(AppendResult(partition, ch.size, digest, False))
                    self._note_appended(ch, eid, digest)
                    if ch.unsigned >= self._every:
                        self._flush_frames(ch, frames)
                        self._checkpoint(ch)
            except BaseException:
                if frames and not self._closed:  # the ones before it count as appended
                    self._flush_frames(ch, frames)
                raise
            if frames:
                self._flush_frames(ch, frames)
            self._after_append(ch)
        return results

    def _flush_frames(self, ch: _Chain, frames: list[bytes]) -> None:
        try:
            ch.store.write(b"".join(frames))
        except LedgerError:
            self._closed = True  # memory is ahead of disk now: refuse to go on
            raise
        frames.clear()

    def _write(self, ch: _Chain, kind: int, body: bytes, eid: str) -> AppendResult:
        frame, digest = entry_frame(ch.partition, ch.size, ch.last, kind, body)
        if len(frame) > MAX_TAIL:
            raise LedgerError("event too large", code="ledger.event_too_large")
        if not ch.size % SEEK_EVERY:
            self._seek_hint(ch, ch.size, 0)
        ch.store.write(frame)
        index = ch.size
        self._note_appended(ch, eid, digest)
        return AppendResult(ch.partition, index, digest, False)

    def _seek_hint(self, ch: _Chain, index: int, unwritten: int) -> None:
        assert ch.side is not None
        ch.side.add_seek(index, ch.store.first, ch.store.bytes + unwritten)

    def _note_appended(self, ch: _Chain, eid: str, digest: bytes) -> None:
        if ch.unsigned == 0:
            ch.first_unsigned_at = self._clock()
        self._index.add(eid)
        recent = self._recent
        recent[eid] = ch.size << _WHERE_SHIFT | ch.partition
        if len(recent) >= RECENT_IDS:
            self._recent_old, self._recent = recent, {}
        ch.pending.append(digest)
        ch.pending_ids.append(eid)
        ch.last = digest
        ch.size += 1
        ch.unsigned += 1

    def _after_append(self, ch: _Chain) -> None:
        if ch.unsigned >= self._every or (
            ch.unsigned and self._clock() - ch.first_unsigned_at >= self._interval
        ):
            self._checkpoint(ch)

    def _find(self, eid: str) -> tuple[int, int] | None:
        """(partition, index) of the entry with this event id, or None if there is none."""
        where = self._recent.get(eid)
        if where is None:
            where = self._recent_old.get(eid)
            if where is None:
                return self._locate(eid)
        return where & ((1 << _WHERE_SHIFT) - 1), where >> _WHERE_SHIFT

    def _duplicate(self, p: int, index: int) -> AppendResult:
        ch = self._chains[p]
        if index >= ch.size - len(ch.pending):
            digest = ch.pending[index - (ch.size - len(ch.pending))]
        else:
            assert ch.side is not None
            digest = ch.side.reader.node(0, index)
        return AppendResult(p, index, digest, True)

    def _locate(self, eid: str) -> tuple[int, int] | None:
        """Search the stored ids (ids.txt, streamed) and the pending ones of every partition:
        the slow, exact answer for ids older than the recent maps and for key collisions."""
        for ch in self._chains:
            assert ch.side is not None
            ch.side.flush()
            found = ch.side.find_id(eid)
            if found is not None:
                return ch.partition, found
            if eid in ch.pending_ids:
                return ch.partition, ch.size - len(ch.pending_ids) + ch.pending_ids.index(eid)
        return None

    def _append_internal(self, ch: _Chain, etype: str, payload: dict[str, Any]) -> AppendResult:
        index = ch.size
        event = {
            "event_id": str(uuid.uuid5(_ID_NAMESPACE, f"{ch.origin_p}/{index}/{etype}")),
            "type": etype,
            "schema_version": 1,
            "occurred_at": datetime.fromtimestamp(self._wall(), UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "producer": "ledger",
            "subject": ch.origin_p,
            "correlation_id": None,
            "causation_id": None,
            "payload": payload,
        }
        result = self._write(ch, KIND_LEDGER, canonical_json(event), event["event_id"])
        if etype in (KEY_ADDED, KEY_ROTATED):
            ch.keyring.apply(index, event)
            self._save_keys(ch)
        return result

    def _save_keys(self, ch: _Chain) -> None:
        data = {"upto": ch.size, **ch.keyring.to_json()}
        write_atomic(ch.dir / "keys.json", json.dumps(data).encode())

    # ---- checkpoints --------------------------------------------------------------------------

    def maybe_checkpoint(self) -> None:
        """Sign every partition whose oldest unsigned entry is older than the interval."""
        with self._lock:
            self._check_open()
            now = self._clock()
            for ch in self._chains:
                if ch.unsigned and now - ch.first_unsigned_at >= self._interval:
                    self._checkpoint(ch)

    def start_ticker(self, period_s: float | None = None) -> None:
        """Call maybe_checkpoint from a daemon thread every `period_s` (default: a quarter of
        the interval), so entries get signed in time even when appends stop. close() stops it."""
        if self._ticker is not None:
            return
        period = period_s if period_s is not None else self._interval / 4
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(period):
                try:
                    self.maybe_checkpoint()
                except LedgerError:
                    return

        thread = threading.Thread(target=tick, name="ledger-ticker", daemon=True)
        self._ticker = (thread, stop)
        thread.start()

    def checkpoint_now(self) -> dict[int, str]:
        """Sign and fsync every partition now; returns the latest checkpoint of each."""
        with self._lock:
            self._check_open()
            for ch in self._chains:
                if ch.unsigned:
                    self._checkpoint(ch)
            self._syncer.drain()
            return {ch.partition: ch.latest or "" for ch in self._chains}

    def _checkpoint(
        self, ch: _Chain, signers: Sequence[SigningKey] | None = None, *, durable: bool = False
    ) -> None:
        """Sign the partition's tree and write the checkpoint frame. Its fdatasync (and then the
        `checkpoint` copy) happens on the fsync thread; `durable=True` waits for it."""
        side = ch.side
        assert side is not None
        if ch.pending:
            ch.tree.extend(ch.pending)
            ch.pending = []
        note = Checkpoint(ch.origin_p, ch.size, ch.tree.root()).sign(signers or [self._signer])
        ch.store.write(checkpoint_frame(note))
        side.add_ids(ch.pending_ids)
        ch.pending_ids = []
        side.flush()
        ch.latest = note
        ch.unsigned = 0
        fd, copy = ch.store.fd, ch.dir / "checkpoint"
        assert fd is not None

        def publish() -> None:
            os.fdatasync(fd)
            write_atomic(copy, note.encode(), durable=False)

        self._syncer.submit(("checkpoint", ch.partition), publish)
        if ch.size - side.synced_size >= SYNC_EVERY:
            self._syncer.submit(("side", ch.partition), side.sync_job(ch.size))
        if durable or ch.store.bytes >= self._segment_bytes:
            self._syncer.drain()
        if ch.store.bytes >= self._segment_bytes:
            ch.store.roll(ch.size)

    # ---- keys ---------------------------------------------------------------------------------

    def rotate_key(self, new: SigningKey) -> None:
        """Record a rotation to `new` in every partition (signed by the current key), then sign
        with both keys once and with `new` from then on."""
        with self._lock:
            self._check_open()
            old = self._signer
            for ch in self._chains:
                self._rotate_chain(ch, old, new)
            self._signer = new

    def _rotate_chain(self, ch: _Chain, old: SigningKey, new: SigningKey) -> None:
        if ch.unsigned:
            self._checkpoint(ch, [old])
        payload = key_event_payload(ch.origin_p, ch.size, "rotated", new, old)
        self._append_internal(ch, KEY_ROTATED, payload)
        self._checkpoint(ch, [old, new], durable=True)

    @property
    def signer(self) -> SigningKey:
        return self._signer

    def keys(self, partition: int = 0) -> list[str]:
        """Verifier keys in the partition's registry (oldest first)."""
        return [r.key.vkey() for r in self._chain(partition).keyring.records.values()]

    # ---- reading ------------------------------------------------------------------------------

    def latest_checkpoint(self, partition: int) -> str | None:
        return self._chain(partition).latest

    def size(self, partition: int) -> int:
        return self._chain(partition).size

    def head(self, partition: int) -> bytes:
        """Leaf hash of the last entry (what `expected_prev` of the next append should be)."""
        return self._chain(partition).last

    @property
    def partitions(self) -> int:
        return len(self._chains)

    # ---- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker[1].set()
            if self._ticker[0] is not threading.current_thread():
                self._ticker[0].join()
            self._ticker = None
        with self._lock:
            if self._closed:
                return
            try:
                for ch in self._chains:
                    if ch.unsigned:
                        self._checkpoint(ch)
                self._syncer.drain()
                for ch in self._chains:
                    assert ch.side is not None
                    ch.side.sync(ch.size)
            finally:
                self._syncer.stop()
                for ch in self._chains:
                    ch.store.close()
                    if ch.side is not None:
                        ch.side.close()
                self._release()

    def _release(self) -> None:
        self._closed = True
        if getattr(self, "_lock_fd", None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError("ledger is closed", code="ledger.closed")

    def _chain(self, partition: int) -> _Chain:
        self._check_open()
        if not 0 <= partition < len(self._chains):
            raise LedgerError(
                f"no partition {partition} (ledger has {len(self._chains)})",
                code="ledger.bad_partition",
            )
        return self._chains[partition]


def _check_event(event: Any) -> str:
    if not isinstance(event, dict):
        raise LedgerError("event must be a dict", code="ledger.invalid_event")
    eid = event.get("event_id")
    if not isinstance(eid, str) or not eid:
        raise LedgerError("event needs a non-empty string event_id", code="ledger.invalid_event")
    return eid


def _event_id(body: bytes) -> str:
    eid = json.loads(body).get("event_id")
    return eid if isinstance(eid, str) else ""


def _entries_from(pdir: Path, start: int):  # type: ignore[no-untyped-def]
    """(index, leaf hash, kind, event bytes) of entries >= start, trusting the writer's files."""
    segs = list_segments(pdir)
    first_pos = 0
    for pos, (first, _) in enumerate(segs):
        if first <= start:
            first_pos = pos
    for _, path in segs[first_pos:]:
        for _, digest, tail in read_frames(path):
            if digest is None or not isinstance(tail, bytes):
                raise LedgerError(f"bad frame in {path.name}", code="ledger.corrupt")
            if tail[0] != T_ENTRY:
                continue
            _, _, kind, _, index, _ = LEAF_HEAD.unpack_from(tail)
            if index >= start:
                yield index, digest, kind, tail[LEAF_HEAD.size :]


def _take_lock(directory: Path) -> int:
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise LedgerError(
            f"another process writes the ledger at {directory}", code="ledger.locked"
        ) from exc
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _cp_size(note: str | None) -> int:
    if note is None:
        return 0
    try:
        return Checkpoint.parse(note).size
    except LedgerError:
        return 0
