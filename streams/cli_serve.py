"""`certify serve`: the HTTP API over the embedded pipeline (one process, ledger on disk).

The ledger has one writer: while `serve` runs, other `certify` commands that write (run,
permit ... without --url, approver add) wait for it to stop; point them at the server with
--url (env CERTIFY_URL) instead.
"""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API (tasks, permits, approvals, authorize, overrides) "
                       "over the embedded ledger")
    p.add_argument("--host", default=os.environ.get("CERTIFY_HOST", "127.0.0.1"),
                   help="listen address (env CERTIFY_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("CERTIFY_PORT", "8080")),
                   help="listen port (env CERTIFY_PORT, default 8080)")
    p.add_argument("--tick-seconds", type=float, default=None,
                   help="how often timers run (default: governance monitor_interval_seconds)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from streams.cli import EXIT_OK, _policy, _settings
    from streams.embedded import EmbeddedRunner
    from streams.web import create_app

    policy = _policy(args)
    settings = _settings(args)
    runner = EmbeddedRunner(settings, policy)
    interval = args.tick_seconds or policy.governance.permit_lifecycle.monitor_interval_seconds

    def housekeeping() -> None:
        runner.ledger.maybe_checkpoint()
        runner.projector.catch_up()

    async def close(_: web.Application) -> None:
        runner.close()

    app = create_app(runner.pipeline, tick_interval=interval, on_tick=housekeeping)
    app.on_cleanup.append(close)
    print(f"certify serve: http://{args.host}:{args.port}  (data in {settings.data_dir}/, "
          f"timers every {interval:g} s; Ctrl-C stops)", file=sys.stderr, flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None)
    return EXIT_OK
