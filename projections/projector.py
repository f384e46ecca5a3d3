"""Ledger -> DuckDB: incremental catch-up in columnar batches, exactly once by ledger position.

One batch = one transaction: its `events` rows, its typed rows, the signed checkpoints read
with it and the `projection_state` move commit together, so a crash leaves either the whole
batch or none of it, and the next catch-up resumes at the first entry not committed. The ledger
holds each event once, at one position (partition, index), and `projection_state.next_index`
says exactly how far each partition is projected: an entry below it was projected already and
is skipped (a commit costs O(batch), never a look through `events`); an entry past it (a gap)
is refused. A repeated event id within one batch is still projected once (a window).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from queue import Queue
from types import TracebackType
from typing import Any, TypeVar, cast

import duckdb
import pyarrow as pa

from projections.batch import RAW_SELECT, Batch, BlockBatch, EntryLike, RawBatch
from projections.frames import CHECKPOINT_SCHEMA, checkpoint_row
from projections.mapping import PROJECTIONS, PROJECTORS, Projection
from projections.schema import SCHEMA_VERSION, ddl
from projections.source import (
    BlockSource,
    CheckpointFollower,
    LedgerDirectory,
    RawSource,
    Source,
)

# Entries per transaction. DuckDB writes an insert of a whole row group (122,880 rows) straight
# to the file and only a pointer to the WAL; smaller ones go through the WAL and are written
# again at the checkpoint that follows (at 20,000 a commit cost as much as the rest of the
# batch). A batch of 131,072 ledger-sized events (1.4 kB) holds ~200 MB of JSON in memory,
# about three times that while it is projected.
DEFAULT_BATCH_SIZE = 131_072

# DuckDB's vacuum (at a checkpoint, re-packing partly filled row groups into full ones) off for
# the writer: every catch-up batch leaves partly filled row groups behind (131,072 entries:
# 122,880 + 8,192 `events` rows, ~62,000 decisions, ~300,000 factors), and with vacuum on each
# commit's checkpoint re-read and rewrote the ones before it, so commits grew with the table
# (600,000 entries, 5 batches, one DuckDB thread: 1.0, 1.5, 1.5, 2.6 CPU-s; 7.7 s of commits
# where 4.4 s do; the whole catch-up 17.4 -> 13.4 CPU-s). Turned off for a catch-up only, the
# next checkpoint re-packs it all at once. Only retention deletes rows: it turns vacuum back on.
VACUUM_OFF = "SET max_vacuum_tasks = 0"

# Errors caused by the data of a batch (not by our SQL, not by the disk): the batch is then
# written entry by entry, and an entry that still fails is kept with a note. Arrow refuses a
# batch whose stored bytes are not UTF-8.
DATA_ERRORS = (duckdb.ConversionException, duckdb.InvalidInputException,
               duckdb.ConstraintException, duckdb.OutOfRangeException, pa.ArrowInvalid)

T = TypeVar("T")

_KNOWN = ", ".join(f"'{name}'" for name in PROJECTORS)
STAGE_SQL = f"""
CREATE OR REPLACE TEMP TABLE _new AS
SELECT * FROM (
    SELECT coalesce(event_id, 'ledger:' || partition || ':' || ledger_index) AS event_id,
           type, try_cast(schema_version AS INTEGER) AS schema_version, producer, subject,
           correlation_id, causation_id, payload, leaf_hash,
           try_cast(occurred_at AS TIMESTAMPTZ) AS occurred_at, partition, ledger_index,
           nullif(concat_ws('; ', note,
               CASE WHEN event_id IS NULL
                    THEN 'envelope.event_id: missing (keyed by ledger position)' END,
               CASE WHEN try_cast(occurred_at AS TIMESTAMPTZ) IS NULL
                    THEN 'envelope.occurred_at: missing or unreadable' END,
               CASE WHEN type IS NULL THEN 'envelope.type: missing'
                    WHEN type NOT IN ({_KNOWN})
                    THEN 'type ' || type || ': unknown, kept in events only' END), '') AS note
    FROM {{batch}}) AS staged
"""
# A raw batch is read through its envelope inline (no temp view to create and drop: a small
# commit's cost is mostly per statement).
RAW_STAGE = STAGE_SQL.format(batch=f"({RAW_SELECT}) AS _batch")
STAGE_SQL = STAGE_SQL.format(batch="_batch")
# Repeats within the batch, and entries below their partition's next index (a source handing
# out what was projected already; catch-up and project_entries never do). Kept out of STAGE_SQL:
# an anti-join there makes DuckDB build the table on one thread (to keep the order), so the
# envelope's JSON would be read on one core. Joins `projection_state` (a row per partition),
# never `events`: the cost does not grow with the table.
REPEATS_SQL = """
SELECT count(*) - count(DISTINCT event_id),
       count(*) FILTER (WHERE ledger_index < coalesce(s.next_index, 0)),
       list(DISTINCT type), count(*), count(note)
FROM _new LEFT JOIN projection_state s USING (partition)
"""
# After a batch was trimmed (rare): what is left of it.
LEFT_SQL = "SELECT 0, 0, list(DISTINCT type), count(*), count(note) FROM _new"
DROP_PROJECTED_SQL = """
DELETE FROM _new WHERE EXISTS (SELECT 1 FROM projection_state s
    WHERE s.partition = _new.partition AND _new.ledger_index < s.next_index)
"""
# The signed checkpoints read with a batch; one seen again (a catch-up resumes at the entry
# before its first, to meet the checkpoint written after it) is not inserted twice.
CHECKPOINTS_SQL = """
INSERT INTO checkpoints BY NAME
SELECT c.*, (SELECT min(e.occurred_at) FROM events e
             WHERE e.partition = c.partition AND e.ledger_index = c.size - 1) AS last_entry_at
FROM _checkpoints c
WHERE NOT EXISTS (SELECT 1 FROM checkpoints k
                  WHERE k.partition = c.partition AND k.size = c.size AND k.note = c.note)
"""
# Only when a batch holds the same event id twice (rare: a stream replaying within a batch).
DEDUPE_SQL = """
CREATE OR REPLACE TEMP TABLE _new AS SELECT * FROM _new
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY partition, ledger_index) = 1
"""


@dataclass
class ProjectionStats:
    """What one catch-up (or rebuild) did."""

    entries: int = 0  # ledger entries read
    inserted: int = 0  # new rows in `events`
    duplicates: int = 0  # entries projected before (below next_index), repeats in a batch
    noted: int = 0  # inserted rows that carry a note (unknown type, unreadable payload)
    batches: int = 0
    seconds: float = 0.0
    next_index: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Ledger entries per second."""
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.entries} entries read, {self.inserted} events projected "
                f"({self.duplicates} duplicates skipped, {self.noted} with notes) in "
                f"{self.batches} batches, {self.seconds:.2f} s ({self.rate:,.0f} entries/s)")


class ProjectionError(Exception):
    """A projection file that cannot be used as it is; `code` is stable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _connect(db_path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db_path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con


def connect_readonly(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection for auditors and reports. DuckDB lets one process write a file;
    while a projector in another process has it open, read a published snapshot instead."""
    return _connect(db_path, read_only=True)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in ddl():
        con.execute(statement)
    row = con.execute("SELECT value FROM projection_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        con.execute("INSERT INTO projection_meta VALUES ('schema_version', ?)",
                    [str(SCHEMA_VERSION)])
    elif row[0] != str(SCHEMA_VERSION):
        raise ProjectionError(
            f"projection schema version {row[0]} differs from this code's {SCHEMA_VERSION}: "
            "rebuild it from the ledger (certify projections rebuild)",
            code="projections.schema_version")


class Projector:
    """The long-running projector: one read-write connection, `catch_up()` as often as liked.

    Readers in the same process use `cursor()`; readers in other processes use
    `publish_snapshot()` copies (DuckDB allows one writing process per file).
    """

    def __init__(self, ledger_dir: Path | str, db_path: Path | str, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, source: Source | None = None,
                 raw: bool = True, check_hashes: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ledger_dir = Path(ledger_dir)
        self.db_path = Path(db_path)
        self.batch_size = batch_size
        self.source: Source = (source if source is not None
                               else LedgerDirectory(self.ledger_dir, check_hashes=check_hashes))
        # Read stored bytes and let DuckDB parse them, when the source can: in bulk (blocks of
        # frames, checkpoints too) or entry by entry (see BlockBatch, RawBatch).
        self.bulk = raw and callable(getattr(self.source, "blocks", None))
        self.raw = (raw and callable(getattr(self.source, "raw_entries", None))
                    and getattr(self.source, "raw_supported", True))
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.con = _connect(self.db_path)
        try:
            ensure_schema(self.con)
            self.con.execute(VACUUM_OFF)
        except BaseException:
            self.con.close()
            raise
        # partition -> next index committed by this Projector (or found in `events` for a
        # partition `projection_state` had no row for): DuckDB lets one process write the
        # file, so this stays exact, and a lost state row cannot let entries in twice.
        self._known: dict[int, int] = {}
        self._checkpoints = CheckpointFollower(self.ledger_dir, check_hashes=check_hashes)
        self._waiting: dict[int, list[tuple[int, str]]] = {}  # read, entries not projected yet

    # ---- reading the ledger ---------------------------------------------------------------

    def next_indexes(self) -> dict[int, int]:
        """Per partition, the first ledger index not yet projected."""
        return dict(self.con.execute("SELECT partition, next_index FROM projection_state")
                    .fetchall())

    def positions(self, partitions: Iterable[int]) -> dict[int, int]:
        """`next_indexes`, never below what this Projector committed; a partition without a
        state row (a new one, or a damaged file) is looked up in `events` once (the only look
        at `events`, and only then: it costs a scan of the table)."""
        state = self.next_indexes()
        missing = sorted({int(p) for p in partitions} - state.keys() - self._known.keys())
        if missing:
            found = dict(self.con.execute(
                "SELECT partition, max(ledger_index) + 1 FROM events "
                f"WHERE partition IN ({', '.join(map(str, missing))}) GROUP BY partition"
            ).fetchall())
            for p in missing:
                self._known[p] = int(found.get(p) or 0)
        for p, known in self._known.items():
            state[p] = max(state.get(p, 0), known)
        return state

    def catch_up(self) -> ProjectionStats:
        """Project every entry appended since the last catch-up, partition by partition."""
        started = time.perf_counter()
        stats = ProjectionStats()
        positions = self.positions(self.source.partitions())
        if self.bulk:
            self._catch_up_blocks(positions, stats)
        elif self.raw:
            self._catch_up_raw(positions, stats)
        else:
            batch = Batch()
            for partition in self.source.partitions():
                for entry in self.source.entries(partition, positions.get(partition, 0)):
                    batch.add(entry)
                    if len(batch.rows) >= self.batch_size:
                        self._commit(batch, stats)
                        batch = Batch()
            if batch.rows:
                self._commit(batch, stats)
        return self._finish(stats, started)

    def _catch_up_blocks(self, positions: dict[int, int], stats: ProjectionStats) -> None:
        # The next batch is read (and made into Arrow) on another thread while DuckDB, which
        # lets go of the GIL, writes this one: reading and writing overlap on two cores.
        for batch in prefetched(self._block_batches(positions)):
            self._commit(batch, stats)

    def _block_batches(self, positions: dict[int, int]) -> Iterator[BlockBatch]:
        """Batches of exactly `batch_size` entries (the last one smaller, or holding only the
        checkpoints signed since the last catch-up), each already made into Arrow."""
        source = cast(BlockSource, self.source)
        size = self.batch_size
        batch = BlockBatch()
        for partition in source.partitions():
            for block in source.blocks(partition, positions.get(partition, 0), size):
                rest = block
                while rest is not None:
                    room = size - len(batch)
                    if len(rest) > room:
                        head, rest = rest.split(room)
                    else:
                        head, rest = rest, None
                    batch.add(head)
                    if len(batch) >= size:
                        yield batch.prepared()
                        batch = BlockBatch()
        if batch.blocks:
            yield batch.prepared()

    def _catch_up_raw(self, positions: dict[int, int], stats: ProjectionStats) -> None:
        source = cast(RawSource, self.source)
        size = self.batch_size
        batch = RawBatch()
        for partition in source.partitions():
            # The hot loop: four appends per entry, nothing else.
            parts, indexes = batch.partitions.append, batch.indexes.append
            hashes, bodies = batch.hashes.append, batch.bodies.append
            index = -1
            for index, leaf_hash, body in source.raw_entries(partition,
                                                             positions.get(partition, 0)):
                parts(partition)
                indexes(index)
                hashes(leaf_hash)
                bodies(body)
                if len(batch.bodies) >= size:
                    batch.next_index[partition] = index + 1
                    self._commit(batch, stats)
                    batch = RawBatch()
                    parts, indexes = batch.partitions.append, batch.indexes.append
                    hashes, bodies = batch.hashes.append, batch.bodies.append
            if index >= 0 and batch.bodies and batch.partitions[-1] == partition:
                batch.next_index[partition] = index + 1
        if len(batch):
            self._commit(batch, stats)

    def project_entries(self, entries: Iterable[EntryLike]) -> ProjectionStats:
        """Project entries handed in (e.g. by the process that appended them, or from the
        ledger topic), in ledger order per partition. Entries below a partition's next index
        were projected already and are skipped (a re-send); an entry past it (a gap: entries
        in between were never handed in) is refused with `projections.gap`, after what came
        before it is committed: `catch_up` reads the missing ones from the ledger. An entry
        that also carries its stored bytes as `event_json` takes the fast path (DuckDB parses
        them), like `catch_up`."""
        started = time.perf_counter()
        stats = ProjectionStats()
        positions = self.positions(())
        batch: Batch | RawBatch = RawBatch()
        for entry in entries:
            partition, index = entry.partition, entry.index
            expected = positions.get(partition)
            if expected is None:  # no state row: looked up once
                expected = positions[partition] = self.positions([partition]).get(partition, 0)
            if index < expected:
                stats.entries += 1
                stats.duplicates += 1
                continue
            if index > expected:
                if len(batch):
                    self._commit(batch, stats)
                raise ProjectionError(
                    f"partition {partition}: entry {index} handed in, {expected} expected "
                    "(a gap: catch_up reads the entries in between from the ledger)",
                    code="projections.gap")
            positions[partition] = index + 1
            body = getattr(entry, "event_json", None)
            if isinstance(body, bytes):
                if not isinstance(batch, RawBatch):  # kept in order: commit the other kind
                    self._commit(batch, stats)
                    batch = RawBatch()
                batch.add(partition, index, entry.leaf_hash, body)
            else:
                if not isinstance(batch, Batch):
                    if len(batch):
                        self._commit(batch, stats)
                    batch = Batch()
                batch.add(entry)
            if len(batch) >= self.batch_size:
                self._commit(batch, stats)
                batch = RawBatch()
        if len(batch):
            self._commit(batch, stats)
        return self._finish(stats, started)

    def follow_checkpoints(self) -> int:
        """Keep `checkpoints` current when entries come by `project_entries` (which carries
        none): the signed checkpoints the ledger wrote since the last call, read from its files
        (only the frames appended since; at the first call, from the newest checkpoint this
        file holds, or the whole ledger once when it holds none). A checkpoint is written once
        the entries it covers are projected (it waits until then), so the rows are those of a
        rebuild. Returns how many rows were added."""
        follower = self._checkpoints
        partitions = follower.partitions()
        if not partitions:
            return 0
        if not follower.start:
            newest = dict(self.con.execute(
                "SELECT partition, max(size) FROM checkpoints GROUP BY partition").fetchall())
        else:
            newest = {}
        for p in partitions:
            self._waiting.setdefault(p, []).extend(follower.read(p, int(newest.get(p) or 0)))
        positions = self.positions(partitions)
        ready: list[dict[str, Any]] = []
        for p, waiting in self._waiting.items():
            covered = [note for size, note in waiting if size <= positions.get(p, 0)]
            if covered:
                del waiting[:len(covered)]  # in the order written: covered ones come first
                ready.extend(row for note in covered
                             if (row := checkpoint_row(p, note)) is not None)
        if not ready:
            return 0
        before = self._count_checkpoints()
        self._write(Batch(checkpoint_table=pa.Table.from_pylist(ready,
                                                                schema=CHECKPOINT_SCHEMA)))
        return self._count_checkpoints() - before

    def _count_checkpoints(self) -> int:
        row = self.con.execute("SELECT count(*) FROM checkpoints").fetchone()
        return int(row[0]) if row else 0

    def _finish(self, stats: ProjectionStats, started: float) -> ProjectionStats:
        stats.seconds = time.perf_counter() - started
        stats.next_index = self.next_indexes()
        return stats

    # ---- writing one batch ----------------------------------------------------------------

    def _commit(self, batch: Batch | RawBatch | BlockBatch, stats: ProjectionStats) -> None:
        try:
            inserted, noted = self._write(batch)
        except DATA_ERRORS:
            parsed = batch.parsed() if isinstance(batch, (RawBatch, BlockBatch)) else batch
            inserted, noted = self._write_carefully(parsed)
        stats.entries += len(batch)
        stats.inserted += inserted
        stats.duplicates += len(batch) - inserted
        stats.noted += noted
        stats.batches += 1

    def _write_carefully(self, batch: Batch) -> tuple[int, int]:
        """Entry by entry; an entry DuckDB still refuses is kept without its payload."""
        inserted = noted = 0
        last = len(batch.rows) - 1
        for position, row in enumerate(batch.rows):
            one = Batch(rows=[row], next_index={row[0]: row[1] + 1},
                        checkpoint_table=batch.checkpoints() if position == last else None)
            try:
                result = self._write(one)
            except DATA_ERRORS as error:
                note = f"projection: payload refused by DuckDB ({str(error)[:200]})"
                kept = (*row[:11], None, "; ".join(filter(None, [row[12], note])))
                one = Batch(rows=[kept], next_index=one.next_index,
                            checkpoint_table=one.checkpoint_table)
                result = self._write(one)
            inserted += result[0]
            noted += result[1]
        if not batch.rows and batch.checkpoints() is not None:
            self._write(batch)
        return inserted, noted

    def _write(self, batch: Batch | RawBatch | BlockBatch) -> tuple[int, int]:
        con = self.con
        table = batch.to_arrow()
        checkpoints = batch.checkpoints()
        next_index = batch.next_index
        raw = isinstance(batch, (RawBatch, BlockBatch))
        con.begin()
        try:
            if raw:
                con.register("_raw", table)
                con.execute(RAW_STAGE)
            else:
                con.register("_batch", table)
                con.execute(STAGE_SQL)
            # One look at the staged batch: repeats, entries projected before, the types in
            # it (only their projections run) and the counts of the usual insert.
            staged = con.execute(REPEATS_SQL).fetchone()
            assert staged is not None
            if staged[1]:
                con.execute(DROP_PROJECTED_SQL)
            if staged[0]:
                con.execute(DEDUPE_SQL)
            if staged[0] or staged[1]:
                staged = con.execute(LEFT_SQL).fetchone()
                assert staged is not None
            present = {t for t in staged[2] or () if t is not None}
            notes = _project(con, [p for p in PROJECTIONS if present.intersection(p.types)])
            if notes:
                counts = con.execute(
                    "SELECT count(*), count(*) FILTER (WHERE n.note IS NOT NULL "
                    "OR x.note IS NOT NULL) FROM _new n LEFT JOIN _notes x USING (event_id)"
                ).fetchone()
                con.execute(
                    "INSERT INTO events BY NAME SELECT n.* EXCLUDE (note), "
                    "nullif(concat_ws('; ', n.note, x.note), '') AS note "
                    "FROM _new n LEFT JOIN _notes x USING (event_id)")
            else:  # the usual case: no payload problems, no join
                counts = staged[3:5]
                con.execute("INSERT INTO events BY NAME SELECT * FROM _new")
            inserted, noted = (int(counts[0]), int(counts[1])) if counts else (0, 0)
            if checkpoints is not None:
                con.register("_checkpoints", checkpoints)
                con.execute(CHECKPOINTS_SQL)
            if next_index:
                values = ", ".join(f"({int(p)}, {int(i)}, now())"
                                   for p, i in next_index.items())
                con.execute(
                    f"INSERT INTO projection_state VALUES {values} ON CONFLICT (partition) DO "
                    "UPDATE SET next_index = greatest(next_index, excluded.next_index), "
                    "updated_at = excluded.updated_at")
            con.commit()
        except BaseException:
            con.rollback()
            raise
        else:
            for p, i in next_index.items():
                self._known[int(p)] = max(self._known.get(int(p), 0), int(i))
        finally:
            if raw:
                con.unregister("_raw")
            else:
                con.unregister("_batch")
            if checkpoints is not None:
                con.unregister("_checkpoints")
        return inserted, noted

    # ---- readers, snapshots, retention ----------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for a reader in this process (shares the open database)."""
        cursor = self.con.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        return cursor

    def publish_snapshot(self, target: Path | str) -> Path:
        """Copy the projections to `target` (atomically replaced) for readers elsewhere."""
        target = Path(target)
        tmp = target.with_name(target.name + ".tmp")
        tmp.unlink(missing_ok=True)
        name = self.con.execute("SELECT current_database()").fetchone()
        self.con.execute(f"ATTACH '{_sql_text(tmp)}' AS _snapshot")
        try:
            self.con.execute(f'COPY FROM DATABASE "{name[0] if name else "main"}" TO _snapshot')
        finally:
            self.con.execute("DETACH _snapshot")
        os.replace(tmp, target)
        return target

    def apply_retention(self, now: datetime) -> dict[str, int]:
        """Retention (projections.retention), then a checkpoint with vacuum on: the space of
        the deleted rows is reclaimed (and the row groups re-packed) once, here."""
        from projections.retention import apply_retention_to

        self.con.execute("RESET max_vacuum_tasks")
        try:
            deleted = apply_retention_to(self.con, now)
            if any(deleted.values()):
                self.con.execute("CHECKPOINT")
        finally:
            self.con.execute(VACUUM_OFF)
        return deleted

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Projector:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


_DONE = object()


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """`items`, each produced on a helper thread while the consumer works on the one before
    (never more than two in memory). An exception in the producer is raised here, after the
    items produced before it; when the consumer stops early, so does the producer."""
    done: Queue[tuple[Any, BaseException | None]] = Queue()
    room = threading.Semaphore(1)  # the producer starts an item once the last one was taken
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        while True:
            room.acquire()
            if stop.is_set():
                return
            try:
                item = next(iterator)
            except StopIteration:
                done.put((_DONE, None))
                return
            except BaseException as error:  # noqa: BLE001 - handed over to the consumer
                done.put((_DONE, error))
                return
            done.put((item, None))

    thread = threading.Thread(target=produce, name="projections-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = done.get()
            room.release()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        room.release()
        thread.join()


def _project(con: duckdb.DuckDBPyConnection, projections: list[Projection]) -> int:
    """Per projection, read its payloads once into a struct (a temp table of just its rows),
    note the payloads that miss a required field, insert the rest into the typed tables.
    Returns how many notes `_notes` holds (the inserts count them: no query)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _notes (event_id VARCHAR, note VARCHAR)")
    notes = 0
    for p in projections:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _src AS SELECT event_id, type, occurred_at, partition,"
            f" ledger_index, json_transform(payload, '{p.structure}') AS p FROM _new "
            f"WHERE type IN ({_types(p)})")
        missing = ", ".join(f"CASE WHEN p.{name} IS NULL THEN '{name}' END"
                            for name in p.required)
        added = con.execute(
            f"INSERT INTO _notes SELECT event_id, 'payload: not projected into {p.name}, "
            f"missing or unreadable: ' || coalesce(concat_ws(', ', {missing}), 'everything') "
            f"FROM _src WHERE NOT ({_ok(p)})").fetchone()
        notes += int(added[0]) if added else 0
        source = f"(SELECT * FROM _src WHERE {_ok(p)}) AS src"
        for table, select in p.inserts.items():
            con.execute(f"INSERT INTO {table} BY NAME " + select.replace("{src}", source))
    con.execute("DROP TABLE IF EXISTS _src")
    return notes


def _types(projection: Projection) -> str:
    return ", ".join(f"'{t}'" for t in projection.types)


def _ok(projection: Projection) -> str:
    return " AND ".join(["p IS NOT NULL", *(f"p.{name} IS NOT NULL"
                                            for name in projection.required)])


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def project(ledger_dir: Path | str, db_path: Path | str, *,
            batch_size: int = DEFAULT_BATCH_SIZE) -> ProjectionStats:
    """Bring `db_path` up to date with the ledger (creating it if needed)."""
    with Projector(ledger_dir, db_path, batch_size=batch_size) as projector:
        return projector.catch_up()


def rebuild(ledger_dir: Path | str, db_path: Path | str, *,
            batch_size: int = DEFAULT_BATCH_SIZE, now: datetime | None = None,
            source: Source | None = None) -> ProjectionStats:
    """Drop everything and project the whole ledger again.

    Built in a side file and renamed over `db_path` at the end, so readers (and a crash) see
    either the old projections or the complete new ones. With `now`, retention is applied to
    the rebuilt file (rows the ledger still holds but retention had removed go again).
    Needs exclusive use of `db_path`: stop the projector first.
    """
    db_path = Path(db_path)
    side = db_path.with_name(db_path.name + ".rebuild")
    for leftover in (side, side.with_name(side.name + ".wal")):
        leftover.unlink(missing_ok=True)
    with Projector(ledger_dir, side, batch_size=batch_size, source=source) as projector:
        stats = projector.catch_up()
        if now is not None:
            projector.apply_retention(now)
        projector.con.execute("CHECKPOINT")
    # The old file's write-ahead log belongs to the old file: it must not replay onto the new.
    db_path.with_name(db_path.name + ".wal").unlink(missing_ok=True)
    os.replace(side, db_path)
    return stats
