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
