"""Kafka mode, the real broker: the HTTP API mounted in the Faust worker's web server
(streams/worker_web.py), called over real HTTP on the worker's port.

The worker is `certify worker`'s app and runtime (build_app + install_agents + Runtime +
worker_web.mount, as streams/cli_kafka.py wires them), started in this event loop with the
permit kit's clock. A master submits a task and reads its decision, requests a permit, an
approver signs it with the masters' client (it fetches the permit, checks its hash, signs
locally), a worker is authorized; bad bodies and wrong methods come back as JSON errors; Faust's
own endpoints still answer. Every write went through an inbound topic (the worker is the one
ledger writer): each event is in the ledger exactly once, refused bodies included.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from events import format_time
from streams.client import Client
from tests.test_kafka_pipeline_helpers import PARTITIONS, delete_topics, ledger_events, unique
from tests.test_permit_kit import APPROVERS, PLAN, T0, TASKS, Clock, register_all

pytestmark = pytest.mark.kafka
TOM = APPROVERS["tech_lead"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def worker_web(bootstrap: str, tmp_path: Any, clock: Clock, *,
                     authorize_local: bool = False) -> AsyncIterator[Any]:
    from rules.policy import default_policy
    from streams.agents import Runtime, install_agents
    from streams.app import build_app
    from streams.config import load_settings
    from streams.topics import ensure_topics
    from streams.worker_config import load_kafka_settings
    from streams.worker_web import mount

    prefix = unique("web")
    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=PARTITIONS, broker=f"kafka://{bootstrap}")
    config = load_kafka_settings(settings, topic_prefix=prefix, app_id=prefix, web=True,
                                 web_host="127.0.0.1", web_port=free_port(),
                                 session_timeout_s=6, projector=False)
    await ensure_topics(config.bootstrap, config.topics, PARTITIONS)
    fatal: list[BaseException] = []
    runtime = Runtime(config, default_policy(), clock=clock, on_fatal=fatal.append)
    register_all(runtime.handlers)  # approvers, on the ledger before the worker starts
    app = build_app(config)
    install_agents(app, runtime)
    mount(app, runtime, wait_s=30, authorize_local=authorize_local)
    await app.start()
    runtime.url = f"http://127.0.0.1:{config.web_port}"  # type: ignore[attr-defined]
    try:
        async with aiohttp.ClientSession() as session:
            runtime.session = session  # type: ignore[attr-defined]
            await _wait_until_assigned(runtime)
            yield runtime
    finally:
        try:
            await asyncio.wait_for(app.stop(), 60)
        finally:
            await runtime.aclose()
            await delete_topics(bootstrap, prefix)
    assert not fatal, f"fatal errors in the worker: {fatal}"


async def _wait_until_assigned(runtime: Any, timeout: float = 60.0) -> None:
    """Faust's web server answers from the start; the agents once partitions are assigned."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            status, _, body = await call(runtime, "GET", "/healthz")
            if status == 200 and body["status"] == "ok":
                break
        except aiohttp.ClientError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the worker's web server did not answer")
        await asyncio.sleep(0.1)


async def call(runtime: Any, method: str, path: str, body: Any = None
               ) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) or body is None else None
    async with runtime.session.request(method, runtime.url + path, data=data,
                                       json=None if data is not None or body is None else body,
                                       headers={"Content-Type": "application/json"}) as response:
        raw = await response.read()
        try:
            document = await response.json(content_type=None)
        except ValueError:
            document = raw.decode("utf-8", "replace")
        return response.status, dict(response.headers), document


def permit_body(task_id: str) -> dict[str, Any]:
    return {"task_id": task_id, "requested_by": "master-1", "worker_id": "worker-7",
            "scope": {"operations": ["deploy"], "services": ["api"],
                      "environment": "production"},
            "justification": "release 2.1", "rollback_plan": PLAN}


async def test_the_api_on_the_worker_port_writes_through_the_topics(kafka_bootstrap, tmp_path):
    clock = Clock()
    async with worker_web(kafka_bootstrap, tmp_path, clock) as runtime:
        service = runtime.web_service
        # a master: a task and its decision (through <p>.tasks and the certifier)
        status, _, decision = await call(runtime, "POST", "/v1/tasks",
                                         {**TASKS[2], "task_id": "kweb-task-1"})
        assert status == 200, decision
        assert decision["certification_decision"]["certification_level_required"] == 2
        assert decision["task_event_id"] and decision["decision_event_id"]
        status, _, again = await call(runtime, "GET", "/v1/decisions/kweb-task-1")
        assert status == 200 and again["decision_event_id"] == decision["decision_event_id"]

        # a permit: requested, pending, approved by a signed approval, issued
        status, _, created = await call(runtime, "POST", "/v1/permits",
                                        permit_body("kweb-task-1"))
        assert status == 201, created
        permit = created["permit"]
        assert permit["state"] == "in_review" and permit["level"] == 2
        status, _, pending = await call(runtime, "GET", "/v1/permits?state=pending")
        assert permit["permit_id"] in [p["permit_id"] for p in pending["permits"]]
        client = Client(runtime.url)  # synchronous (urllib): off the loop the worker runs on
        issued = await asyncio.to_thread(client.approve, permit["permit_id"], TOM.key,
                                         approver_id="tom", role="tech_lead", decided_at=T0)
        assert issued["state"] == "issued"
        status, _, shown = await call(runtime, "GET", f"/v1/permits/{permit['permit_id']}")
        assert status == 200 and shown["permit"]["state"] == "issued"

        # a worker: authorized (an authorization.requested on <p>.executions)
        ask = {"worker": {"id": "worker-7", "certification_level": 2},
               "permit_id": permit["permit_id"],
               "operation": {"type": "deploy", "environment": "production", "service": "api"}}
        status, _, verdict = await call(runtime, "POST", "/v1/authorize", ask)
        assert status == 200, verdict
        assert verdict["allowed"] is True and verdict["event_ids"]
        status, _, shown = await call(runtime, "GET", f"/v1/permits/{permit['permit_id']}")
        assert shown["permit"]["state"] == "executing"
        status, _, odd = await call(runtime, "POST", "/v1/authorize",  # the worker rejects it
                                    {**ask, "worker": {"id": "worker-7"}})
        assert status == 400 and odd["error"]["code"].startswith("input."), odd

        # errors: JSON with a stable code, never a stack trace
        status, _, bad = await call(runtime, "POST", "/v1/tasks", b'{"task_id": "x", oops')
        assert status == 400 and bad["error"]["code"].startswith("input."), bad
        status, _, bad_approval = await call(
            runtime, "POST", f"/v1/permits/{permit['permit_id']}/approvals",
            {"decision": "approve", "approver_id": 7})
        assert status == 400 and bad_approval["error"]["code"] == "input.schema", bad_approval
        status, headers, wrong = await call(runtime, "GET", "/v1/tasks")
        assert status == 405 and wrong["error"]["code"] == "http.method_not_allowed"
        assert "POST" in headers.get("Allow", "")
        status, _, wrong = await call(runtime, "DELETE", f"/v1/permits/{permit['permit_id']}")
        assert status == 405 and wrong["error"]["code"] == "http.method_not_allowed"
        status, _, missing = await call(runtime, "GET", "/v1/nothing-here")
        assert status == 404 and missing["error"]["code"] == "http.not_found"
        status, _, unknown = await call(runtime, "POST", "/v1/permits",
                                        permit_body("kweb-never-submitted"))
        assert status == 422 and unknown["error"]["code"] == "permit.unknown_decision"
        status, _, report = await call(runtime, "POST", "/reports", {"framework": "soc2"})
        assert status == 501 and report["error"]["code"] == "reports.not_here"

        # the dashboard's page is served; its DuckDB data needs the worker's snapshot
        async with runtime.session.get(runtime.url + "/dashboard/") as page:
            assert page.status == 200 and page.content_type == "text/html"
        status, _, no_data = await call(runtime, "GET", "/metrics")
        assert status == 503 and no_data["error"]["code"] == "dashboard.no_data", no_data

        # Faust's own endpoints are still Faust's
        status, _, index = await call(runtime, "GET", "/")
        assert status == 200 and not (isinstance(index, dict) and "error" in index)
        status, _, routes = await call(runtime, "GET", "/router/")
        assert status == 200 and isinstance(routes, dict)
        assert service.produced >= 7 and service.timeouts == 0 and not service.waiting
        ledger_dir = runtime.config.settings.ledger_dir

    events = [e for part in ledger_events(ledger_dir).values() for e in part]
    ids = Counter(e["event_id"] for e in events)
    assert not [i for i, n in ids.items() if n > 1], "an event is in the ledger twice"
    kinds = Counter(e["type"] for e in events)
    assert kinds["task.submitted"] == 1 and kinds["certification.decided"] == 1
    assert kinds["permit.requested"] == 1 and kinds["approval.signed"] == 1
    assert kinds["operation.authorized"] == 1
    assert kinds["permit.request_refused"] == 1  # the request naming no decision
    rejected = [e for e in events if e["type"] == "input.rejected"]
    assert sorted(e["payload"]["source"] for e in rejected) == sorted(  # each once
        ["http:/v1/tasks", f"http:/v1/permits/{permit['permit_id']}/approvals",
         "http:/v1/authorize"])
    assert decision["task_event_id"] in ids and decision["decision_event_id"] in ids
    assert set(verdict["event_ids"]) <= set(ids)


async def test_no_answer_in_time_is_a_504_and_the_record_is_still_handled_once(
        kafka_bootstrap, tmp_path):
    async with worker_web(kafka_bootstrap, tmp_path, Clock()) as runtime:
        service = runtime.web_service
        service.wait_s = 0.0005  # the worker cannot answer this fast
        status, _, late = await call(runtime, "POST", "/v1/tasks",
                                     {**TASKS[1], "task_id": "kweb-late"})
        assert status == 504 and late["error"]["code"] == "kafka.timeout", late
        service.wait_s = 30
        for _ in range(300):  # ... and it is handled: the decision shows up
            status, _, decision = await call(runtime, "GET", "/v1/decisions/kweb-late")
            if status == 200:
                break
            await asyncio.sleep(0.05)
        assert status == 200, decision
        status, _, again = await call(runtime, "POST", "/v1/tasks",
                                      {**TASKS[1], "task_id": "kweb-late"})
        assert status == 200 and again["decision_event_id"] == decision["decision_event_id"]
        ledger_dir = runtime.config.settings.ledger_dir
    events = [e for part in ledger_events(ledger_dir).values() for e in part]
    assert Counter(e["type"] for e in events)["task.submitted"] == 1
    assert len({e["event_id"] for e in events}) == len(events)


def test_certify_worker_serves_the_api_on_its_web_port(kafka_bootstrap, tmp_path):
    """`certify worker` itself (a subprocess): the API on --web-port, next to Faust's `/`."""
    import http.client as httpc
    import json
    import time

    from tests.test_kafka_pipeline_helpers import start_worker

    prefix, port = unique("webcli"), free_port()
    data_dir = tmp_path / "data"
    proc = start_worker(kafka_bootstrap, data_dir, tmp_path / "keys", prefix,
                        tmp_path / "worker.log", "--web-port", str(port), "--no-projector")

    def ask(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = httpc.HTTPConnection("127.0.0.1", port, timeout=40)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if ask("GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.proc.poll() is None, proc.output()[-4000:]
            assert time.monotonic() < deadline, proc.output()[-4000:]
            time.sleep(0.2)
        status, decision = ask("POST", "/v1/tasks", {**TASKS[2], "task_id": "kweb-cli-1"})
        assert status == 200, (decision, proc.output()[-4000:])
        status, again = ask("GET", "/v1/decisions/kweb-cli-1")
        assert status == 200 and again["decision_event_id"] == decision["decision_event_id"]
        status, bad = ask("POST", "/v1/permits", b"[1, 2")
        assert status == 400 and bad["error"]["code"].startswith("input.")
        status, wrong = ask("PUT", "/healthz")
        assert status == 405 and wrong["error"]["code"] == "http.method_not_allowed"
        assert ask("GET", "/")[0] == 200  # Faust's index
    finally:
        code = proc.stop()
        asyncio.run(delete_topics(kafka_bootstrap, prefix))
    assert code == 0, proc.output()[-4000:]
    events = [e for part in ledger_events(data_dir / "ledger").values() for e in part]
    kinds = Counter(e["type"] for e in events)
    assert kinds["task.submitted"] == 1 and kinds["certification.decided"] == 1
    assert kinds["input.rejected"] == 1
    assert len({e["event_id"] for e in events}) == len(events)


async def test_authorize_decided_on_the_live_state_when_asked(kafka_bootstrap, tmp_path):
    """CERTIFY_HTTP_AUTHORIZE=local: the verdict from the worker's live state, recorded by the
    worker's one ledger writer and published before the answer."""
    async with worker_web(kafka_bootstrap, tmp_path, Clock(), authorize_local=True) as runtime:
        await call(runtime, "POST", "/v1/tasks", {**TASKS[2], "task_id": "kweb-local"})
        _, _, created = await call(runtime, "POST", "/v1/permits", permit_body("kweb-local"))
        permit_id = created["permit"]["permit_id"]
        await asyncio.to_thread(Client(runtime.url).approve, permit_id, TOM.key,
                                approver_id="tom", role="tech_lead", decided_at=T0)
        ask = {"worker": {"id": "worker-7", "certification_level": 2}, "permit_id": permit_id,
               "operation": {"type": "deploy", "environment": "production", "service": "api"}}
        produced = runtime.web_service.produced
        status, _, verdict = await call(runtime, "POST", "/v1/authorize", ask)
        assert status == 200 and verdict["allowed"] is True, verdict
        assert runtime.web_service.produced == produced  # nothing went through a topic
        status, _, denied = await call(runtime, "POST", "/v1/authorize",
                                       {**ask, "operation": {**ask["operation"],
                                                             "service": "billing"}})
        assert status == 200 and denied["allowed"] is False
        status, _, bad = await call(runtime, "POST", "/v1/authorize", [1])
        assert status == 400 and bad["error"]["code"] == "input.schema"

        # monitoring through <p>.metrics: the answer embedded mode gives (tests/test_web_metrics)
        def sample(n: int) -> dict[str, Any]:
            return {"key": "kweb-dep-1", "metric": "error_rate", "value": 0.02,
                    "observed_at": format_time(T0 + timedelta(seconds=30 * n))}

        status, _, body = await call(runtime, "POST", "/v1/metrics", sample(0))
        assert status == 202 and body["accepted"] == 1 and body["rollbacks"] == [], body
        status, _, body = await call(runtime, "POST", "/v1/metrics",
                                     [sample(n) for n in range(1, 7)])
        assert status == 202 and body["accepted"] == 6, body
        assert [r["stage"] for r in body["rollbacks"]] == ["triggered", "commanded"]
        rollback_id = body["rollbacks"][0]["rollback_id"]
        status, _, tracked = await call(runtime, "GET", f"/v1/rollbacks/{rollback_id}")
        assert status == 200 and tracked["rollback"]["stage"] == "commanded", tracked
        ledger_dir = runtime.config.settings.ledger_dir
    events = [e for part in ledger_events(ledger_dir).values() for e in part]
    ids = Counter(e["event_id"] for e in events)
    assert set(verdict["event_ids"]) | set(denied["event_ids"]) <= set(ids)
    assert max(ids.values()) == 1
    assert Counter(e["type"] for e in events)["operation.authorized"] == 2
