"""Kafka mode on the command line: `certify worker`, `certify produce`, `certify topics create`.

Every flag also reads a CERTIFY_* environment variable (docs/kafka-mode.md lists them);
`certify run` stays embedded (no broker).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from collections.abc import Iterable
from typing import Any

from streams.topics import H_SOURCE, MAX_MESSAGE_BYTES, TopicError, ensure_topics

PRODUCE_WINDOW = 5_000  # sends in flight before `produce` waits for their acknowledgements


def _kafka_options(p: argparse.ArgumentParser, *, worker: bool = False,
                   creates: bool = True) -> None:
    p.add_argument("--broker", help="Kafka bootstrap, kafka://host:port[;kafka://host:port] or "
                   "host:port[,host:port] (env CERTIFY_BROKER, default kafka://127.0.0.1:9092)")
    p.add_argument("--topic-prefix", help="topic names are PREFIX.tasks, PREFIX.decisions, ... "
                   "(env CERTIFY_TOPIC_PREFIX, default certify)")
    if creates:
        p.add_argument("--replication", type=int, help="replication factor of created topics "
                       "(env CERTIFY_REPLICATION, default 1)")
    if not worker:
        return
    p.add_argument("--app-id", help="Faust app id = consumer group id (env CERTIFY_APP_ID, "
                   "default certify); one worker per app id and ledger")
    p.add_argument("--web-port", type=int, help="port of Faust's web server, which also "
                   "serves the HTTP API (env CERTIFY_WEB_PORT, default 6066)")
    p.add_argument("--web-host", help="address Faust's web server binds (env CERTIFY_WEB_HOST, "
                   "default 127.0.0.1)")
    p.add_argument("--no-web", dest="web", action="store_const", const=False, default=None,
                   help="no Faust web server (env CERTIFY_WEB=0)")
    p.add_argument("--no-projector", dest="projector", action="store_const", const=False,
                   default=None, help="do not project the ledger into DuckDB in this process "
                   "(env CERTIFY_PROJECTOR=0)")
    p.add_argument("--snapshot", help="also publish a copy of the DuckDB projections here, at "
                   "most every CERTIFY_SNAPSHOT_INTERVAL_S (60) seconds and at stop, for "
                   "readers in other processes (env CERTIFY_DUCKDB_SNAPSHOT)")
    p.add_argument("--batch-size", type=int, help="records an agent takes at once (env "
                   "CERTIFY_BATCH_SIZE, default 500)")
    p.add_argument("--session-timeout", type=float, help="seconds before the broker gives a "
                   "dead worker's partitions to another (env CERTIFY_SESSION_TIMEOUT_S, "
                   "default 10)")
    p.add_argument("--loglevel", help="worker log level (env CERTIFY_LOGLEVEL, default info)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="Kafka mode: the Faust worker (certifier, intake, ledger "
                       "writer, DuckDB projector); creates its topics first")
    _kafka_options(p, worker=True)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("produce", help="send JSON Lines to a topic, one message per line, "
                       "keyed by subject / task_id (for masters and monitoring)")
    _kafka_options(p, creates=False)
    p.add_argument("--topic", required=True, help="tasks, approvals, executions or metrics "
                   "(or any topic's short or full name)")
    p.add_argument("file", nargs="?", default="-", help="JSON Lines file, or - for stdin "
                   "(default)")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("topics", help="Kafka topics of this application")
    tsub = p.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("create", help="create every topic with --partitions partitions "
                        "(idempotent; refuses topics whose partition count differs)")
    _kafka_options(t)
    t.set_defaults(func=cmd_topics_create)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from streams.cli import CliError, _settings
    from streams.worker_config import load_kafka_settings

    try:
        return load_kafka_settings(
            _settings(args), topic_prefix=args.topic_prefix,
            replication=getattr(args, "replication", None),
            app_id=getattr(args, "app_id", None), web=getattr(args, "web", None),
            web_host=getattr(args, "web_host", None), web_port=getattr(args, "web_port", None),
            batch_size=getattr(args, "batch_size", None),
            projector=getattr(args, "projector", None),
            session_timeout_s=getattr(args, "session_timeout", None),
            loglevel=getattr(args, "loglevel", None), snapshot=getattr(args, "snapshot", None))
    except (ValueError, TopicError) as error:
        raise CliError(str(error)) from None


def _ensure_topics(config: Any, loop: asyncio.AbstractEventLoop) -> list[Any]:
    from streams.cli import CliError

    try:
        return loop.run_until_complete(ensure_topics(
            config.bootstrap, config.topics, config.settings.partitions,
            replication=config.replication))
    except TopicError as error:
        raise CliError(str(error)) from None


# ---- certify topics create ------------------------------------------------------------------


def cmd_topics_create(args: argparse.Namespace) -> int:
    config = _config(args)
    loop = asyncio.new_event_loop()
    try:
        statuses = _ensure_topics(config, loop)
    finally:
        loop.close()
    for status in statuses:
        print(f"{status.name:<40} {status.partitions} partitions  "
              f"{'created' if status.created else 'exists'}")
    return 0


# ---- certify worker -------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    import gc

    import faust

    from ledger import LedgerError
    from streams.agents import Runtime, install_agents
    from streams.app import build_app
    from streams.cli import CliError, _policy

    config = _config(args)
    policy = _policy(args)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    statuses = _ensure_topics(config, loop)
    created = [s.name for s in statuses if s.created]
    print(f"certify worker: {len(statuses)} topics ready ({config.topic_prefix}.*, "
          f"{config.settings.partitions} partitions; created {len(created)})", file=sys.stderr)
    try:
        pipeline = Runtime(config, policy)
    except LedgerError as error:
        raise CliError(f"ledger: {error}") from None
    # The state rebuilt from the ledger lives as long as the process: keep the collector from
    # walking it on every full collection (as `certify serve` does).
    gc.collect()
    gc.freeze()
    print(f"certify worker: ledger {config.settings.ledger_dir}, DuckDB "
          f"{config.settings.duckdb_path if config.projector else '(not projected here)'}, "
          f"broker {config.bootstrap}, app id {config.app_id}", file=sys.stderr, flush=True)
    exit_code = 0
    try:
        app = build_app(config)
        install_agents(app, pipeline)
        if config.web_enabled:  # the HTTP API on Faust's web server (streams/worker_web.py)
            from streams.worker_web import mount

            try:
                mount(app, pipeline)
            except ValueError as error:
                raise CliError(str(error)) from None
        worker = faust.Worker(app, loglevel=config.loglevel, loop=loop)
        try:
            worker.execute_from_commandline()
        except SystemExit as stop:
            exit_code = stop.code if isinstance(stop.code, int) else 0
    finally:
        pipeline.close()
        print(f"certify worker: stopped; {pipeline.inbound} inbound records "
              f"({pipeline.rejected} rejected), {pipeline.writer.appended} ledger entries "
              f"appended, {pipeline.writer.duplicates} duplicates refused", file=sys.stderr)
    return exit_code


# ---- certify produce ------------------------------------------------------------------------


def record_key(raw: bytes) -> bytes:
    """The subject the handlers will give this record's events, so that they land in the
    partition the record was read from: an envelope's subject, a task's task_id (or the id
    derived from its content); for a record they will reject, the rejection's subject."""
    from events import InputError, decode_json, utc_now
    from streams.handlers import as_event

    try:
        return as_event(decode_json(raw), raw, utc_now(), "master").subject.encode()
    except InputError:
        return f"rejected-{hashlib.sha256(raw).hexdigest()[:16]}".encode()


def cmd_produce(args: argparse.Namespace) -> int:
    from streams.cli import CliError
    from streams.embedded import read_lines

    config = _config(args)
    try:
        topic = config.topics.resolve(args.topic)
    except TopicError as error:
        raise CliError(str(error), code=2) from None
    if args.file == "-":
        records = read_lines(sys.stdin.buffer, "stdin")
        sent, skipped = asyncio.run(produce(config.bootstrap, topic, records))
    else:
        try:
            handle = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise CliError(f"{args.file}: {error.strerror}", code=2) from None
        with handle:
            sent, skipped = asyncio.run(produce(config.bootstrap, topic,
                                                read_lines(handle, args.file)))
    print(f"certify produce: {sent} messages to {topic}"
          + (f"; {len(skipped)} too big for Kafka, not sent: {', '.join(skipped[:5])}"
             if skipped else ""), file=sys.stderr)
    return 2 if skipped else 0


async def produce(bootstrap: str, topic: str, records: Iterable[tuple[str, bytes]]
                  ) -> tuple[int, list[str]]:
    """Send (source, raw) records, keyed by subject, with header certify-source = source."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from streams.cli import CliError

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=5,
                                max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
                                request_timeout_ms=30_000)
    try:
        await asyncio.wait_for(producer.start(), 30)
    except (KafkaError, OSError, asyncio.TimeoutError) as error:
        await producer.stop()
        raise CliError(f"cannot reach the Kafka broker at {bootstrap}: "
                       f"{error}") from None
    sent, skipped, pending = 0, [], []
    try:
        metadata = await producer.client.fetch_all_metadata()
        if topic not in metadata.topics():
            raise CliError(f"topic {topic} does not exist: run `certify topics create` "
                           "(or start `certify worker`) first")
        for source, raw in records:
            if len(raw) > MAX_MESSAGE_BYTES:
                skipped.append(source)
                continue
            pending.append(await producer.send(topic, raw, key=record_key(raw),
                                               headers=[(H_SOURCE, source.encode())]))
            sent += 1
            if len(pending) >= PRODUCE_WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent, skipped
