"""The handlers that both the embedded runner and the Faust agents call.

Bytes in, events out: validate at the edge, certify, and turn every failure into an
`input.rejected` event that keeps why and what (never an exception that stops a worker).

`handle_inbound` certifies tasks and passes every other inbound event through (pure: it records
nothing). `Pipeline` is the stateful whole used by the embedded runner and the HTTP API: tasks
go to the checker, permit, approval, authorization, override, execution and metric events go
to the permit service (streams.permit_service), metric samples, alerts and executors'
rollback events to the rollback service (streams.rollback_service), and everything is recorded
through the one `record` callable before the state moves on.

One owner per breach (docs/rollback.md §6): a sample whose key is a permit is judged by the
permit service's running checks only (they revoke and trigger); the rollback service judges the
other keys (deployments), owns alerts, and commands and tracks every rollback.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from events import (
    EVENT_TYPES,
    INBOUND_TYPES,
    Envelope,
    InputError,
    decode_json,
    parse_event,
    utc_now,
)
from events.payloads import InputRejected, TaskSubmitted
from rules.checker import Decision, decide
from rules.permits import Refusal
from rules.policy import Policy
from rules.task_facts import derive_task_id
from streams.permit_service import HANDLED_TYPES, PermitService, Result
from streams.rollback_service import RollbackService, judges_sample, permit_hand_over

PRODUCER = "certifier"
TASK_MEMORY = 100_000  # tasks whose decision GET /v1/decisions can show (older: DuckDB)
EXCERPT_BYTES = 300
# Inbound here: the events module's inbound types, and the rollback stages executors and humans
# report (`triggered` is ours: derived from samples and alerts, never accepted as input).
PIPELINE_INBOUND = INBOUND_TYPES | {"rollback.event"}
ROLLBACK_TYPES = frozenset({"metric.sample", "alert.received", "rollback.event",
                            "rollback.stage_reported"})


@dataclass(frozen=True)
class Outcome:
    """What one inbound record became: events to record, and the decision if any."""

    events: list[Envelope]
    decision: Decision | None = None
    rejected: InputRejected | None = None
    refusal: Refusal | None = None  # a permit-service refusal (recorded, with a stable code)
    result: Result | None = None  # what the permit service did, if it handled the record


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
        kind = document["type"]
        if isinstance(kind, str) and kind in EVENT_TYPES and kind not in PIPELINE_INBOUND:
            # say what is wrong (a derived type), not what its payload lacks
            raise InputError("input.not_inbound",
                             f"type: {kind!r} is derived by us, not accepted as input")
        envelope, _ = parse_event(document)
        if envelope.type == "rollback.event" and envelope.payload.get("stage") == "triggered":
            raise InputError("input.not_inbound", "payload.stage: 'triggered' is decided by the "
                             "rollback service from samples and alerts, not accepted as input")
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
        # payload_json() equals decided.model_dump(mode="json") (tests/test_checker_golden.py),
        # at a third of its cost: the model is built only where someone reads it.
        causation_id=submitted.event_id, payload=decision.payload_json())


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
    return certify(event, raw, source, policy, now)


def certify(event: Envelope, raw: bytes, source: str, policy: Policy, now: datetime) -> Outcome:
    try:
        decision = decide(event.payload["task"], policy, task_id=event.payload["task_id"])
    except InputError as error:
        rejected = rejection(raw, source, error, now, subject=event.subject)
        return Outcome([rejected], rejected=InputRejected.model_validate(rejected.payload))
    return Outcome([event, decision_event(event, decision, now)], decision=decision)


class Pipeline:
    """Everything inbound, in one process: checker + permit service over one `record`.

    `record(envelope)` appends to the ledger (False = the ledger already had it); the state of
    both parts is a fold over what was recorded, so `load(ledger events)` restores it."""

    def __init__(self, policy: Policy, record: Callable[[Envelope], Any],
                 now_fn: Callable[[], datetime] = utc_now, producer: str = "master") -> None:
        self.policy = policy
        self._record = record
        self.now_fn = now_fn
        self.producer = producer
        self.permits = PermitService(policy, self._from_permits, now_fn)
        self.rollbacks = RollbackService(policy, self._from_rollbacks)
        self.rollbacks.hand_over = permit_hand_over(self.permits)  # permits in execution
        self._fresh_sample: str | None = None  # the sample the permit service just recorded
        # task id -> (task, submitted event id, decision event id), the most recent TASK_MEMORY
        self.tasks: OrderedDict[str, tuple[dict[str, Any], str, str]] = OrderedDict()
        self.duplicates = 0  # records the ledger already had (replays)
        # Kafka mode: called with (request id, outcome) when a record an HTTP request awaits
        # has been handled (streams.agents.handle_record; streams/worker_web.py sets it)
        self.on_request: Callable[[str, Outcome], None] | None = None

    # --- state -------------------------------------------------------------------------------

    def load(self, events: Iterable[Envelope | Mapping[str, Any]]) -> int:
        count = 0
        for event in events:
            self.observe(event if isinstance(event, Envelope) else Envelope.model_validate(event))
            count += 1
        return count

    def observe(self, event: Envelope) -> None:
        """Fold one recorded event into every part (the load path, and `record`)."""
        judged = self.rollback_judges(event)  # before the permit service folds it
        self._observe(event)
        if judged:
            self.rollbacks.observe(event)

    def rollback_judges(self, event: Envelope) -> bool:
        """Does the rollback service fold this event? Every event but a metric sample keyed by
        a permit that its running checks watch (one owner per breach, docs/rollback.md §6)."""
        if event.type != "metric.sample":
            return True
        return judges_sample(self.rollbacks, self.permits, event.payload)

    def _observe(self, event: Envelope) -> None:
        if event.type == "task.submitted":
            task_id = str(event.payload.get("task_id"))
            self.tasks[task_id] = (event.payload.get("task", {}), event.event_id, "")
            self.tasks.move_to_end(task_id)
            if len(self.tasks) > TASK_MEMORY:
                self.tasks.popitem(last=False)
        elif event.type == "certification.decided":
            task_id = str(event.payload.get("task_id"))
            if task_id in self.tasks:
                task, submitted, _ = self.tasks[task_id]
                self.tasks[task_id] = (task, submitted, event.event_id)
        self.permits.observe(event)

    def _from_permits(self, event: Envelope) -> bool:
        """The permit service records: the rollback service sees it too (permits give it the
        level, plan and thresholds; a running-check breach hands a `triggered` over)."""
        fresh = self._counted(event)
        if fresh:
            if event.type == "metric.sample":
                self._fresh_sample = event.event_id  # judged live by handle_event
            elif self.rollback_judges(event):
                self.rollbacks.observe(event)
        return fresh

    def _from_rollbacks(self, event: Envelope) -> bool:
        """The rollback service records (its own state has it already)."""
        fresh = self._counted(event)
        if fresh:
            self._observe(event)
        return fresh

    def _counted(self, event: Envelope) -> bool:
        fresh = self._record(event)
        if fresh is False:
            self.duplicates += 1
            return False
        return True

    def record(self, event: Envelope) -> bool:
        """Record one event and fold it in (unless the ledger already had it)."""
        fresh = self._counted(event)
        if fresh:
            self.observe(event)
        return fresh

    # --- inbound -----------------------------------------------------------------------------

    def handle_raw(self, raw: bytes, source: str, now: datetime | None = None) -> Outcome:
        """One inbound record (bytes) -> recorded events. Never raises on bad input."""
        now = now if now is not None else self.now_fn()
        try:
            event = as_event(decode_json(raw), raw, now, self.producer)
        except InputError as error:
            return self.reject(raw, source, error, now)
        return self.handle_event(event, now, raw=raw, source=source)

    def handle(self, envelope: Envelope, now: datetime | None = None) -> list[Envelope]:
        """The agents' entry point: one inbound envelope -> the events it caused (recorded)."""
        return self.handle_event(envelope, now).events

    def handle_event(self, event: Envelope, now: datetime | None = None, *,
                     raw: bytes | None = None, source: str = "event") -> Outcome:
        now = now if now is not None else self.now_fn()
        raw = raw if raw is not None else json.dumps(event.to_record()).encode()
        if event.type == "task.submitted":
            outcome = certify(event, raw, source, self.policy, now)
            for produced in outcome.events:
                self.record(produced)
            return outcome
        if event.type == "metric.sample" and \
                str(event.payload.get("key")) not in self.permits.permits:
            try:  # not a permit's: the rollback service's, recorded when it matters (§6)
                return Outcome(self.rollbacks.sample(event, now))
            except InputError as error:
                return self.reject(raw, source, error, now, subject=event.subject)
        if event.type in HANDLED_TYPES:
            judged = self.rollback_judges(event)
            self._fresh_sample = None
            try:
                result = self.permits.submit(event, now)
            except InputError as error:
                return self.reject(raw, source, error, now, subject=event.subject)
            events = list(result.events)
            if judged and event.type == "metric.sample" and \
                    self._fresh_sample == event.event_id:
                events += self.rollbacks.handle(event, now)
            events += self.rollbacks.follow(now)  # a running-check breach: command it
            return Outcome(events, refusal=result.refusal, result=result)
        if event.type in ROLLBACK_TYPES:  # alerts, executors' and humans' rollback stages
            refused = self.rollbacks.refusal(event)  # a stage the rollback's state refuses
            if refused is not None:
                return self.reject(raw, source, refused, now, subject=event.subject)
            fresh = self._counted(event)
            if fresh:
                self._observe(event)
            if fresh or event.type == "rollback.stage_reported":  # (idempotent: see refusal)
                return Outcome([event, *self.rollbacks.handle(event, now)])
            return Outcome([event])
        if event.type not in PIPELINE_INBOUND:
            return self.reject(raw, source, InputError(
                "input.not_inbound", f"type: {event.type!r} is derived by us, not accepted as "
                "input"), now)
        self.record(event)
        return Outcome([event])

    def reject(self, raw: bytes, source: str, error: InputError, now: datetime,
               subject: str | None = None) -> Outcome:
        rejected = rejection(raw, source, error, now, subject)
        self.record(rejected)
        return Outcome([rejected], rejected=InputRejected.model_validate(rejected.payload))

    def authorize(self, request: Any, now: datetime | None = None) -> Result:
        result = self.permits.authorize(request, now)
        followed = self.rollbacks.follow(now if now is not None else self.now_fn())
        if followed:
            result = replace(result, events=[*result.events, *followed])
        return result

    def tick(self, now: datetime | None = None) -> list[Envelope]:
        now = now if now is not None else self.now_fn()
        # The rollback service's turn first: a rollback the permit service's clock triggers now
        # (deadline overrun) is commanded at the next turn (tick or inbound event); its SLA
        # runs from `triggered` either way.
        return self.rollbacks.tick(now) + self.permits.tick(now)

    # --- queries -------------------------------------------------------------------------------

    def decision_report(self, task_id: str) -> dict[str, Any] | None:
        """The `certify check` answer for a recorded task (re-derived: decide is pure)."""
        found = self.tasks.get(task_id)
        if found is None or not found[2]:
            return None
        task, submitted, decided = found
        report = decide(task, self.policy, task_id=task_id).to_report()
        recorded = self.permits.decisions.get(decided)
        report.update({"task_event_id": submitted, "decision_event_id": decided})
        if recorded is not None and recorded.level != report["certification_decision"][
                "certification_level_required"]:
            report["note"] = ("decided under another policy: the recorded level is "
                              f"{recorded.level}")
        return report
