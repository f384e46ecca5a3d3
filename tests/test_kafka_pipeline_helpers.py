"""Helpers shared by the Kafka pipeline, conformance and fault tests (this module has no tests).

Everything runs against the real broker of `scripts/kafka.sh` (fixture `kafka_bootstrap`), with
unique topic prefixes and app ids per test, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger import iter_entries
from ledger.layout import KIND_EVENT, partition_dir
from streams.sample import sample_records

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4


def unique(stem: str) -> str:
    return f"t-{stem}-{uuid.uuid4().hex[:8]}"


def write_sample(path: Path, count: int) -> Path:
    """The built-in sample stream as a JSON Lines file (what `certify run --events` reads)."""
    with path.open("wb") as handle:
        for raw in sample_records(count):
            handle.write(raw + b"\n")
    return path


@dataclass(frozen=True)
class Expected:
    """What the handlers make of a sample file (pure: `handle_inbound` records nothing)."""

    tasks: set[str]  # event ids of accepted task.submitted events
    decisions: set[str]  # event ids of their certification.decided events
    rejected: int


def expected(path: Path) -> Expected:
    from rules.policy import default_policy
    from streams.embedded import read_lines
    from streams.handlers import handle_inbound

    policy = default_policy()
    tasks, decisions, rejected = set(), set(), 0
    with path.open("rb") as handle:
        for source, raw in read_lines(handle, str(path)):
            outcome = handle_inbound(raw, source, policy, datetime(2026, 1, 1, tzinfo=UTC))
            if outcome.rejected is not None:
                rejected += 1
            else:
                tasks.add(outcome.events[0].event_id)
                decisions.add(outcome.events[1].event_id)
    return Expected(tasks, decisions, rejected)


def ledger_events(ledger_dir: Path, partitions: int = PARTITIONS) -> dict[int, list[dict]]:
    """Per partition, the domain events in ledger order (not the ledger's own key entries)."""
    out: dict[int, list[dict]] = {}
    for p in range(partitions):
        if partition_dir(ledger_dir, p).is_dir():
            out[p] = [e.event for e in iter_entries(ledger_dir, p) if e.kind == KIND_EVENT]
        else:
            out[p] = []
    return out


# ---- a worker in a subprocess: `certify worker` ----------------------------------------------


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful stop: offsets committed, ledger checkpointed) and wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"worker did not stop in {timeout}s:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def start_worker(bootstrap: str, data_dir: Path, key_dir: Path, prefix: str, log: Path,
                 *extra: str) -> WorkerProcess:
    command = [sys.executable, "-m", "streams.cli", "--data-dir", str(data_dir),
               "--key-dir", str(key_dir), "--partitions", str(PARTITIONS), "worker",
               "--broker", f"kafka://{bootstrap}", "--topic-prefix", prefix, "--app-id", prefix,
               "--session-timeout", "6", "--loglevel", "warning", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTIFY_")}
    handle = log.open("ab")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    return WorkerProcess(proc, log)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             worker: WorkerProcess | None = None, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker exited ({worker.proc.returncode}) while waiting for "
                                 f"{what}:\n{worker.output()[-4000:]}")
        if time.monotonic() > deadline:
            tail = worker.output()[-4000:] if worker is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")
        time.sleep(every)


# ---- reading topics ---------------------------------------------------------------------------


async def read_topic(bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool],
                     timeout: float) -> list[Any]:
    """Every record of `topic` from the beginning (no group), until `until(records)`."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None,
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(records):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout}s")
            batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def distinct_ids(records: list[Any]) -> set[str]:
    return {json.loads(r.value)["event_id"] for r in records}


# ---- a worker in this process (faster; for tests that look inside) ---------------------------


@asynccontextmanager
async def running_worker(bootstrap: str, tmp_path: Path, *, prefix: str | None = None,
                         **options: Any) -> AsyncIterator[Any]:
    """The app and runtime of `certify worker`, started in this event loop."""
    from rules.policy import default_policy
    from streams.agents import Runtime, install_agents
    from streams.app import build_app
    from streams.config import load_settings
    from streams.topics import ensure_topics
    from streams.worker_config import load_kafka_settings

    prefix = prefix or unique("w")
    settings = load_settings(data_dir=str(tmp_path / "data"), key_dir=str(tmp_path / "keys"),
                             partitions=PARTITIONS, broker=f"kafka://{bootstrap}")
    config = load_kafka_settings(settings, topic_prefix=prefix, app_id=prefix, web=False,
                                 session_timeout_s=6, **options)
    await ensure_topics(config.bootstrap, config.topics, PARTITIONS)
    fatal: list[BaseException] = []
    runtime = Runtime(config, default_policy(), on_fatal=fatal.append)
    app = build_app(config)
    install_agents(app, runtime)
    await app.start()
    runtime.fatal = fatal  # type: ignore[attr-defined]
    try:
        yield runtime
    finally:
        try:
            await asyncio.wait_for(app.stop(), 60)
        finally:
            await runtime.aclose()
            await delete_topics(bootstrap, prefix)
    assert not fatal, f"fatal errors in the worker: {fatal}"


async def delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - `scripts/kafka.sh stop` drops the broker's data anyway
        pass
    finally:
        await admin.close()
