"""The handlers that both the embedded runner and the Faust agents call.

Bytes in, events out: validate at the edge, certify, and turn every failure into an
`input.rejected` event that keeps why and what (never an exception that stops a worker).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from events import INBOUND_TYPES, Envelope, InputError, decode_json, parse_event
from events.payloads import InputRejected, TaskSubmitted
from rules.checker import Decision, decide
from rules.policy import Policy
from rules.task_facts import derive_task_id

PRODUCER = "certifier"
EXCERPT_BYTES = 300


@dataclass(frozen=True)
class Outcome:
    """What one inbound record became: events to record, and the decision if any."""

    events: list[Envelope]
    decision: Decision | None = None
    rejected: InputRejected | None = None


def rejection(raw: bytes, source: str, error: InputError, now: datetime,
              subject: str | None = None) -> Envelope:
    payload = InputRejected(
        source=source, code=error.code, message=error.message,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        raw_excerpt=raw[:EXCERPT_BYTES].decode("utf-8", errors="replace"), raw_size=len(raw))
    # Deterministic id: the same bad record from the same place is recorded once.
    event_id = "rejected:" + hashlib.sha256(source.encode() + b"\0" + raw).hexdigest()[:32]
    return Envelope(event_id=event_id, type="input.rejected", occurred_at=now, producer=PRODUCER,
                    subject=subject or f"rejected-{payload.raw_sha256[:16]}",
                    payload=payload.model_dump(mode="json"))


def as_event(document: Any, raw: bytes, now: datetime, producer: str) -> Envelope:
    """Accept a full envelope, or a bare task document (what masters' scripts send)."""
    if isinstance(document, dict) and "type" in document and "payload" in document:
        envelope, _ = parse_event(document)
        if envelope.type not in INBOUND_TYPES:
            raise InputError("input.not_inbound",
                             f"type: {envelope.type!r} is derived by us, not accepted as input")
        return envelope
    if not isinstance(document, dict):
        raise InputError("input.schema", "input: expected a JSON object (an event or a task)")
    given = document.get("task_id", document.get("id"))
    task_id = str(given) if isinstance(given, (str, int)) and given != "" else (
        derive_task_id(document))
    payload = TaskSubmitted(task_id=task_id, master_id=document.get("master_id")
                            if isinstance(document.get("master_id"), str) else None,
                            task=document)
    # Same bytes, same submission: a replayed bare task is recognised as a duplicate.
    event_id = f"task:{hashlib.sha256(raw).hexdigest()[:32]}"
    return Envelope(event_id=event_id, type="task.submitted", occurred_at=now, producer=producer,
                    subject=task_id, payload=payload.model_dump(mode="json"))


def decision_event(submitted: Envelope, decision: Decision, now: datetime) -> Envelope:
    return Envelope(
        event_id=f"{submitted.event_id}:decision",  # deterministic: replays stay idempotent
        type="certification.decided", occurred_at=now, producer=PRODUCER,
        subject=submitted.subject, correlation_id=submitted.correlation_id or submitted.event_id,
        causation_id=submitted.event_id, payload=decision.decided.model_dump(mode="json"))


def handle_inbound(raw: bytes, source: str, policy: Policy, now: datetime,
                   producer: str = "master") -> Outcome:
    """One inbound record -> the events it causes. Never raises on bad input."""
    try:
        event = as_event(decode_json(raw), raw, now, producer)
    except InputError as error:
        rejected = rejection(raw, source, error, now)
        return Outcome([rejected], rejected=InputRejected.model_validate(rejected.payload))
    if event.type != "task.submitted":
        return Outcome([event])
    try:
        decision = decide(event.payload["task"], policy, task_id=event.payload["task_id"])
    except InputError as error:
        rejected = rejection(raw, source, error, now, subject=event.subject)
        return Outcome([rejected], rejected=InputRejected.model_validate(rejected.payload))
    return Outcome([event, decision_event(event, decision, now)], decision=decision)
