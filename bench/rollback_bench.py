"""Detection latency of the rollback service in Kafka mode, on the real broker, under a steady
flow of metric samples, against a same-run baseline.

    CERTIFY_KAFKA_BOOTSTRAP=$(cat .cache/kafka/bootstrap) .venv/bin/python -m bench.rollback_bench

The flow: `--rate` samples/s (default 5,000) for `--seconds` (default 30) on <p>.metrics, keyed
by deployment (`--keys`, default 1,000, round robin: 5 samples/s per key at the defaults, event
time = the planned send time). Every key sends healthy error rates, except `--breaches` keys
(default 20): they send health checks, "ok" and then, from a time spread over the run,
"failed" -- `consecutive_health_check_failures` (3 consecutive) fires on the third. Which sample
completes each breach is found by running the pure trigger engine over that key's series.

Measured, per breach: from the produce time of the sample that completes it (wall clock just
before `send`) to the moment its `rollback.event` `triggered` record is read from
<p>.rollbacks (an observer in the load process, same clock). Also: the rate the load process
actually offered, and the rate the worker consumed it at (samples handled / time from the first
to the last send plus the time it took to drain what was left).

Baseline, same run, same broker, same samples at the same rate: a plain aiokafka loop (getmany,
send every value to another topic, flush, commit) -- latency of the completing samples through
it. It is what Kafka and one Python consumer-producer cost on this machine at this rate.

The worker is the real `certify worker` (streams.agents.Runtime + the Faust app, DuckDB
projector on), in this process; the load and the observers run in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.kafka_common import bootstrap_from_env, create_topics, delete_topics
from bench.kafka_common import percentiles as _percentiles

PARTITIONS = 4
DEFAULT_RATE = 5_000
DEFAULT_SECONDS = 30
DEFAULT_KEYS = 1_000
DEFAULT_BREACHES = 50
TARGET_P99_MS = 1_000.0
FAILING_TRIGGER = "consecutive_health_check_failures"


async def create(bootstrap: str, names: list[str]) -> None:
    await create_topics(bootstrap, names, PARTITIONS)


def percentiles(values: list[float]) -> tuple[float, ...]:
    """p50, p90, p99, max (nearest rank)."""
    return _percentiles(values, 0.5, 0.9, 0.99)


# ---- the flow -----------------------------------------------------------------------------------


def plan(rate: int, seconds: int, keys: int, breaches: int) -> dict[str, Any]:
    """The samples as (key, metric, value or state, offset seconds), the breaching keys and the
    index of the sample that completes each breach (found by the pure trigger engine)."""
    from events.payloads import MetricSample
    from rules.policy import default_policy
    from rules.triggers import EngineSettings, evaluate

    count = rate * seconds
    step = max(1, keys // max(1, breaches))
    breaching = {f"deploy-{(i * step + 7) % keys}": i for i in range(breaches)}
    # breach i starts failing at 10 % .. 80 % of the run
    starts = {key: seconds * (0.1 + 0.7 * i / max(1, breaches - 1))
              for key, i in breaching.items()}
    samples: list[tuple[str, str, Any, float]] = []
    for n in range(count):
        key = f"deploy-{n % keys}"
        offset = n / rate
        if key in breaching:
            samples.append((key, "health_check_status",
                            "failed" if offset >= starts[key] else "ok", offset))
        else:
            samples.append((key, "error_rate", 0.001 + (n % 7) * 0.0005, offset))
    policy = default_policy().governance.rollback
    settings = EngineSettings.from_policy(policy)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    states: dict[str, Any] = {}
    completing: dict[int, str] = {}  # sample index -> key
    for n, (key, metric, value, offset) in enumerate(samples):
        if key not in breaching:
            continue
        sample = MetricSample(key=key, metric=metric, value=value,
                              observed_at=t0 + timedelta(seconds=offset))
        updated, decisions = evaluate(states, sample, policy.triggers, sample.observed_at,
                                      settings)
        states.update(updated)
        if any(d.kind == "rollback" and d.trigger == FAILING_TRIGGER for d in decisions):
            completing.setdefault(n, key)
    return {"samples": samples, "completing": completing, "breaching": sorted(breaching)}


def encode(key: str, metric: str, value: Any, at: float, n: int) -> bytes:
    from events import format_time

    observed = format_time(datetime.fromtimestamp(at, UTC))
    body = {"key": key, "metric": metric, "observed_at": observed}
    body["value" if not isinstance(value, str) else "state"] = value
    return json.dumps({"event_id": f"bench-{n}", "type": "metric.sample",
                       "occurred_at": observed, "producer": "bench", "subject": key,
                       "payload": body}).encode()


async def load_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Produce the planned samples at the planned times; observe `observe` for the completing
    samples (baseline: the forwarded sample itself; worker: the `triggered` record)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = spec["bootstrap"]
    flow = plan(spec["rate"], spec["seconds"], spec["keys"], spec["breaches"])
    completing = {int(k): v for k, v in flow["completing"].items()}
    wanted_keys = set(completing.values())
    marker_ids = {f'"bench-{n}"'.encode() for n in completing}
    seen: dict[str, float] = {}

    async def observe() -> None:
        consumer = AIOKafkaConsumer(spec["observe"], bootstrap_servers=bootstrap,
                                    group_id=None, auto_offset_reset="latest",
                                    max_partition_fetch_bytes=4 << 20)
        await consumer.start()
        ready.set()
        try:
            while len(seen) < len(wanted_keys):
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for part in batch.values():
                    for record in part:
                        key = record.key.decode() if record.key else ""
                        if key not in wanted_keys or key in seen:
                            continue
                        value = record.value or b""
                        if spec["mode"] == "worker":
                            if b'"triggered"' in value and FAILING_TRIGGER.encode() in value:
                                seen[key] = now
                        elif any(m in value for m in marker_ids):
                            seen[key] = now
        finally:
            await consumer.stop()

    ready = asyncio.Event()
    observer = asyncio.create_task(observe())
    await ready.wait()
    await asyncio.sleep(1.5)  # the observer has its partitions
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2,
                                max_request_size=4 << 20)
    await producer.start()
    sent: dict[str, float] = {}
    lag = 0.0
    started = time.time()
    try:
        for n, (key, metric, value, offset) in enumerate(flow["samples"]):
            due = started + offset
            delay = due - time.time()
            if delay > 0.005:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            raw = encode(key, metric, value, due, n)
            if n in completing:
                sent[completing[n]] = time.time()
            await producer.send(spec["topic"], raw, key=key.encode())
        await producer.flush()
        produced_in = time.time() - started
    finally:
        await producer.stop()
    try:
        await asyncio.wait_for(observer, spec["timeout"])
    except TimeoutError:
        pass
    return {"sent": sent, "seen": seen, "produced_in": produced_in, "started": started,
            "count": len(flow["samples"]), "max_behind_s": lag}


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, "-m", "bench.rollback_bench", "--child"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = await asyncio.to_thread(child.communicate, json.dumps(spec).encode())
    if child.returncode:
        raise RuntimeError(f"load child failed ({child.returncode})")
    return dict(json.loads(out))


# ---- topics, baseline, worker -----------------------------------------------------------------






async def forward_loop(bootstrap: str, source: str, sink: str, stop: asyncio.Event,
                       counter: list[int]) -> None:
    """The baseline: consume `source`, send every value to `sink`, flush, commit per batch."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"g-{source}",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            for part in batch.values():
                for record in part:
                    await producer.send(sink, record.value, key=record.key,
                                        partition=record.partition)
                    counter[0] += 1
            if batch:
                await producer.flush()
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()




async def baseline(bootstrap: str, spec: dict[str, Any]) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    source, sink = f"rb-{run}-in", f"rb-{run}-out"
    await create(bootstrap, [source, sink])
    stop, counter = asyncio.Event(), [0]
    loop = asyncio.create_task(forward_loop(bootstrap, source, sink, stop, counter))
    try:
        result = await run_load({**spec, "topic": source, "observe": sink, "mode": "forward"})
        deadline = time.time() + 60
        while counter[0] < result["count"] and time.time() < deadline:
            await asyncio.sleep(0.05)
        result["drained_at"] = time.time()
        result["handled"] = counter[0]
    finally:
        stop.set()
        await loop
        await delete_topics(bootstrap, f"rb-{run}")
    return result


async def worker(bootstrap: str, spec: dict[str, Any], directory: Path) -> dict[str, Any]:
    from rules.policy import default_policy
    from streams.agents import Runtime, install_agents
    from streams.app import build_app
    from streams.config import load_settings
    from streams.topics import ensure_topics
    from streams.worker_config import load_kafka_settings

    prefix = f"rb-{uuid.uuid4().hex[:6]}-w"
    settings = load_settings(data_dir=str(directory / "data"), key_dir=str(directory / "keys"),
                             partitions=PARTITIONS, broker=bootstrap)
    config = load_kafka_settings(settings, topic_prefix=prefix, app_id=prefix, web=False)
    await ensure_topics(config.bootstrap, config.topics, PARTITIONS)
    runtime = Runtime(config, default_policy(),
                      on_fatal=lambda error: sys.exit(f"fatal: {error!r}"))
    gc.collect()
    gc.freeze()  # as `certify worker` does once its state is loaded (streams/cli_kafka.py)
    handled: dict[str, float] = {}  # key -> when the worker judged its completing sample
    judge = runtime.handlers.rollbacks.sample

    def timed(envelope: Any, now: Any, payload: Any = None) -> Any:
        out = judge(envelope, now, payload)
        if any(e.type == "rollback.event" and e.payload.get("stage") == "triggered"
               for e in out):
            handled.setdefault(envelope.subject, time.time())
        return out

    runtime.handlers.rollbacks.sample = timed  # type: ignore[method-assign]
    app = build_app(config)
    install_agents(app, runtime)
    assigned = asyncio.Event()

    @app.on_partitions_assigned.connect
    async def ready(app: Any, assigned_partitions: Any, **kwargs: Any) -> None:
        if assigned_partitions:
            assigned.set()

    await app.start()
    try:
        await asyncio.wait_for(assigned.wait(), 60)
        names = config.topics
        cpu = time.process_time()
        result = await run_load({**spec, "topic": names["metrics"],
                                 "observe": names["rollbacks"], "mode": "worker"})
        deadline = time.time() + 120
        while runtime.inbound < result["count"] and time.time() < deadline:
            await asyncio.sleep(0.05)
        result["drained_at"] = time.time()
        result["cpu_s"] = time.process_time() - cpu  # this process: the worker (and idle waits)
        result["judged"] = dict(handled)
        result["handled"] = runtime.inbound
        result["recorded"] = runtime.writer.appended
        result["samples_recorded"] = sum(
            1 for _ in _recorded_samples(runtime))
    finally:
        await asyncio.wait_for(app.stop(), 60)
        await runtime.aclose()
        await delete_topics(bootstrap, prefix)
    return result


def _recorded_samples(runtime: Any) -> Any:
    from ledger import iter_entries

    ledger_dir = runtime.config.settings.ledger_dir
    for partition in range(PARTITIONS):
        for entry in iter_entries(ledger_dir, partition):
            if isinstance(entry.event, dict) and entry.event.get("type") == "metric.sample":
                yield entry


def report(name: str, result: dict[str, Any]) -> float:
    latencies = [(result["seen"][k] - result["sent"][k]) * 1000 for k in result["sent"]
                 if k in result["seen"]]
    p50, p90, p99, top = percentiles(latencies)
    offered = result["count"] / result["produced_in"]
    consumed = result["handled"] / max(1e-9, result["drained_at"] - result["started"])
    drained = max(0.0, result["drained_at"] - result["started"] - result["produced_in"])
    print(f"  {name:<40}{p50:>7.0f}{p90:>7.0f}{p99:>7.0f}{top:>7.0f}   n={len(latencies)}/"
          f"{len(result['sent'])}   offered {offered:,.0f}/s, handled {result['handled']:,} "
          f"({consumed:,.0f}/s incl. {drained:.1f} s drain)")
    return p99


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="samples/s offered")
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help="seconds of load")
    parser.add_argument("--keys", type=int, default=DEFAULT_KEYS, help="deployment keys")
    parser.add_argument("--breaches", type=int, default=DEFAULT_BREACHES,
                        help="keys that breach (health checks failing)")
    parser.add_argument("--no-baseline", action="store_true", help="the worker only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(load_child(json.loads(sys.stdin.read())))))
        return
    bootstrap = bootstrap_from_env("rollback_bench")
    spec = {"bootstrap": bootstrap, "rate": args.rate, "seconds": args.seconds,
            "keys": args.keys, "breaches": args.breaches, "timeout": 60}
    print(f"rollback_bench: broker {bootstrap}, {PARTITIONS} partitions, {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f}; {args.rate:,} samples/s for "
          f"{args.seconds} s over {args.keys:,} keys, {args.breaches} breaching", flush=True)
    print("\nDetection latency, ms: p50 / p90 / p99 / max (completing sample sent -> seen)")

    async def both() -> None:
        if not args.no_baseline:
            report("baseline: plain aiokafka forward loop", await baseline(bootstrap, spec))
        with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
            result = await worker(bootstrap, spec, Path(tmp))
        p99 = report("worker: sample -> RollbackTriggered", result)
        print(f"  worker recorded {result['samples_recorded']:,} of {result['count']:,} samples"
              f" ({result['recorded']:,} ledger entries in all); producer at most "
              f"{result['max_behind_s']:.2f} s behind its schedule")
        judged, sent, seen = result["judged"], result["sent"], result["seen"]
        inside = [(judged[k] - sent[k]) * 1000 for k in sent if k in judged]
        after = [(seen[k] - judged[k]) * 1000 for k in seen if k in judged]
        print("  of which: sent -> judged by the worker (Kafka in, queue, handlers) "
              "{:.0f} / {:.0f} / {:.0f} / {:.0f}; judged -> seen on the topic {:.0f} / {:.0f} / "
              "{:.0f} / {:.0f}".format(*percentiles(inside), *percentiles(after)))
        wall = result["drained_at"] - result["started"]
        print(f"  worker process CPU {result['cpu_s']:.1f} s in {wall:.1f} s "
              f"({result['cpu_s'] / wall:.0%} of a core; "
              f"{result['cpu_s'] / result['count'] * 1e6:.0f} µs per sample; the projector "
              "process and the load process not included)")
        print(f"  target: p99 < {TARGET_P99_MS:.0f} ms at {args.rate:,} samples/s: "
              f"{'met' if p99 < TARGET_P99_MS else 'NOT met'}")

    asyncio.run(both())
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
