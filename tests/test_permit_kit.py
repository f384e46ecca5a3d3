"""Shared helpers for the permit tests: approvers with real Ed25519 keys, a ledger-like recorder,
tasks that certify at each level, and permit requests that pass. (No tests in this module.)"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import Envelope, format_time
from events.payloads import ApproverRegistered, OverrideRequested, PermitRequested
from events.signing import public_key_of, request_sha256, sign_approval
from rules.policy import default_policy
from streams.handlers import Pipeline

POLICY = default_policy()
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
def _plan_for_every_level() -> dict[str, Any]:
    """The seed's Kubernetes plan, completed to what Level 4 asks (C-14..C-16): valid at 2-4."""
    from rules.rollback_plans import load_template

    plan = load_template("kubernetes_deployment")
    plan["metadata"]["certification_level"] = 4
    plan["rollback_procedure"]["sla_minutes"] = 5
    plan["testing_evidence"].update(production_like_test_date="2025-11-29T10:00:00Z",
                                    rehearsal_date="2025-11-30T10:00:00Z")
    plan["testing_evidence"]["test_results"]["multi_region_coordination_test"] = "passed"
    plan["multi_region_coordination"] = {"regions": ["eu-west-1", "us-east-1"], "parallel": True}
    plan["communication_plan"] = {"channels": ["slack", "email"], "stakeholders": ["cto"]}
    plan["business_continuity"] = {"fallback": "read-only mode"}
    plan["partial_rollback_scenarios"] = [{
        "scope": "single_service", "description": "one service misbehaves",
        "phases": ["rollback_deployment", "verify_health"],
        "excluded_components": ["database"], "triggers": ["error_rate_threshold"]}]
    plan["escalation_procedures"] = load_template("database_migration")["escalation_procedures"]
    return plan


PLAN = _plan_for_every_level()  # a seed-schema rollback plan that validates at levels 2-4

TASKS = {  # level -> a task the checker certifies at that level
    1: {"task": "Query dashboards", "environment": "production", "operations": ["query"],
        "reversibility": "fully_reversible", "customer_impact": "none"},
    2: {"task": "Deploy api v2", "environment": "production", "operations": ["deploy"],
        "services": ["api"]},
    3: {"task": "Run database migration on orders", "environment": "production",
        "operations": ["database_migration"], "services": ["orders"]},
    4: {"task": "Multi-region deploy of checkout", "environment": "production",
        "operations": ["deploy"], "services": ["checkout"], "regions": ["eu-west-1", "us-east-1"]},
}


@dataclass
class Recorder:
    """Ledger stand-in for pure service tests: append-only, refuses a second copy of an id."""

    events: list[Envelope] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def __call__(self, event: Envelope) -> bool:
        if event.event_id in self.ids:
            return False
        self.ids.add(event.event_id)
        self.events.append(event)
        return True

    def of_type(self, kind: str) -> list[Envelope]:
        return [e for e in self.events if e.type == kind]


class Approver:
    def __init__(self, approver_id: str, *roles: str) -> None:
        self.id = approver_id
        self.roles = list(roles)
        self.key = Ed25519PrivateKey.generate()
        self.public_key = public_key_of(self.key)

    def registration(self, valid_from: datetime = T0 - timedelta(days=30),
                     valid_until: datetime | None = None) -> Envelope:
        payload = ApproverRegistered(approver_id=self.id, roles=self.roles,
                                     public_key=self.public_key, valid_from=valid_from,
                                     valid_until=valid_until)
        return Envelope(type="approver.registered", occurred_at=valid_from, producer="operator",
                        subject=self.id, payload=payload.model_dump(mode="json"))

    def sign(self, permit: dict[str, Any], decision: str = "approve", at: datetime = T0,
             role: str | None = None, sha: str | None = None) -> dict[str, Any]:
        body = sign_approval(self.key, permit_id=permit["permit_id"],
                             request_sha256=sha or permit["request_sha256"], decision=decision,
                             decided_at=at, approver_id=self.id,
                             approver_role=role or self.roles[0])
        return {**body, "comments": ""}

    def override(self, worker_id: str, at: datetime = T0, *, override_id: str | None = None,
                 ticket: str = "INC-1", role: str | None = None, operations=("deploy",),
                 trigger: str = "production_outage") -> dict[str, Any]:
        body = {"override_id": override_id or f"ovr-{uuid.uuid4().hex[:8]}",
                "incident_ticket": ticket, "trigger": trigger, "commander_id": self.id,
                "commander_role": role or self.roles[0], "worker_id": worker_id,
                "scope": {"operations": list(operations), "services": ["api"],
                          "environment": "production"},
                "reason": "checkout is down", "requested_at": format_time(at),
                "request_sha256": "0" * 64, "key_id": "", "signature": ""}
        req = OverrideRequested.model_validate(body)
        body["request_sha256"] = request_sha256(req)
        signed = sign_approval(self.key, permit_id=body["override_id"],
                               request_sha256=body["request_sha256"], decision="override",
                               decided_at=at, approver_id=self.id,
                               approver_role=body["commander_role"])
        body["key_id"], body["signature"] = signed["key_id"], signed["signature"]
        return body


def envelope(kind: str, subject: str, payload: dict[str, Any], at: datetime = T0,
             producer: str = "test") -> Envelope:
    return Envelope(type=kind, occurred_at=at, producer=producer, subject=subject,
                    payload=payload)


def new_pipeline(recorder: Recorder | None = None) -> tuple[Pipeline, Recorder]:
    recorder = recorder or Recorder()
    return Pipeline(POLICY, recorder, now_fn=lambda: T0), recorder


def certify(pipe: Pipeline, level: int, at: datetime = T0, expect: int | None = None,
            **extra: Any) -> str:
    """Submit the level's task (with `extra` fields); returns the decision event id."""
    task = {**TASKS[level], "task_id": f"task-L{level}-{uuid.uuid4().hex[:6]}", **extra}
    outcome = pipe.handle_raw(json.dumps(task).encode(), "test", at)
    assert outcome.decision is not None, outcome
    assert outcome.decision.decided.level == (expect or level), outcome.decision.explanation
    return outcome.events[1].event_id


def permit_request(pipe: Pipeline, decision_id: str, /, *, at: datetime = T0,
                   hours: float = 2, **overrides: Any) -> PermitRequested:
    decision = pipe.permits.decisions[decision_id]
    level = decision.level
    known = {t.id: t.level for t in POLICY.governance.permit_types}
    if overrides.get("permit_type") in known and "level" not in overrides:
        overrides["level"] = max(known[overrides["permit_type"]], level)
    data: dict[str, Any] = {
        "permit_id": f"prm-{uuid.uuid4().hex[:10]}",
        "permit_type": POLICY.governance.gate(level).permit_type,
        "task_id": decision.task_id, "decision_event_id": decision_id, "level": level,
        "requested_by": "master-1", "worker_id": "worker-7",
        "scope": {"operations": ["deploy", "health_check", "query", "database_migration"],
                  "services": ["api", "orders", "checkout"], "environment": "production",
                  "data_classes": [], "regions": [],
                  "not_before": format_time(at),
                  "not_after": format_time(at + timedelta(hours=hours))},
        "justification": "release 2.1", "rollback_plan": PLAN if level >= 2 else None,
        "request_sha256": "0" * 64,
    }
    for key, value in overrides.items():
        if key in data["scope"]:
            data["scope"][key] = value
        else:
            data[key] = value
    req = PermitRequested.model_validate(data)
    if "request_sha256" not in overrides:
        req = req.model_copy(update={"request_sha256": request_sha256(req)})
    return req


def request_envelope(req: PermitRequested, at: datetime = T0) -> Envelope:
    return envelope("permit.requested", req.permit_id, req.model_dump(mode="json"), at,
                    producer="master-1")


def approval_envelope(body: dict[str, Any], at: datetime = T0) -> Envelope:
    return envelope("approval.signed", body["permit_id"], body, at, producer=body["approver_id"])


APPROVERS = {
    "team_lead": Approver("tara", "team_lead"),
    "tech_lead": Approver("tom", "tech_lead"),
    "senior_engineer": Approver("sid", "senior_engineer"),
    "engineering_director": Approver("dana", "engineering_director"),
    "security_lead": Approver("sam", "security_lead"),
    "architecture_lead": Approver("arch", "architecture_lead"),
    "vp_engineering": Approver("vera", "vp_engineering"),
    "cto": Approver("cleo", "cto"),
    "ciso": Approver("cyrus", "ciso"),
    "coo": Approver("otto", "coo"),
    "change_advisory_board": Approver("cab", "change_advisory_board"),
    "data_lead": Approver("dora", "data_lead"),
    "incident_commander": Approver("ivy", "incident_commander"),
    "on_call_lead": Approver("olga", "on_call_lead"),
    "compliance_officer": Approver("coco", "compliance_officer"),
}
QUORUM_ROLES = {1: ["team_lead"], 2: ["tech_lead"], 3: ["engineering_director", "security_lead"],
                4: ["vp_engineering", "cto", "ciso", "change_advisory_board"]}


def register_all(pipe: Pipeline) -> None:
    for approver in APPROVERS.values():
        pipe.record(approver.registration())


def issued_permit(pipe: Pipeline, level: int = 2, at: datetime = T0, **overrides: Any
                  ) -> dict[str, Any]:
    """A permit through request and quorum to `issued`; returns its view."""
    req = permit_request(pipe, certify(pipe, level, at), at=at, **overrides)
    result = pipe.handle_event(request_envelope(req, at), at)
    assert result.refusal is None, result.refusal
    view = pipe.permits.view(req.permit_id)
    assert view is not None
    for role in QUORUM_ROLES[level]:
        out = pipe.handle_event(approval_envelope(APPROVERS[role].sign(view, at=at), at), at)
        assert out.refusal is None, out.refusal
    view = pipe.permits.view(req.permit_id)
    assert view is not None and view["state"] == "issued", view
    return view


class Clock:
    """The clock handed to the runner: moves only when a test says so."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def embedded_runner(tmp_path, clock: Clock):  # type: ignore[no-untyped-def]
    """A real EmbeddedRunner: ledger on disk (3 partitions), DuckDB, keys under tmp_path."""
    from streams.config import load_settings
    from streams.embedded import EmbeddedRunner

    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=3)
    return EmbeddedRunner(settings, POLICY, clock=clock)


def ledger_records(tmp_path, partitions: int = 3) -> list[dict[str, Any]]:
    """Every event in the ledger on disk (what an auditor sees)."""
    from ledger import iter_entries

    directory = tmp_path / "data" / "ledger"
    return [entry.event for p in range(partitions) if (directory / f"p{p}").is_dir()
            for entry in iter_entries(directory, p) if "payload" in entry.event]


class LiveServer:
    """The real aiohttp app (streams.web.create_app) on a free loopback port, served from a
    background thread so that synchronous clients (urllib, the CLI) can call it."""

    def __init__(self, pipeline: Pipeline) -> None:
        import asyncio
        import threading

        from aiohttp import web

        from streams.web import create_app

        self.loop = asyncio.new_event_loop()
        self.app_runner = web.AppRunner(create_app(pipeline))
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.app_runner.setup())
            site = web.TCPSite(self.app_runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            server = site._server  # noqa: SLF001 - the only way to learn the chosen port
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(10), "server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """One raw HTTP request: bytes are sent as they are, anything else as JSON."""
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            document = json.loads(raw)
        except ValueError:
            document = raw.decode("utf-8", "replace")
        return response.status, dict(response.getheaders()), document

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.app_runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
