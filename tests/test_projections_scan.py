"""ledger/scan.py, the bulk reader projections use: the same entries as the ledger's own reader,
from any start, in blocks of any size; the checkpoints from the resume point on; the live edge
is the end, damage elsewhere is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, LedgerError, SigningKey
from ledger.layout import list_segments, partition_dir, read_frames
from ledger.reader import iter_raw
from ledger.scan import scan
from projections.batch import BlockBatch

SIGNER = SigningKey.generate("scan")


def event(i: int) -> dict[str, Any]:
    return {"event_id": f"e-{i}", "type": "task.submitted", "occurred_at": "2026-01-01T00:00:00Z",
            "payload": {"task_id": f"t-{i}", "text": "x" * (i % 300)}}


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One partition, 9,000 entries (seek hints every 4,096), small segments, a checkpoint
    every 250 entries."""
    directory = tmp_path_factory.mktemp("scan") / "ledger"
    with Ledger.open(directory, signer=SIGNER, checkpoint_every=250,
                     segment_bytes=512 * 1024) as ledger:
        ledger.append_many(0, [event(i) for i in range(9_000)])
    return directory


def scanned(directory: Path, start: int, **options: Any) -> list[tuple[int, bytes, bytes]]:
    return [frame for block in scan(partition_dir(directory, 0), 0, start, **options)
            for frame in block.frames()]


def checkpoint_sizes(directory: Path) -> list[int]:
    return [int(tail[1:].decode().split("\n")[1])
            for _, path in list_segments(partition_dir(directory, 0))
            for _, _, tail in read_frames(path) if isinstance(tail, bytes) and tail[:1] == b"C"]


@pytest.mark.parametrize("start", [0, 1, 249, 250, 251, 4095, 4096, 4097, 8999, 9001, 9005])
@pytest.mark.parametrize("max_entries", [1, 333, 1 << 40])
def test_the_same_entries_as_the_ledgers_reader(ledger_dir: Path, start: int,
                                                max_entries: int) -> None:
    expected = [(i, h, body) for i, h, _, _, body in iter_raw(partition_dir(ledger_dir, 0), 0,
                                                              start)]
    got = scanned(ledger_dir, start, max_entries=max_entries, read_bytes=100_000)
    assert got == expected


@pytest.mark.parametrize("start", [0, 250, 251, 4097, 9001])
def test_checkpoints_from_the_resume_point_on(ledger_dir: Path, start: int) -> None:
    sizes = [size for block in scan(partition_dir(ledger_dir, 0), 0, start)
             for size, _ in block.checkpoints]
    assert sizes == [s for s in checkpoint_sizes(ledger_dir) if s >= start]


def test_blocks_respect_max_entries_and_split_keeps_every_frame(ledger_dir: Path) -> None:
    blocks = list(scan(partition_dir(ledger_dir, 0), 0, 0, max_entries=1000))
    heads_and_tails = [part for block in blocks for part in block.split(len(block) // 3)]
    assert max(len(b) for b in blocks) == 1000
    assert [f for b in heads_and_tails for f in b.frames()] == scanned(ledger_dir, 0)
    assert sorted(s for b in heads_and_tails for s, _ in b.checkpoints) == \
        checkpoint_sizes(ledger_dir)


def test_a_frame_still_being_written_is_the_end(tmp_path: Path, ledger_dir: Path) -> None:
    copy = tmp_path / "p0"
    copy.mkdir()
    segments = list_segments(partition_dir(ledger_dir, 0))
    for _, path in segments:
        (copy / path.name).write_bytes(path.read_bytes())
    last = copy / segments[-1][1].name
    last.write_bytes(last.read_bytes() + b"\x00\x00\x01\x00" + b"\x17" * 40)  # half a frame
    assert len(scanned(tmp_path, 0)) == 9_001  # the key event and 9,000 entries


def test_a_damaged_frame_before_the_end_is_corrupt(tmp_path: Path, ledger_dir: Path) -> None:
    copy = tmp_path / "p0"
    copy.mkdir()
    for _, path in list_segments(partition_dir(ledger_dir, 0)):
        (copy / path.name).write_bytes(path.read_bytes())
    first = list_segments(copy)[0][1]
    data = bytearray(first.read_bytes())
    data[5_000] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(LedgerError) as caught:
        scanned(tmp_path, 0)
    assert caught.value.code == "ledger.corrupt"


def test_a_prepared_batch_gives_back_the_same_rows(ledger_dir: Path) -> None:
    """The careful path rebuilds rows from the Arrow table once the read buffers are gone."""
    blocks = list(scan(partition_dir(ledger_dir, 0), 0, 4_000, max_entries=700))
    batch, kept = BlockBatch(), BlockBatch()
    for block in blocks:
        batch.add(block)
        kept.add(block)
    expected = kept.rows
    assert batch.prepared().blocks == []
    assert batch.rows == expected
    assert len(expected) == 5_001 and batch.next_index == {0: 9_001}
