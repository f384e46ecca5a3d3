"""Property tests: any single change to a segment file is detected, at the exact index.

The ledger is built once; each example copies it, changes the segment bytes, and expects
VerificationError with the index of the first entry affected.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger, SigningKey, VerificationError, verify
from ledger.canonical import canonical_json
from ledger.layout import T_ENTRY, entry_frame, list_segments, read_frames

KEY = SigningKey.generate("wc")
N_EVENTS = 40


@dataclass(frozen=True)
class Frame:
    start: int
    end: int
    is_entry: bool
    entries_before: int  # entry index of this frame, or entries preceding a checkpoint frame


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, list[Frame], bytes]:
    root = tmp_path_factory.mktemp("ledger")
    with Ledger.open(root, signer=KEY, checkpoint_every=7) as ledger:
        for i in range(N_EVENTS):
            ledger.append(0, {"event_id": f"e{i}", "type": "t", "payload": {"n": i}})
        head = ledger.head(0)
    seg = list_segments(root / "p0")[0][1]
    frames, count = [], 0
    for off, _, tail in read_frames(seg):
        assert isinstance(tail, bytes)
        is_entry = tail[0] == T_ENTRY
        frames.append(Frame(off, off + 36 + len(tail), is_entry, count))
        count += is_entry
    return root, seg.read_bytes(), frames, head


def check(root: Path, data: bytes, tmp: Path) -> VerificationError:
    copy = tmp / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(root, copy)
    list_segments(copy / "p0")[0][1].write_bytes(data)
    with pytest.raises(VerificationError) as err:
        verify(copy, trusted=[KEY.vkey()])
    return err.value


def entry_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.is_entry]


def test_untouched_copy_verifies(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _, _ = built
    shutil.copytree(root, tmp_path / "copy")
    assert verify(tmp_path / "copy", trusted=[KEY.vkey()]).partitions[0].size == N_EVENTS + 1


settings_ = settings(max_examples=60, deadline=None)


@settings_
@given(st.data())
def test_any_byte_flip_is_found_at_its_entry(built, tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    root, raw, frames, _ = built
    pos = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    changed = bytearray(raw)
    changed[pos] ^= 1 << bit
    frame = next(f for f in frames if f.start <= pos < f.end)
    err = check(root, bytes(changed), tmp_path_factory.mktemp("t"))
    assert err.index == frame.entries_before, err


@settings_
@given(st.data())
def test_a_dropped_entry_is_found(built, tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    root, raw, frames, _ = built
    f = data.draw(st.sampled_from(entry_frames(frames)))
    err = check(root, raw[: f.start] + raw[f.end :], tmp_path_factory.mktemp("t"))
    assert err.index == f.entries_before, err


@settings_
@given(st.data())
def test_a_duplicated_entry_is_found(built, tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    root, raw, frames, _ = built
    f = data.draw(st.sampled_from(entry_frames(frames)))
    err = check(
        root, raw[: f.end] + raw[f.start : f.end] + raw[f.end :], tmp_path_factory.mktemp("t")
    )
    assert err.index == f.entries_before + 1, err


@settings_
@given(st.data())
def test_swapped_entries_are_found(built, tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    root, raw, frames, _ = built
    entries = entry_frames(frames)
    i = data.draw(st.integers(0, len(entries) - 2))
    a, b = entries[i], entries[i + 1]
    swapped = (
        raw[: a.start]
        + raw[b.start : b.end]
        + raw[a.end : b.start]
        + raw[a.start : a.end]
        + raw[b.end :]
    )
    err = check(root, swapped, tmp_path_factory.mktemp("t"))
    assert err.index == a.entries_before, err


@settings_
@given(st.data())
def test_any_truncation_is_found(built, tmp_path_factory, data) -> None:  # type: ignore[no-untyped-def]
    root, raw, frames, _ = built
    cut = data.draw(st.integers(0, len(raw) - 1))
    complete_entries = sum(1 for f in frames if f.is_entry and f.end <= cut)
    err = check(root, raw[:cut], tmp_path_factory.mktemp("t"))
    assert err.index == complete_entries, err
    assert err.reason in ("torn_tail", "truncated"), err


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=1, max_size=200))
def test_appended_garbage_is_found(built, tmp_path_factory, junk: bytes) -> None:  # type: ignore[no-untyped-def]
    root, raw, _, _ = built
    err = check(root, raw + junk, tmp_path_factory.mktemp("t"))
    assert err.index == N_EVENTS + 1, err


def test_an_appended_well_formed_entry_is_found(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, raw, _, head = built
    frame, _ = entry_frame(0, N_EVENTS + 1, head, 0, canonical_json({"event_id": "forged"}))
    err = check(root, raw + frame, tmp_path)
    assert (err.reason, err.index) == ("unsigned_tail", N_EVENTS + 1)


def test_a_missing_middle_segment_is_found(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, signer=KEY, checkpoint_every=20, segment_bytes=4096) as ledger:
        for i in range(200):
            ledger.append(0, {"event_id": f"e{i}"})
    segs = list_segments(tmp_path / "p0")
    first_of_next = segs[3][0]
    segs[2][1].unlink()
    with pytest.raises(VerificationError) as err:
        verify(tmp_path, trusted=[KEY.vkey()])
    assert (err.value.reason, err.value.index) == ("gap", segs[2][0])
    assert first_of_next > segs[2][0]


def test_a_forged_checkpoint_copy_is_found(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _, _, _ = built
    shutil.copytree(root, tmp_path / "copy")
    note = (tmp_path / "copy" / "p0" / "checkpoint").read_text()
    (tmp_path / "copy" / "p0" / "checkpoint").write_text(note.replace("\n41\n", "\n45\n"))
    with pytest.raises(VerificationError) as err:
        verify(tmp_path / "copy", trusted=[KEY.vkey()])
    assert err.value.reason in ("truncated", "bad_signature")
