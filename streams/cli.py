"""`certify`: the command line. One `except` maps every known error to an exit code and one line.

Exit codes: 0 ok / allowed / sound; 1 denied / verification failed; 2 bad input or usage;
3 configuration or environment problem (missing key, unreadable policy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from events import InputError, decode_json, utc_now
from ledger import LedgerError
from rules.policy import PolicyError, default_policy, load_policy
from streams.client import ClientError
from streams.config import Settings, load_settings

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_ENV = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ENV) -> None:
        super().__init__(message)
        self.exit_code = code


def _read_input(name: str | None, stdin: BinaryIO) -> bytes:
    if name in (None, "-"):
        return stdin.read()
    try:
        return Path(name).read_bytes()
    except OSError as error:
        raise InputError("input.unreadable", f"{name}: {error.strerror}") from None


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _policy(args: argparse.Namespace):
    return load_policy(Path(args.policy_dir)) if args.policy_dir else default_policy()


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(data_dir=args.data_dir, key_dir=args.key_dir,
                         partitions=args.partitions, broker=getattr(args, "broker", None))


# --- commands ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from rules.checker import decide

    document = decode_json(_read_input(args.file, sys.stdin.buffer))
    if isinstance(document, dict) and document.get("type") == "task.submitted":
        document = (document.get("payload") or {}).get("task", document)
    _print_json(decide(document, _policy(args)).to_report())
    return EXIT_OK


def cmd_authorize(args: argparse.Namespace) -> int:
    """Level rules alone when no permit is named; a named permit is looked up live: in the
    running service (--url) or in the permits folded from the local ledger. The answer and
    any violation are recorded there."""
    from rules.authorize import authorize

    request = decode_json(_read_input(args.file, sys.stdin.buffer))
    names_permit = isinstance(request, dict) and (
        request.get("permit_id") or (isinstance(request.get("worker"), dict)
                                     and request["worker"].get("active_permit")))
    if args.url:
        from streams.client import Client

        verdict = Client(args.url).authorize(request)
    elif names_permit:
        from streams.embedded import EmbeddedRunner

        runner = EmbeddedRunner(_settings(args), _policy(args))
        try:
            result = runner.pipeline.permits.authorize(request, utc_now())
            verdict = result.verdict.to_dict()
        finally:
            runner.close()
    else:
        verdict = authorize(request, _policy(args), utc_now()).to_dict()
    _print_json(verdict)
    return EXIT_OK if verdict.get("allowed") else EXIT_FAIL


def cmd_run(args: argparse.Namespace) -> int:
    from streams.embedded import EmbeddedRunner, read_lines
    from streams.sample import sample_records
    from streams.summary import print_summary

    settings = _settings(args)
    handle = None
    if args.events is None:
        print(f"certify run: built-in sample stream ({args.count} records), "
              f"data in {settings.data_dir}/", file=sys.stderr)
        records = ((f"sample:{i + 1}", raw) for i, raw in enumerate(sample_records(args.count)))
    elif args.events == "-":
        records = read_lines(sys.stdin.buffer, "stdin")
    else:
        try:  # open before anything is created, so a typo leaves no trace behind
            handle = open(args.events, "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            raise InputError("input.unreadable", f"{args.events}: {error.strerror}") from None
        records = read_lines(handle, args.events)
    runner = EmbeddedRunner(settings, _policy(args))
    try:
        summary = runner.process(records, progress=sys.stderr)
    finally:
        runner.close()
        if handle is not None:
            handle.close()
    return print_summary(summary, settings)


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    from projections import rebuild

    settings = _settings(args)
    stats = rebuild(settings.ledger_dir, settings.duckdb_path)
    print(f"rebuilt {settings.duckdb_path} from {settings.ledger_dir}: {stats}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="certify", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="all state lives here (env CERTIFY_DATA_DIR, "
                        "default ./data)")
    parser.add_argument("--key-dir", help="signing keys (env CERTIFY_KEY_DIR, default "
                        "~/.local/share/worker-certification/keys)")
    parser.add_argument("--partitions", type=int, help="ledger partitions (env "
                        "CERTIFY_PARTITIONS, default 4)")
    parser.add_argument("--policy-dir", help="policy files (default: the shipped policy)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="certify one task; print the analysis as JSON")
    p.add_argument("file", nargs="?", help="task JSON file, or - for stdin (default)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("authorize", help="may this worker do this operation now? exit 0/1")
    p.add_argument("file", nargs="?", help="request JSON file, or - for stdin (default)")
    p.add_argument("--url", default=os.environ.get("CERTIFY_URL"),
                   help="ask a running `certify serve` (env CERTIFY_URL) instead of the local "
                   "ledger")
    p.set_defaults(func=cmd_authorize)

    p = sub.add_parser("run", help="embedded pipeline: events -> decisions -> ledger -> DuckDB")
    p.add_argument("--events", help="JSON Lines file of events or tasks, or - for stdin "
                   "(default: the built-in sample stream)")
    p.add_argument("--count", type=int, default=2_000, help="records in the sample stream")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("projections", help="DuckDB projections")
    psub = p.add_subparsers(dest="action", required=True)
    psub.add_parser("rebuild", help="drop and rebuild every table from the ledger"
                    ).set_defaults(func=cmd_projections_rebuild)

    # Each area of the CLI lives in its own module and adds its own subcommands.
    from streams import cli_kafka, cli_ledger, cli_permits, cli_reports, cli_rollback, cli_serve

    for area in (cli_ledger, cli_permits, cli_kafka, cli_serve, cli_rollback, cli_reports):
        area.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except InputError as error:
        print(f"certify: {error.message}", file=sys.stderr)
        return EXIT_INPUT
    except PolicyError as error:
        print(f"certify: policy: {error}", file=sys.stderr)
        return EXIT_ENV
    except LedgerError as error:
        print(f"certify: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_INPUT if error.code == "ledger.bad_argument" else EXIT_ENV
    except ClientError as error:
        print(f"certify: server: {error.code}: {error.message}", file=sys.stderr)
        return EXIT_INPUT if 400 <= error.status < 500 else EXIT_ENV
    except CliError as error:
        print(f"certify: {error}", file=sys.stderr)
        return error.exit_code
    except (FileNotFoundError, PermissionError) as error:
        print(f"certify: {error}", file=sys.stderr)
        return EXIT_ENV
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `certify ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except Exception as error:  # the promise: one line, never a traceback (CERTIFY_DEBUG=1 shows it)
        if os.environ.get("CERTIFY_DEBUG"):
            raise
        print(f"certify: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ENV


if __name__ == "__main__":
    sys.exit(main())
