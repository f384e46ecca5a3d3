"""Kafka mode, the real broker: the forged-approval matrix (tests/approval_forgeries.py, the same
table the embedded test drives) through the worker's agents. The task and each permit request
go on <p>.tasks, each approval on <p>.approvals; every forged or invalid approval comes back
refused with its code on <p>.permits and is in the ledger, nothing of it counts, and a valid
quorum issues its permit.

The worker is the app and runtime of `certify worker` (streams.app.build_app +
streams.agents.install_agents + Runtime), started in this event loop with the clock passed in
(the Runtime's `clock`): the matrix's approvers and signatures are dated around the kit's T0,
and the approval deadline case needs time to pass. Approvers are registered on the ledger
before the worker starts (an operator's action: approver.registered is not an inbound type).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from events import Envelope
from ledger import verify
from tests.approval_forgeries import CODES, MATRIX, PERMIT_HOURS, VALID_QUORUM, registrations
from tests.test_kafka_pipeline_helpers import (
    PARTITIONS,
    delete_topics,
    ledger_events,
    unique,
)
from tests.test_permit_kit import (
    T0,
    TASKS,
    Clock,
    approval_envelope,
    permit_request,
    register_all,
    request_envelope,
)

pytestmark = pytest.mark.kafka
TIMEOUT = 60.0
SPARE = 2  # permits a scenario may copy from (side.new_permit)


class Topic:
    """Every record of one topic from the beginning, collected in the background."""

    def __init__(self, bootstrap: str, name: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self.consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest",
                                         enable_auto_commit=False)
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for record in self.consumer:
            self.events.append(json.loads(record.value))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    async def wait(self, predicate: Any, what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = next((e for e in self.events if predicate(e)), None)
            if found is not None:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.02)


class KafkaSide:
    """The matrix's `side` in Kafka mode: permits are requested through <p>.tasks ahead of time
    (the matrix's steps are synchronous), handed out one by one."""

    def __init__(self) -> None:
        self.spare: list[dict[str, Any]] = []

    def new_permit(self) -> dict[str, Any]:
        return self.spare.pop()


@asynccontextmanager
async def worker(bootstrap: str, tmp_path: Any, clock: Clock, *, register: bool = True
                 ) -> AsyncIterator[Any]:
    """`certify worker`'s app and runtime with the clock passed in (state rebuilt from the
    ledger under tmp_path/data at start, as `certify worker` does)."""
    from aiokafka import AIOKafkaProducer

    from rules.policy import default_policy
    from streams.agents import Runtime, install_agents
    from streams.app import build_app
    from streams.config import load_settings
    from streams.topics import ensure_topics
    from streams.worker_config import load_kafka_settings

    prefix = unique("approvals")
    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=PARTITIONS, broker=f"kafka://{bootstrap}")
    config = load_kafka_settings(settings, topic_prefix=prefix, app_id=prefix, web=False,
                                 session_timeout_s=6, projector=False)
    await ensure_topics(config.bootstrap, config.topics, PARTITIONS)
    fatal: list[BaseException] = []
    runtime = Runtime(config, default_policy(), clock=clock, on_fatal=fatal.append)
    if register:  # on the ledger, before the worker consumes anything
        register_all(runtime.handlers)
        for registration in registrations():
            runtime.handlers.record(registration)
    app = build_app(config)
    install_agents(app, runtime)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    topics = {name: Topic(bootstrap, config.topics[name]) for name in ("permits", "ledger",
                                                                        "decisions")}
    for topic in topics.values():
        await topic.start()
    await app.start()
    runtime.producer, runtime.topics_seen = producer, topics  # type: ignore[attr-defined]
    try:
        yield runtime
    finally:
        try:
            await asyncio.wait_for(app.stop(), 60)
        finally:
            for topic in topics.values():
                await topic.stop()
            await producer.stop()
            await runtime.aclose()
            await delete_topics(bootstrap, prefix)
    assert not fatal, f"fatal errors in the worker: {fatal}"


async def produce(runtime: Any, topic: str, event: Envelope | dict[str, Any], key: str) -> None:
    value = event.to_record() if isinstance(event, Envelope) else event
    await runtime.producer.send_and_wait(runtime.config.topics[topic],
                                         json.dumps(value).encode(), key=key.encode())


async def request_permit(runtime: Any, decision_id: str) -> dict[str, Any]:
    req = permit_request(runtime.handlers, decision_id, hours=PERMIT_HOURS)
    await produce(runtime, "tasks", request_envelope(req), req.permit_id)
    permits = runtime.topics_seen["permits"]
    await permits.wait(lambda e: e["type"] == "permit.review_started"
                       and e["subject"] == req.permit_id, f"{req.permit_id} in review")
    return {"permit_id": req.permit_id, "request_sha256": req.request_sha256}


async def send_approval(runtime: Any, clock: Clock, body: dict[str, Any], at: Any
                        ) -> tuple[str, dict[str, Any]]:
    """One signed approval on <p>.approvals, received at `at`; its outcome: ("accepted", the
    approval.signed ledger entry) or ("refused", the approval.refused on <p>.permits)."""
    clock.now = at
    try:
        event = approval_envelope(body, at)
        await produce(runtime, "approvals", event, body["permit_id"])
        permits, ledger = runtime.topics_seen["permits"], runtime.topics_seen["ledger"]
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            refused = next((e for e in permits.events if e["type"] == "approval.refused"
                            and e["causation_id"] == event.event_id), None)
            if refused is not None:
                return "refused", refused
            signed = next((e["event"] for e in ledger.events
                           if e["event"]["event_id"] == event.event_id), None)
            if signed is not None:
                return "accepted", signed
            await asyncio.sleep(0.02)
        raise AssertionError(f"no outcome for approval {event.event_id} in {TIMEOUT}s")
    finally:
        clock.now = T0


async def test_the_forged_approval_matrix_through_the_broker(kafka_bootstrap, tmp_path):
    clock = Clock()
    refused: dict[str, dict[str, Any]] = {}  # scenario -> its approval.refused on <p>.permits
    problems: list[str] = []
    async with worker(kafka_bootstrap, tmp_path, clock) as runtime:
        task = {**TASKS[3], "task_id": "kafka-approvals-L3"}
        await produce(runtime, "tasks", task, task["task_id"])
        decided = await runtime.topics_seen["decisions"].wait(
            lambda e: e["type"] == "certification.decided"
            and e["payload"]["task_id"] == task["task_id"], "the task's decision")
        assert decided["payload"]["level"] == 3
        decision_id = decided["event_id"]

        # a valid quorum issues the permit
        valid = await request_permit(runtime, decision_id)
        for approver in VALID_QUORUM:
            outcome, _ = await send_approval(runtime, clock, approver.sign(valid), T0)
            assert outcome == "accepted"
        permits = runtime.topics_seen["permits"]
        for kind in ("permit.approved", "permit.issued"):
            await permits.wait(lambda e, k=kind: e["type"] == k
                               and e["subject"] == valid["permit_id"], f"{kind} (valid quorum)")

        side = KafkaSide()
        for _ in range(SPARE):
            side.spare.append(await request_permit(runtime, decision_id))
        matrix_permits = []
        for scenario in MATRIX:
            steps, code = scenario.values
            view = await request_permit(runtime, decision_id)
            matrix_permits.append(view["permit_id"])
            *accepted, (body, at) = steps(side, view)
            for earlier, when in accepted:
                outcome, entry = await send_approval(runtime, clock, earlier, when)
                if outcome != "accepted":
                    problems.append(f"{scenario.id}: an earlier step was {outcome}: {entry}")
            outcome, entry = await send_approval(runtime, clock, body, at)
            if outcome != "refused" or entry["payload"]["code"] != code:
                problems.append(f"{scenario.id}: want refused {code}, got {outcome} "
                                f"{entry.get('payload', entry)}")
            else:
                refused[scenario.id] = entry
        await asyncio.sleep(1.5)  # a timer tick or two: nothing may follow from the refusals
        issued_on_topic = {e["subject"] for e in permits.events
                           if e["type"] in ("permit.approved", "permit.issued")}
        ledger_dir = runtime.config.settings.ledger_dir

    assert not problems, "\n".join(problems)
    assert set(refused) == {p.id for p in MATRIX}
    assert {e["payload"]["code"] for e in refused.values()} == CODES
    assert issued_on_topic == {valid["permit_id"]}  # no forged approval counted anywhere
    # ... and every refusal is in the ledger, which verifies
    assert verify(ledger_dir).ok
    recorded = {e["event_id"]: e for part in ledger_events(ledger_dir).values() for e in part}
    for name, event in refused.items():
        entry = recorded.get(event["event_id"])
        assert entry is not None, f"{name}: refusal not in the ledger"
        assert entry["type"] == "approval.refused"
        assert entry["payload"]["code"] == event["payload"]["code"], name
    approvals = [e for e in recorded.values() if e["type"] == "approval.signed"]
    counted = {e["payload"]["permit_id"] for e in approvals}
    assert valid["permit_id"] in counted
    assert not counted & {"prm-none"}
    reached: dict[str, set[str]] = {}
    for e in recorded.values():
        if e["type"].startswith("permit.") and "to_state" in e["payload"]:
            reached.setdefault(e["payload"]["permit_id"], set()).add(e["payload"]["to_state"])
    assert "issued" in reached[valid["permit_id"]]
    for pid in matrix_permits:  # in review until the deadline case's clock denied them
        assert "in_review" in reached[pid] and not reached[pid] & {"approved", "issued"}, pid


async def test_a_renewal_is_approved_and_the_expiry_warned_once_across_a_restart(
        kafka_bootstrap, tmp_path):
    """A standard permit through the broker: the renewal request on <p>.tasks waits for its
    signed approval on <p>.approvals, then permit.renewed; the worker's timer warns at the
    30-minute mark of the new end on <p>.permits; a worker restarted on the same ledger does
    not warn again for that mark, and warns at the next one."""
    from datetime import timedelta

    from rules.permits import renewal_sha256
    from tests.test_permit_kit import APPROVERS

    tom = APPROVERS["tech_lead"]
    clock = Clock()
    async with worker(kafka_bootstrap, tmp_path, clock) as runtime:
        task = {**TASKS[2], "task_id": "kafka-renewal-L2"}
        await produce(runtime, "tasks", task, task["task_id"])
        decided = await runtime.topics_seen["decisions"].wait(
            lambda e: e["type"] == "certification.decided"
            and e["payload"]["task_id"] == task["task_id"], "the task's decision")
        view = await request_permit(runtime, decided["event_id"])
        pid = view["permit_id"]
        assert (await send_approval(runtime, clock, tom.sign(view), T0))[0] == "accepted"
        permits = runtime.topics_seen["permits"]
        await permits.wait(lambda e: e["type"] == "permit.issued" and e["subject"] == pid,
                           "permit.issued")

        clock.now = at = T0 + timedelta(hours=1)  # the last 2 h of the permit
        body = {"permit_id": pid, "requested_by": "master-1", "extension_hours": 3,
                "justification": "slow rollout"}
        await produce(runtime, "tasks", Envelope(type="permit.renewal_requested",
                                                 occurred_at=at, producer="master-1",
                                                 subject=pid, payload=body), pid)
        await permits.wait(lambda e: e["type"] == "permit.renewal_requested"
                           and e["subject"] == pid, "the renewal request recorded")
        pending = runtime.handlers.permits.view(pid)["pending_renewal"]  # what GET shows
        assert pending is not None and pending["missing"]
        sha = renewal_sha256(pending["document"])
        signed = tom.sign({"permit_id": pid, "request_sha256": sha}, at=at)
        outcome, _ = await send_approval(runtime, clock, signed, at)
        assert outcome == "accepted"
        renewed = await permits.wait(lambda e: e["type"] == "permit.renewed"
                                     and e["subject"] == pid, "permit.renewed")
        assert renewed["payload"]["details"]["approval"] == "quorum"
        new_end = T0 + timedelta(hours=PERMIT_HOURS + 3)
        assert renewed["payload"]["details"]["not_after"].startswith("2030-01-07T14:00:00")

        clock.now = new_end - timedelta(minutes=29)  # the worker's timer ticks every second
        warned = await permits.wait(lambda e: e["type"] == "permit.expiry_warning"
                                    and e["subject"] == pid, "the 30-minute warning")
        assert warned["payload"]["minutes_left"] == 30
        assert warned["payload"]["notify"] == ["master-1", "worker-7", "tom"]
        await asyncio.sleep(2.5)  # more ticks: still one warning
        assert sum(e["type"] == "permit.expiry_warning" for e in permits.events) == 1
        ledger_dir = runtime.config.settings.ledger_dir

    async with worker(kafka_bootstrap, tmp_path, clock, register=False) as restarted:
        assert restarted.handlers.permits.view(pid)["renewals"] == 1  # rebuilt from the ledger
        permits = restarted.topics_seen["permits"]
        await asyncio.sleep(2.5)  # ticks at the same instant: the 30 was sent before
        assert not [e for e in permits.events if e["type"] == "permit.expiry_warning"]
        clock.now = new_end - timedelta(minutes=15)
        warned = await permits.wait(lambda e: e["type"] == "permit.expiry_warning"
                                    and e["subject"] == pid, "the 15-minute warning")
        assert warned["payload"]["minutes_left"] == 15

    assert verify(ledger_dir).ok
    marks = [e["payload"]["minutes_left"] for part in ledger_events(ledger_dir).values()
             for e in part if e["type"] == "permit.expiry_warning"]
    assert marks == [30, 15]
