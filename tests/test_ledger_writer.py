"""The writer: appends, idempotency, expected prev, cadence, reopen, repair, keys, locking."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ledger import (
    Ledger,
    LedgerError,
    PrevMismatchError,
    SigningKey,
    VerificationError,
    iter_entries,
    partition_for,
    verify,
)
from ledger.checkpoint import Checkpoint
from ledger.layout import list_segments


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ev(i: int | str, **extra: object) -> dict:
    return {"event_id": f"ev-{i}", "type": "test.event", "payload": {"i": str(i), **extra}}


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate("wc")


def test_first_event_follows_the_genesis_key_event(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        result = ledger.append(0, ev(1))
    assert (result.index, result.duplicate) == (1, False)
    entries = list(iter_entries(tmp_path, 0))
    assert [e.event["type"] for e in entries] == ["ledger.key_added", "test.event"]
    assert entries[1].prev_hash == entries[0].leaf_hash


def test_same_event_id_is_not_appended_twice(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        first = ledger.append(0, ev(1))
        again = ledger.append(0, ev(1, changed=True))
        assert again == type(first)(0, first.index, first.leaf_hash, True)
        assert ledger.size(0) == 2


def test_duplicates_are_recognised_after_reopen(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        first = ledger.append(0, ev(1))
        ledger.append_many(0, [ev(i) for i in range(2, 50)])
    with Ledger.open(tmp_path, signer=key) as ledger:
        again = ledger.append(0, ev(1))
        many = ledger.append_many(0, [ev(3), ev(99), ev(99)])
        assert (again.index, again.leaf_hash, again.duplicate) == (
            first.index,
            first.leaf_hash,
            True,
        )
        assert [m.duplicate for m in many] == [True, False, True]
        assert ledger.size(0) == 51


def test_wrong_expected_prev_is_refused(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        head = ledger.head(0)
        ledger.append(0, ev(1), expected_prev=head)
        with pytest.raises(PrevMismatchError) as err:
            ledger.append(0, ev(2), expected_prev=head)
        assert err.value.code == "ledger.prev_mismatch"
        assert ledger.size(0) == 2


@pytest.mark.parametrize(
    "event",
    [{"type": "x"}, {"event_id": ""}, {"event_id": 5}, ["event_id"], {"event_id": "a", "n": 2**60}],
    ids=["no id", "empty id", "int id", "not a dict", "no canonical form"],
)
def test_bad_events_are_refused(tmp_path: Path, key: SigningKey, event: object) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        with pytest.raises(LedgerError) as err:
            ledger.append(0, event)  # type: ignore[arg-type]
        assert err.value.code == "ledger.invalid_event"


def test_checkpoint_every_n_entries(tmp_path: Path, key: SigningKey) -> None:
    clock = FakeClock()
    with Ledger.open(tmp_path, signer=key, checkpoint_every=10, clock=clock) as ledger:
        for i in range(9):
            ledger.append(0, ev(i))
        assert Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 1
        ledger.append(0, ev(9))
        assert Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 11


def test_checkpoint_after_the_interval(tmp_path: Path, key: SigningKey) -> None:
    clock = FakeClock()
    with Ledger.open(tmp_path, signer=key, checkpoint_interval_s=1.0, clock=clock) as ledger:
        ledger.append(0, ev(1))
        clock.now = 0.5
        ledger.maybe_checkpoint()
        assert Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 1
        clock.now = 1.0
        ledger.maybe_checkpoint()
        assert Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 2


def test_close_signs_everything_and_verify_passes(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key, partitions=3) as ledger:
        for i in range(100):
            ledger.append(partition_for(str(i), 3), ev(i))
    report = verify(tmp_path, trusted=[key.vkey()])
    assert report.anchored
    assert sum(p.size for p in report.partitions) == 103
    assert all(p.unsigned_tail == 0 for p in report.partitions)


def test_a_second_writer_is_locked_out(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key), pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path, signer=key)
    assert err.value.code == "ledger.locked"


def test_origin_cannot_change(tmp_path: Path, key: SigningKey) -> None:
    Ledger.open(tmp_path, signer=key).close()
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path, signer=key, origin="elsewhere")
    assert err.value.code == "ledger.config_mismatch"


def test_torn_tail_is_cut_recorded_and_kept(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        for i in range(10):
            ledger.append(0, ev(i))
    seg = list_segments(tmp_path / "p0")[-1][1]
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x01\x00" + b"half a frame")
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[key.vkey()])
    assert (err.value.reason, err.value.index) == ("torn_tail", 11)
    with Ledger.open(tmp_path, signer=key) as ledger:
        assert ledger.size(0) == 12
    entries = list(iter_entries(tmp_path, 0))
    cut = entries[11].event
    assert cut["type"] == "ledger.tail_truncated"
    assert cut["payload"]["bytes_cut"] == 16
    assert (tmp_path / "p0" / cut["payload"]["quarantine"]).read_bytes().endswith(b"half a frame")
    verify(tmp_path, trusted=[key.vkey()])


def test_damage_in_the_middle_is_not_cut(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        for i in range(10):
            ledger.append(0, ev(i))
    seg = list_segments(tmp_path / "p0")[-1][1]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path, signer=key)
    assert err.value.code == "ledger.corrupt"
    assert seg.stat().st_size == len(data)


def test_rotation_is_recorded_and_verifies_with_either_key(tmp_path: Path, key: SigningKey) -> None:
    new = SigningKey.generate("wc")
    with Ledger.open(tmp_path, signer=key, partitions=2) as ledger:
        ledger.append(0, ev(1))
        ledger.rotate_key(new)
        ledger.append(0, ev(2))
    types = [e.event["type"] for e in iter_entries(tmp_path, 1)]
    assert types == ["ledger.key_added", "ledger.key_rotated"]
    assert verify(tmp_path, trusted=[key.vkey()]).ok
    assert verify(tmp_path, trusted=[new.vkey()]).partitions[0].keys == [key.vkey(), new.vkey()]


def test_a_retired_key_cannot_write_and_rotation_resumes(tmp_path: Path, key: SigningKey) -> None:
    new, newer = SigningKey.generate("wc"), SigningKey.generate("wc")
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.rotate_key(new)
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path, signer=key)
    assert err.value.code == "ledger.signer_unknown"
    with Ledger.open(tmp_path, signer=newer, retired_signers=[key, new]) as ledger:
        assert ledger.keys(0)[-1] == newer.vkey()
    assert verify(tmp_path, trusted=[key.vkey()]).ok


def test_appended_key_events_are_just_data(tmp_path: Path, key: SigningKey) -> None:
    """A caller cannot smuggle a key into the registry: append() writes kind 0x00 entries."""
    evil = SigningKey.generate("wc")
    forged = {
        "event_id": "x",
        "type": "ledger.key_added",
        "payload": {"action": "added", "new_vkey": evil.vkey(), "old_vkey": None},
    }
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append(0, forged)
        assert ledger.keys(0) == [key.vkey()]
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[evil.vkey()])
    assert err.value.reason == "untrusted_keys"


def test_side_files_are_rebuilt_when_lost(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(300)])
    for path in (tmp_path / "p0" / "index").iterdir():
        path.unlink()
    with Ledger.open(tmp_path, signer=key) as ledger:
        assert ledger.append(0, ev(7)).duplicate
        assert ledger.size(0) == 301
    assert (tmp_path / "p0" / "index" / "level-00.bin").stat().st_size == 301 * 32


def test_segments_roll_and_everything_still_verifies(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key, checkpoint_every=50, segment_bytes=8192) as ledger:
        ledger.append_many(0, [ev(i) for i in range(400)])
    assert len(list_segments(tmp_path / "p0")) > 3
    assert verify(tmp_path, trusted=[key.vkey()]).partitions[0].size == 401
    assert [e.index for e in iter_entries(tmp_path, 0, start=390)] == list(range(390, 401))


def test_since_checkpoint_checks_only_the_new_part(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(100)])
    kept = verify(tmp_path, trusted=[key.vkey()]).partitions[0].latest_checkpoint
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(100, 150)])
    report = verify(tmp_path, trusted=[key.vkey()], since_checkpoint=kept)
    assert (report.partitions[0].verified_from, report.partitions[0].size) == (101, 151)


def test_since_checkpoint_catches_a_rewritten_past(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(20)])
    kept = verify(tmp_path, trusted=[key.vkey()]).partitions[0].latest_checkpoint
    other = tmp_path / "other"
    with Ledger.open(other, signer=key) as ledger:  # same key, different history
        ledger.append_many(0, [ev(i, forged=True) for i in range(30)])
    with pytest.raises(VerificationError) as err:
        verify(other, trusted=[key.vkey()], since_checkpoint=kept)
    assert err.value.reason == "bad_root"


def test_checkpoint_files_hold_the_latest_note(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append(0, ev(1))
        notes = ledger.checkpoint_now()
    assert (tmp_path / "p0" / "checkpoint").read_text() == notes[0]
    assert json.loads((tmp_path / "LEDGER.json").read_text())["origin"] == "worker-certification"


def test_ticker_signs_idle_entries(tmp_path: Path, key: SigningKey) -> None:
    clock = FakeClock()
    with Ledger.open(tmp_path, signer=key, clock=clock) as ledger:
        ledger.append(0, ev(1))
        clock.now = 5.0
        ledger.start_ticker(period_s=0.01)
        for _ in range(500):
            if Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 2:
                break
            time.sleep(0.01)
        assert Checkpoint.parse(ledger.latest_checkpoint(0) or "").size == 2


def test_reopen_after_a_roll_left_an_empty_segment(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key, checkpoint_every=10, segment_bytes=1) as ledger:
        ledger.append_many(0, [ev(i) for i in range(9)])  # 10 entries -> checkpoint -> roll
    last = list_segments(tmp_path / "p0")[-1][1]
    assert last.stat().st_size == 0
    with Ledger.open(tmp_path, signer=key) as ledger:
        assert ledger.append(0, ev(100)).index == 10
    assert verify(tmp_path, trusted=[key.vkey()]).partitions[0].size == 11


def test_partitions_verify_in_parallel_and_errors_cross_processes(
    tmp_path: Path, key: SigningKey
) -> None:
    with Ledger.open(tmp_path, signer=key, partitions=3) as ledger:
        for p in range(3):
            ledger.append_many(p, [ev(f"{p}-{i}") for i in range(50)])
    assert verify(tmp_path, trusted=[key.vkey()], workers=2).entries == 153
    seg = list_segments(tmp_path / "p1")[0][1]
    data = bytearray(seg.read_bytes())
    data[-5] ^= 1
    seg.write_bytes(bytes(data))
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[key.vkey()], workers=2)
    assert (err.value.partition, err.value.index, err.value.reason) == (1, 51, "bad_hash")


def test_since_checkpoint_signed_by_a_rotated_key(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(30)])
        kept = ledger.checkpoint_now()[0]
        new = SigningKey.generate("wc")
        ledger.rotate_key(new)
        ledger.append_many(0, [ev(i) for i in range(30, 60)])
    report = verify(tmp_path, trusted=[new.vkey()], since_checkpoint=kept)
    assert report.partitions[0].size == 62
    forged = kept.replace(kept.split("\n")[2], "A" * 43 + "=")
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[new.vkey()], since_checkpoint=forged)
    assert err.value.reason in ("bad_signature", "bad_root")


def test_a_missing_partition_is_not_recreated(tmp_path: Path, key: SigningKey) -> None:
    import shutil

    with Ledger.open(tmp_path, signer=key, partitions=2) as ledger:
        ledger.append(1, ev(1))
    shutil.rmtree(tmp_path / "p1")
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path, signer=key)
    assert err.value.code == "ledger.corrupt"


def test_partitions_can_grow(tmp_path: Path, key: SigningKey) -> None:
    Ledger.open(tmp_path, signer=key, partitions=1).close()
    with Ledger.open(tmp_path, signer=key, partitions=3) as ledger:
        assert ledger.partitions == 3
    assert len(verify(tmp_path, trusted=[key.vkey()]).partitions) == 3


def test_live_verify_stops_at_a_frame_still_being_written(tmp_path: Path, key: SigningKey) -> None:
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append_many(0, [ev(i) for i in range(20)])
    seg = list_segments(tmp_path / "p0")[-1][1]
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x02\x00" + b"\x11" * 40)  # a frame whose bytes have not all landed
    report = verify(tmp_path, trusted=[key.vkey()], allow_unsigned_tail=True)
    assert report.partitions[0].size == 21
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[key.vkey()])
    assert err.value.reason == "torn_tail"


def test_a_failed_fsync_stops_the_ledger(
    tmp_path: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.open(tmp_path, signer=key, checkpoint_every=5)

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.fdatasync", broken)
    with pytest.raises(LedgerError) as err:
        for i in range(20):
            ledger.append(0, ev(i))
        ledger.checkpoint_now()
    assert err.value.code == "ledger.io_error"
    monkeypatch.undo()
    with pytest.raises(LedgerError):
        ledger.close()


def test_seek_hints_speed_up_reads_and_bad_hints_are_ignored(
    tmp_path: Path, key: SigningKey
) -> None:
    with Ledger.open(tmp_path, signer=key, checkpoint_every=700) as ledger:
        ledger.append_many(0, [ev(i) for i in range(5000)])
        for i in range(5000, 9000):
            ledger.append(0, ev(i))
    hints = (tmp_path / "p0" / "index" / "seek.bin").read_bytes()
    assert len(hints) == 3 * 24  # entries 0, 4096, 8192
    want = [e.index for e in iter_entries(tmp_path, 0, start=8190)][:5]
    assert want == [8190, 8191, 8192, 8193, 8194]
    (tmp_path / "p0" / "index" / "seek.bin").write_bytes(bytes(range(72)))
    assert [e.index for e in iter_entries(tmp_path, 0, start=8190)][:5] == want
