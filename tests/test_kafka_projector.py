"""The worker's projector process (streams/worker_projector.py), without a broker: what the
ledger writer hands it over the pipe ends up in DuckDB, the ledger's own entries (never handed
over) are read from the files, and a frame cut by the pipe waits for its rest."""

from __future__ import annotations

from rules.policy import default_policy
from streams.config import load_settings
from streams.handlers import Pipeline
from streams.keys import load_signing_key
from streams.sample import sample_records
from streams.worker_ledger import LedgerWriter
from streams.worker_projector import FRAME, HandedEntry, ProjectorProcess, _parse

PARTITIONS = 4


def test_a_frame_cut_by_the_pipe_waits_for_its_rest():
    frames = b"".join(FRAME.pack(p, i, bytes([i]) * 32, len(body)) + body
                      for p, i, body in [(1, 7, b'{"a":1}'), (3, 0, b"{}")])
    buffer, out = bytearray(frames[:FRAME.size + 3]), []
    _parse(buffer, out)
    assert out == [] and len(buffer) == FRAME.size + 3
    buffer += frames[FRAME.size + 3:]
    _parse(buffer, out)
    assert out == [HandedEntry(1, 7, bytes([7]) * 32, b'{"a":1}'),
                   HandedEntry(3, 0, bytes([0]) * 32, b"{}")]
    assert buffer == bytearray()


def test_handed_entries_and_the_ledgers_own_entries_are_all_projected(tmp_path):
    from ledger import Ledger
    from projections import connect_readonly

    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=PARTITIONS)
    settings.data_dir.mkdir(parents=True)
    ledger = Ledger.open(settings.ledger_dir, signer=load_signing_key(settings),
                         origin=settings.origin, partitions=PARTITIONS)
    progress: list[dict[int, int]] = []
    projector = ProjectorProcess(settings.ledger_dir, settings.duckdb_path, 0.01,
                                 on_progress=lambda at, positions: progress.append(positions))
    try:
        writer = LedgerWriter(ledger, PARTITIONS)
        writer.fresh = []
        handlers = Pipeline(default_policy(), writer.record)
        for number, raw in enumerate(sample_records(300)):
            handlers.handle_raw(raw, f"sample:{number}")
            if number % 50 == 49:
                projector.hand_over(writer.take_fresh())
        projector.hand_over(writer.take_fresh())
        sizes = {p: ledger.size(p) for p in range(PARTITIONS)}
    finally:
        ledger.close()
        assert projector.close() == 0
    with connect_readonly(settings.duckdb_path) as db:
        events = db.execute("select count(*) from events where producer <> 'ledger'"
                            ).fetchone()[0]
        state = dict(db.execute("select partition, next_index from projection_state"
                                ).fetchall())
    assert events == writer.appended
    assert all(state[p] >= sizes[p] for p in range(PARTITIONS))  # key entries included
    assert progress and progress[-1] == {p: state[p] for p in progress[-1]}


def _stored_checkpoints(ledger_dir, partitions):
    from tests.test_projections import stored_checkpoints

    return stored_checkpoints(ledger_dir, partitions)


def _rows(path, sql):
    from projections import connect_readonly

    with connect_readonly(path) as db:
        return db.execute(sql).fetchall()


def _parsed(rows):
    """Rows with JSON text parsed (the worker hands over its own encoding of an event, equal
    once parsed to the ledger's canonical bytes, not byte for byte), sorted."""
    import json

    def value(v):
        if isinstance(v, str) and v[:1] in ("{", "["):
            try:
                return json.dumps(json.loads(v), sort_keys=True)
            except ValueError:
                return v
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


def _run_worker(settings, records, *, resend=()):
    """One worker run: append `records` through the pipeline, hand each 50 over (after
    `resend`, entries a previous run handed over already); while the projector still runs,
    sign every partition and wait until its snapshot holds every checkpoint frame."""
    import time

    from ledger import Ledger

    ledger = Ledger.open(settings.ledger_dir, signer=load_signing_key(settings),
                         origin=settings.origin, partitions=PARTITIONS, checkpoint_every=17,
                         checkpoint_interval_s=3600)
    snapshot = settings.data_dir / "snapshot.duckdb"
    projector = ProjectorProcess(settings.ledger_dir, settings.duckdb_path, 0.01,
                                 snapshot=snapshot, snapshot_interval_s=0.2)
    try:
        assert projector.wait_ready(60)
        projector.hand_over(list(resend))
        writer = LedgerWriter(ledger, PARTITIONS)
        writer.fresh = []
        handed = []
        handlers = Pipeline(default_policy(), writer.record)
        for number, raw in enumerate(records):
            handlers.handle_raw(raw, f"sample:{number}")
            if number % 50 == 49:
                handed += writer.fresh
                projector.hand_over(writer.take_fresh())
        handed += writer.fresh
        projector.hand_over(writer.take_fresh())
        ledger.checkpoint_now()
        stored = _stored_checkpoints(settings.ledger_dir, PARTITIONS)
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:  # the projector is running: checkpoints current
            if snapshot.exists():
                seen = _rows(snapshot, "select partition, size, note from checkpoints "
                                       "order by all")
                if seen == stored:
                    break
            time.sleep(0.05)
        assert seen == stored
    finally:
        ledger.close()
        assert projector.close() == 0
    return writer, handed


def test_checkpoints_stay_current_and_a_restart_with_entries_sent_again_stays_exact(tmp_path):
    from projections import rebuild
    from projections.schema import PROJECTED_TABLES

    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=PARTITIONS)
    settings.data_dir.mkdir(parents=True)
    records = list(sample_records(240))
    first, handed = _run_worker(settings, records[:120])
    # the next run hands over again what the first handed over (its pipe re-sends them)
    second, _ = _run_worker(settings, records[120:], resend=handed)
    db = settings.duckdb_path
    events = _rows(db, "select count(*), count(distinct event_id) from events "
                       "where producer <> 'ledger'")[0]
    assert events == (first.appended + second.appended,) * 2
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild(settings.ledger_dir, rebuilt)
    from projections import connect_readonly

    with connect_readonly(db) as a, connect_readonly(rebuilt) as b:
        for table in PROJECTED_TABLES:  # JSON as parsed: the pipe carries the worker's spelling
            sql = f"select * from {table}"
            assert _parsed(a.execute(sql).fetchall()) == _parsed(b.execute(sql).fetchall()), \
                table
    assert _rows(db, "select partition, next_index from projection_state order by all") == \
        _rows(rebuilt, "select partition, next_index from projection_state order by all")


def test_commits_follow_the_workers_batches_every_second_one_as_it_comes():
    from streams.worker_projector import due

    interval, gap = 0.050, 0.028  # the default interval; the worker's batch every ~28 ms
    last, oldest, committed = float("-inf"), 0.0, []
    pending = False
    for n in range(1, 9):
        now = n * gap
        if not pending:
            oldest, pending = now, True
        if due(now, last, oldest, interval, came=True):
            committed.append(n)
            last, pending = now, False
    assert committed == [1, 3, 5, 7]  # every second batch, the moment it comes


def test_an_entry_waits_at_most_one_interval_when_no_batch_follows_it():
    from streams.worker_projector import due

    last, oldest = 1.0, 1.01  # a commit just started; an entry came 10 ms later
    assert not due(1.05, last, oldest, 0.070, came=False)
    assert due(1.08, last, oldest, 0.070, came=False)
    assert not due(1.05, last, oldest, 0.070, came=True)  # nor sooner than the interval
