"""Kafka mode end to end: sustained throughput and latency, against baselines from the same run
on the same broker.

    scripts/kafka.sh start
    CERTIFY_KAFKA_BOOTSTRAP=$(cat .cache/kafka/bootstrap) .venv/bin/python -m bench.kafka_bench

Measured (the worker is the real app and runtime of `certify worker`, in this process; load and
observers run in a child process so they do not share this process's event loop):

* throughput: N sample records already on the tasks topic, then the worker starts; records per
  second from its first batch until the last entry is in DuckDB (task in -> decision on the
  topic -> ledger entry -> DuckDB row, for all of them).
* baselines, same records, same broker, this process (and, for reference, the embedded runner
  on the same records: handlers, ledger and DuckDB without Kafka):
  - "forward": a plain aiokafka consume-and-produce loop (getmany, send each value to another
    topic, flush, commit): what Kafka and aiokafka alone cost;
  - "forward + handlers": the same loop running the pure certification handler
    (`streams.handlers.handle_inbound`) on each record and producing its decision: the work
    of certifying without Faust, the ledger and DuckDB.
* latency at a fixed rate (default 1,000 tasks/s for 10 s): per valid task, from its send to
  (a) its decision seen on the decisions topic, (b) its decision's entry seen on the ledger
  topic, (c) its decision's row committed to DuckDB (the projector reports each batch it
  committed); end to end = the latest of the three. The same for the forward baseline (send
  to forwarded record seen). Also when the broker acknowledged each task ("task acked": if
  that is late, the load generator, not the worker, is behind). If the pipeline cannot keep
  the rate, latency grows with the backlog: the report says the rate it actually kept. CPU
  seconds of the worker's process and of its projector process over the run are reported
  next to it (the machine is shared: CPU seconds move less with other load than the
  milliseconds do).
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
from pathlib import Path
from typing import Any

from bench.kafka_common import bootstrap_from_env, create_topics, delete_topics
from bench.kafka_common import percentiles as _percentiles

DEFAULT_TASKS = 5_000
DEFAULT_RATE = 1_000
DEFAULT_SECONDS = 10
DEFAULT_REPEAT = 2
PARTITIONS = 4
TARGET_RATIO = 0.5
TARGET_P99_MS = 250.0


async def create(bootstrap: str, names: list[str]) -> None:
    from streams.topics import MAX_MESSAGE_BYTES

    await create_topics(bootstrap, names, PARTITIONS,
                        {"max.message.bytes": str(MAX_MESSAGE_BYTES)})


def percentiles(values: list[float]) -> tuple[float, ...]:
    """p50, p99, max (nearest rank)."""
    return _percentiles(values, 0.5, 0.99)


def records(count: int, offset: int = 0) -> list[tuple[bytes, bytes]]:
    """(key, value) of sample records, keyed as `certify produce` keys them."""
    from streams.cli_kafka import record_key
    from streams.sample import sample_records

    out = []
    for i, raw in enumerate(sample_records(count + offset)):
        if i >= offset:
            out.append((record_key(raw), raw))
    return out






async def preload(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=4 << 20)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in items]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def outcomes(items: list[tuple[bytes, bytes]]) -> tuple[list[str], int]:
    """Keys of the records the checker accepts, and how many ledger entries all will make."""
    from datetime import UTC, datetime

    from rules.policy import default_policy
    from streams.handlers import handle_inbound

    policy, now = default_policy(), datetime(2026, 1, 1, tzinfo=UTC)
    keys, entries = [], 0
    for key, raw in items:
        outcome = handle_inbound(raw, "bench", policy, now)
        entries += len(outcome.events)
        if outcome.decision is not None:
            keys.append(key.decode())
    return keys, entries


# ---- baselines: plain aiokafka loops ------------------------------------------------------------


async def forward_loop(bootstrap: str, source: str, sink: str, expected: int, *,
                       certify: bool = False, stop: asyncio.Event | None = None) -> float:
    """Consume `source`, produce each value (or its decision) to `sink`, commit per batch.
    Returns the seconds from the first record to the `expected`-th (or until `stop`)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from events import utc_now
    from rules.policy import default_policy
    from streams.handlers import handle_inbound

    policy = default_policy()
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"g-{source}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0,
                                max_request_size=4 << 20)
    await consumer.start()
    await producer.start()
    done, started = 0, None
    try:
        while done < expected and not (stop is not None and stop.is_set()):
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            for part in batch.values():
                for record in part:
                    started = started or time.perf_counter()
                    value = record.value
                    if certify:
                        outcome = handle_inbound(value, f"{record.topic}:{record.offset}",
                                                 policy, utc_now())
                        value = json.dumps(outcome.events[-1].to_record()).encode()
                    await producer.send(sink, value, key=record.key, partition=record.partition)
                    done += 1
            if batch:
                await producer.flush()
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return time.perf_counter() - (started or time.perf_counter())


def embedded(items: list[tuple[bytes, bytes]], directory: Path) -> float:
    """`certify run` on the same records (handlers, ledger, DuckDB at the end; no Kafka)."""
    from rules.policy import default_policy
    from streams.config import load_settings
    from streams.embedded import EmbeddedRunner

    settings = load_settings(data_dir=str(directory / "data"), key_dir=str(directory / "keys"),
                             partitions=PARTITIONS)
    runner = EmbeddedRunner(settings, default_policy())
    try:
        summary = runner.process((f"bench:{i}", raw) for i, (_, raw) in enumerate(items))
    finally:
        runner.close()
    return summary.records / summary.seconds


# ---- the worker, in this process -----------------------------------------------------------


class Worker:
    """`certify worker`'s app and runtime; records when each decision reached DuckDB."""

    def __init__(self, bootstrap: str, directory: Path, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.directory = directory
        self.prefix = prefix
        self.projected: dict[str, float] = {}  # task id -> wall time its decision was in DuckDB
        self.appended: dict[int, list[tuple[int, str | None]]] = {}  # partition -> entries
        self.done: dict[int, int] = {}  # partition -> entries of `appended` in DuckDB
        self.entries = 0  # entries this worker appended that are in DuckDB
        self.first_batch: float | None = None
        self.first_cpu = 0.0

    def projector_cpu(self) -> float:
        """CPU seconds the projector process used so far (Linux /proc)."""
        projection = self.runtime.projection
        if projection is None:
            return 0.0
        try:
            fields = Path(f"/proc/{projection.child.pid}/stat").read_text().rsplit(")", 1)[1]
        except OSError:
            return float("nan")
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def on_append(self, partition: int, index: int, record: dict[str, Any]) -> None:
        """(the worker's thread) where each entry landed, decisions with their task id"""
        subject = record["subject"] if record["type"] == "certification.decided" else None
        self.appended.setdefault(partition, []).append((index, subject))

    def on_projected(self, at: float, positions: dict[int, int]) -> None:
        """(the progress reader's thread) the projector process committed up to `positions`
        (next index per partition) at wall time `at`"""
        for partition, following in positions.items():
            mine = self.appended.get(partition, [])
            done = self.done.get(partition, 0)
            while done < len(mine) and mine[done][0] < following:
                subject = mine[done][1]
                if subject is not None:
                    self.projected.setdefault(subject, at)
                done += 1
            self.entries += done - self.done.get(partition, 0)
            self.done[partition] = done

    async def __aenter__(self) -> Worker:
        from rules.policy import default_policy
        from streams.agents import Runtime, install_agents
        from streams.app import build_app
        from streams.config import load_settings
        from streams.topics import ensure_topics
        from streams.worker_config import load_kafka_settings

        settings = load_settings(data_dir=str(self.directory / "data"),
                                 key_dir=str(self.directory / "keys"), partitions=PARTITIONS,
                                 broker=self.bootstrap)
        self.config = load_kafka_settings(settings, topic_prefix=self.prefix,
                                          app_id=self.prefix, web=False)
        await ensure_topics(self.config.bootstrap, self.config.topics, PARTITIONS)
        self.runtime = Runtime(self.config, default_policy(), on_projected=self.on_projected,
                               on_fatal=lambda error: sys.exit(f"fatal: {error!r}"))
        self.runtime.writer.on_append = self.on_append
        # as `certify worker` does once its state is loaded: full collections do not walk it
        gc.collect()
        gc.freeze()
        original = self.runtime.inbound_batch

        async def timed(batch: Any) -> None:
            if self.first_batch is None:
                self.first_batch = time.perf_counter()
                self.first_cpu = time.process_time()
            await original(batch)

        self.runtime.inbound_batch = timed  # type: ignore[method-assign]
        self.app = build_app(self.config)
        install_agents(self.app, self.runtime)
        self.assigned = asyncio.Event()

        @self.app.on_partitions_assigned.connect
        async def ready(app: Any, assigned: Any, **kwargs: Any) -> None:
            if assigned:
                self.assigned.set()

        await self.app.start()
        await asyncio.wait_for(self.assigned.wait(), 60)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.wait_for(self.app.stop(), 60)
        await self.runtime.aclose()


# ---- load and observers, in a child process ------------------------------------------------


async def load_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Produce `count` records at `rate`/s; note when each record's key shows up on the
    observed topics. Times are wall clock (time.time), shared with the parent."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap, rate = spec["bootstrap"], spec["rate"]
    items = records(spec["count"], spec["offset"])
    seen: dict[str, dict[str, float]] = {t: {} for t in spec["observe"]}
    wanted = set(spec["keys"])

    async def observe(topic: str) -> None:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="latest",
                                    max_partition_fetch_bytes=4 << 20)
        await consumer.start()
        ready.set()
        mine = seen[topic]
        try:
            while len(mine) < len(wanted):
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for part in batch.values():
                    for record in part:
                        key = record.key.decode() if record.key else ""
                        if key in wanted and key not in mine:
                            if spec["decisions_only"] and b"certification.decided" not in (
                                    record.value or b""):
                                continue
                            mine[key] = now
        finally:
            await consumer.stop()

    ready = asyncio.Event()
    observers = [asyncio.create_task(observe(t)) for t in spec["observe"]]
    await ready.wait()
    await asyncio.sleep(1.0)  # let every observer get its partitions
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1,
                                max_request_size=4 << 20)
    await producer.start()
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}  # when the broker acknowledged it
    started = time.perf_counter()
    tick = 0.01
    try:
        for i, (key, value) in enumerate(items):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > tick:
                await asyncio.sleep(delay)
            name = key.decode()
            sent[name] = time.time()
            future = await producer.send(spec["topic"], value, key=key)
            future.add_done_callback(lambda _, name=name: acked.__setitem__(name, time.time()))
        await producer.flush()
        produced_in = time.perf_counter() - started
    finally:
        await producer.stop()
    try:
        await asyncio.wait_for(asyncio.gather(*observers), spec["timeout"])
    except asyncio.TimeoutError:
        pass
    return {"sent": sent, "acked": acked, "seen": seen, "produced_in": produced_in}


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """The load child: spec on stdin, result on stdout."""
    child = subprocess.Popen([sys.executable, "-m", "bench.kafka_bench", "--child"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = await asyncio.to_thread(child.communicate, json.dumps(spec).encode())
    if child.returncode:
        raise RuntimeError(f"load child failed ({child.returncode})")
    return json.loads(out)




# ---- the runs -----------------------------------------------------------------------------------


async def throughput(bootstrap: str, tasks: int, base: Path, repeat: int
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Best of `repeat` runs of each, interleaved (this machine is shared and noisy): records
    per second, and CPU microseconds per record (least of the runs; less sensitive to other
    load than the rates; the worker's includes its projector process)."""
    items = records(tasks)
    total = outcomes(items)[1]
    results: dict[str, float] = {"forward": 0.0, "forward + handlers": 0.0,
                                 "embedded runner": 0.0, "worker": 0.0}
    cpu: dict[str, float] = dict.fromkeys([*results, "worker: projector process"],
                                          float("inf"))

    def note_cpu(name: str, seconds: float) -> None:
        cpu[name] = min(cpu[name], seconds / tasks * 1e6)

    for attempt in range(repeat):
        run = uuid.uuid4().hex[:6]
        started = time.process_time()
        results["embedded runner"] = max(results["embedded runner"],
                                         embedded(items, base / f"embedded-{attempt}"))
        note_cpu("embedded runner", time.process_time() - started)
        for name, certify in (("forward", False), ("forward + handlers", True)):
            src, out = f"kb-{run}-{int(certify)}-in", f"kb-{run}-{int(certify)}-out"
            await create(bootstrap, [src, out])
            await preload(bootstrap, src, items)
            started = time.process_time()
            rate = tasks / await forward_loop(bootstrap, src, out, tasks, certify=certify)
            note_cpu(name, time.process_time() - started)
            results[name] = max(results[name], rate)
        await delete_topics(bootstrap, f"kb-{run}")
        prefix = f"kb-{run}-w"
        from streams.topics import TopicNames, ensure_topics

        await ensure_topics(bootstrap, TopicNames(prefix), PARTITIONS)
        await preload(bootstrap, f"{prefix}.tasks", items)
        async with Worker(bootstrap, base / f"throughput-{attempt}", prefix) as worker:
            deadline = time.perf_counter() + 600
            while worker.entries < total and time.perf_counter() < deadline:
                await asyncio.sleep(0.02)
            finished = time.perf_counter()
            note_cpu("worker", time.process_time() - worker.first_cpu)
            note_cpu("worker: projector process", worker.projector_cpu())
            assert worker.first_batch is not None and worker.entries >= total
            results["worker"] = max(results["worker"], tasks / (finished - worker.first_batch))
        await delete_topics(bootstrap, prefix)
        print(f"  run {attempt + 1}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in
                                                    results.items()), flush=True)
    return results, cpu


async def latency(bootstrap: str, rate: int, seconds: int, base: Path) -> dict[str, Any]:
    count = rate * seconds
    run = uuid.uuid4().hex[:6]
    items = records(count, offset=100_000)
    keys = outcomes(items)[0]
    out: dict[str, Any] = {}
    # the forward baseline at the same rate
    src, sink = f"kb-{run}-lin", f"kb-{run}-lout"
    await create(bootstrap, [src, sink])
    stop = asyncio.Event()
    loop_task = asyncio.create_task(forward_loop(bootstrap, src, sink, count, stop=stop))
    result = await run_load({"bootstrap": bootstrap, "rate": rate, "count": count,
                             "offset": 100_000, "topic": src, "observe": [sink], "keys": keys,
                             "decisions_only": False, "timeout": 60})
    stop.set()
    await loop_task
    await delete_topics(bootstrap, f"kb-{run}-l")
    sent = result["sent"]
    out["forward"] = [(result["seen"][sink][k] - sent[k]) * 1000 for k in keys
                      if k in result["seen"][sink]]
    out["forward kept rate"] = count / result["produced_in"]
    # the worker
    prefix = f"kb-{run}-lw"
    async with Worker(bootstrap, base / "latency", prefix) as worker:
        names = worker.config.topics
        cpu0, projector0 = time.process_time(), worker.projector_cpu()
        commits0 = worker.runtime.projection.commits if worker.runtime.projection else 0
        result = await run_load({"bootstrap": bootstrap, "rate": rate, "count": count,
                                 "offset": 100_000, "topic": names["tasks"],
                                 "observe": [names["decisions"], names["ledger"]],
                                 "keys": keys, "decisions_only": True, "timeout": 120})
        deadline = time.perf_counter() + 120
        while len(worker.projected) < len(keys) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        projected = dict(worker.projected)
        out["worker cpu"] = time.process_time() - cpu0
        out["projector cpu"] = worker.projector_cpu() - projector0
        out["projector commits"] = (worker.runtime.projection.commits - commits0
                                    if worker.runtime.projection else 0)
    await delete_topics(bootstrap, prefix)
    sent, seen = result["sent"], result["seen"]
    decided, entry = seen[names["decisions"]], seen[names["ledger"]]
    out["decision"] = [(decided[k] - sent[k]) * 1000 for k in keys if k in decided]
    out["ledger entry"] = [(entry[k] - sent[k]) * 1000 for k in keys if k in entry]
    out["DuckDB row"] = [(projected[k] - sent[k]) * 1000 for k in keys if k in projected]
    out["task acked"] = [(result["acked"][k] - sent[k]) * 1000 for k in keys
                         if k in result["acked"]]
    out["end to end"] = [(max(decided[k], entry[k], projected[k]) - sent[k]) * 1000
                         for k in keys if k in decided and k in entry and k in projected]
    out["worker kept rate"] = count / result["produced_in"]
    out["tasks"] = len(keys)
    return out


def report_latency(lat: dict[str, Any], rate: int, seconds: int) -> float:
    print(f"\nLatency at {rate} tasks/s for {seconds}s ({lat['tasks']} valid tasks), ms: "
          f"p50 / p99 / max (offered: forward {lat['forward kept rate']:,.0f}/s, worker "
          f"{lat['worker kept rate']:,.0f}/s)")
    for name in ("forward", "task acked", "decision", "ledger entry", "DuckDB row",
                 "end to end"):
        p50, p99, top = percentiles(lat[name])
        label = "forward baseline (record seen on out topic)" if name == "forward" else name
        print(f"  {label:<46}{p50:>9.1f}{p99:>9.1f}{top:>9.1f}   n={len(lat[name])}")
    print(f"  CPU seconds while loaded ({seconds} s of load and the drain after it): worker "
          f"process {lat['worker cpu']:.2f}, projector process {lat['projector cpu']:.2f} "
          f"({lat['projector commits']} commits); load average {os.getloadavg()[0]:.1f}")
    return percentiles(lat["end to end"])[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=DEFAULT_TASKS,
                        help="records for the throughput runs")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help="throughput runs of each (best is reported)")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="tasks/s for latency")
    parser.add_argument("--seconds", type=int, default=DEFAULT_SECONDS,
                        help="seconds of load for latency")
    parser.add_argument("--latency-only", action="store_true",
                        help="skip the throughput runs (and the second latency run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(load_child(json.loads(sys.stdin.read())))))
        return
    bootstrap = bootstrap_from_env("kafka_bench")
    print(f"kafka_bench: broker {bootstrap}, {PARTITIONS} partitions, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as tmp:
        base = Path(tmp)
        if args.latency_only:
            lat = asyncio.run(latency(bootstrap, args.rate, args.seconds, base / "a"))
            report_latency(lat, args.rate, args.seconds)
            return
        rates, cpu = asyncio.run(throughput(bootstrap, args.tasks, base, args.repeat))
        print(f"\nSustained throughput, {args.tasks} sample records (1 in ~60 bad), records/s, "
              f"best of {args.repeat}")
        labels = {"forward": "forward: plain aiokafka consume-and-produce loop",
                  "forward + handlers": "forward + handle_inbound (pure certify, no ledger)",
                  "embedded runner": "embedded runner, no Kafka (handlers, ledger, DuckDB)",
                  "worker": "worker: Kafka in -> ledger -> decisions -> DuckDB"}
        for name, label in labels.items():
            print(f"  {label:<52}{rates[name]:>10,.0f}")
        for name in ("forward", "forward + handlers", "embedded runner"):
            ratio = rates["worker"] / rates[name]
            print(f"  worker / {name:<43}{ratio:>10.3f}")
        print("\nCPU per record, microseconds (least of the runs; other load moves it less "
              "than the rates)")
        for name, value in cpu.items():
            print(f"  {name:<52}{value:>10,.0f}")
        print(f"  worker process / forward process{cpu['worker'] / cpu['forward']:>29.1f}x")
        ratio = rates["worker"] / rates["forward"]
        print(f"  target: worker >= {TARGET_RATIO} x baseline (plain loop): "
              f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}", flush=True)
        lat = asyncio.run(latency(bootstrap, args.rate, args.seconds, base / "a"))
        p99 = report_latency(lat, args.rate, args.seconds)
        print(f"  target: end-to-end p99 < {TARGET_P99_MS:.0f} ms at {args.rate}/s: "
              f"{'met' if p99 < TARGET_P99_MS else 'NOT met'}", flush=True)
        half = max(10, int(rates["worker"] / 2) // 10 * 10)
        if half < args.rate:
            lat = asyncio.run(latency(bootstrap, half, args.seconds, base / "b"))
            report_latency(lat, half, args.seconds)
            print("  (half the worker's measured throughput: latency when it keeps up)")
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
