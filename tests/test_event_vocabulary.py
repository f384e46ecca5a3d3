"""One definition of each event type: what the ledger writes about itself (its key registry, a
torn tail it cut) is read by the same models in events/ as everything else, and projected."""

from __future__ import annotations

from pathlib import Path

from events import EVENT_TYPES, INBOUND_TYPES, parse_event
from ledger import Ledger, SigningKey, iter_entries
from ledger.layout import list_segments


def test_the_ledgers_own_events_parse_with_the_event_models(tmp_path: Path) -> None:
    key, new = SigningKey.generate("wc"), SigningKey.generate("wc")
    with Ledger.open(tmp_path, signer=key) as ledger:
        ledger.append(0, {"event_id": "ev-1", "type": "test.event", "payload": {}})
        ledger.rotate_key(new)
    with open(list_segments(tmp_path / "p0")[-1][1], "ab") as segment:
        segment.write(b"\x00\x00\x01\x00" + b"half a frame")  # a torn tail, cut on open
    Ledger.open(tmp_path, signer=new).close()

    own = [e.event for e in iter_entries(tmp_path, 0) if e.event["type"].startswith("ledger.")]
    assert [e["type"] for e in own] == [
        "ledger.key_added", "ledger.key_rotated", "ledger.tail_truncated"]
    for event in own:
        envelope, payload = parse_event(event)  # raises when the two definitions drift apart
        assert type(payload) is EVENT_TYPES[envelope.type]
        assert payload.model_dump(mode="json", exclude_none=True) == {
            k: v for k, v in event["payload"].items() if v is not None}


def test_the_ledgers_own_events_are_never_accepted_as_input() -> None:
    assert not {name for name in EVENT_TYPES if name.startswith("ledger.")} & INBOUND_TYPES
