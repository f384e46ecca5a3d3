"""`certify serve`: the HTTP API over the embedded pipeline (one process, ledger on disk).

The ledger has one writer: while `serve` runs, other `certify` commands that write (run,
permit ... without --url, approver add) wait for it to stop; point them at the server with
--url (env CERTIFY_URL) instead.
"""

from __future__ import annotations

import argparse
import os
import sys

SWITCH_INTERVAL_S = 0.0005


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API (tasks, permits, approvals, authorize, overrides) "
                       "over the embedded ledger")
    p.add_argument("--host", default=os.environ.get("CERTIFY_HOST", "127.0.0.1"),
                   help="listen address (env CERTIFY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("CERTIFY_PORT", "8080")),
                   help="listen port (env CERTIFY_PORT, default 8080)")
    p.add_argument("--tick-seconds", type=float, default=None,
                   help="how often timers run (default: governance monitor_interval_seconds)")
    p.add_argument("--projections-seconds", type=float, default=None,
                   help="how often DuckDB catches up with the ledger, in a worker thread "
                   "(default: as --tick-seconds; 0 = never here: `certify projections rebuild` "
                   "or another process projects)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import gc

    from aiohttp import web

    from streams.cli import EXIT_OK, _policy, _settings
    from streams.embedded import EmbeddedRunner
    from streams.web import create_app

    policy = _policy(args)
    settings = _settings(args)
    runner = EmbeddedRunner(settings, policy)
    interval = args.tick_seconds or policy.governance.permit_lifecycle.monitor_interval_seconds

    # The state rebuilt from the ledger lives as long as the process: keep the collector from
    # walking it on every full collection (long pauses would land on requests).
    gc.collect()
    gc.freeze()
    # The projector thread holds the GIL in its Python parts; hand it back to the event loop
    # every 0.5 ms instead of CPython's 5 ms, so requests do not queue behind a catch-up.
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def projections(_: web.Application):  # type: ignore[no-untyped-def]
        """DuckDB catch-up in a worker thread, so that requests never wait for it."""
        running: list[asyncio.Future[None]] = []

        async def loop() -> None:
            while True:
                await asyncio.sleep(project_every)
                running[:] = [asyncio.ensure_future(asyncio.to_thread(runner.projector.catch_up))]
                try:
                    await asyncio.shield(running[0])
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # logged; retried next interval
                    print(f"certify serve: projections: {error}", file=sys.stderr)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        for pending in (task, *running):  # never close the projector under a running catch-up
            try:
                await pending
            except (asyncio.CancelledError, Exception):
                pass
        runner.close()

    app = create_app(runner.pipeline, tick_interval=interval,
                     on_tick=runner.ledger.maybe_checkpoint)
    project_every = interval if args.projections_seconds is None else args.projections_seconds
    if project_every > 0:
        app.cleanup_ctx.append(projections)
    else:
        async def close(_: web.Application) -> None:
            runner.close()

        app.on_cleanup.append(close)
    print(f"certify serve: http://{args.host}:{args.port}  (data in {settings.data_dir}/, "
          f"timers every {interval:g} s; Ctrl-C stops)", file=sys.stderr, flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return EXIT_OK
