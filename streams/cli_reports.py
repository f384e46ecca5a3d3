"""`certify report FRAMEWORK` and `certify metrics`: compliance reports and system metrics.

Locally (the default) the projections are first brought up to date with the ledger (skip with
--no-catch-up), then read through a read-only DuckDB connection; the report is cut at the
ledger's signed checkpoints, registered in <data dir>/reports/ and written to --out (or
stdout). While `certify serve` runs it holds the DuckDB file: use --url to have the server make
the report (POST /reports) and download it.

Exit codes: 0 done; 2 bad arguments; 3 environment (no projections, DuckDB file held by another
process, ledger or server unreachable, a checkpoint or proof that does not verify).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_INPUT, EXIT_ENV = 0, 2, 3
FRAMEWORK_NAMES = ("sox", "soc2", "hipaa", "pci", "gdpr")


class Problem(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_ENV) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from reports import EvidenceError, ReportError
        from reports.period import PeriodError

        try:
            return command(args)
        except Problem as problem:
            print(f"certify: {problem}", file=sys.stderr)
            return problem.exit_code
        except PeriodError as error:
            print(f"certify: {error}", file=sys.stderr)
            return EXIT_INPUT
        except (ReportError, EvidenceError) as error:
            print(f"certify: {error.code}: {error.message}", file=sys.stderr)
            return EXIT_INPUT if error.code == "reports.bad_argument" else EXIT_ENV
    return run


def register(sub: argparse._SubParsersAction) -> None:
    from reports.render import CSV_SECTIONS, FORMATS

    p = sub.add_parser("report", help="compliance report (SOX, SOC 2, HIPAA, PCI DSS, GDPR) with "
                       "the ledger evidence behind every line")
    p.add_argument("framework", choices=(*FRAMEWORK_NAMES, "verify"),
                   help="the framework, or `verify FILE`: check a report file's signature and "
                   "that the ledger records it")
    p.add_argument("file", nargs="?", help="verify: the report file (its JSON rendering)")
    p.add_argument("--from", dest="start", help="first day (YYYY-MM-DD) or ISO time (default: "
                   "30 days before --to)")
    p.add_argument("--to", dest="end", help="last day, included (YYYY-MM-DD), or ISO time, "
                   "excluded (default: today)")
    p.add_argument("--format", choices=FORMATS, default="html")
    p.add_argument("--section", choices=CSV_SECTIONS, default="changes",
                   help="csv only: which table (default: changes, the population)")
    p.add_argument("--out", help="write here (default: stdout)")
    p.add_argument("--seed", help="sample seed (default: derived from the signed checkpoints)")
    p.add_argument("--sample-size", type=int, help="sample size (default: the framework's, 25)")
    p.add_argument("--proofs", choices=("all", "tested", "none"), default="all",
                   help="inclusion proofs for every line (all), only for the sample and the "
                   "exceptions (tested), or none")
    p.add_argument("--verify-signatures", action="store_true",
                   help="re-verify every approval signature against the approver registry")
    p.add_argument("--as-of", help="judge due dates (post-incident reviews) at this time "
                   "(default: now)")
    p.add_argument("--trusted-key", action="append", default=[],
                   help="a ledger verifier key (name+id+key) the checkpoints must chain to "
                   "(default: the local ledger signing key's, when it is there)")
    p.add_argument("--no-register", action="store_true",
                   help="do not register the report nor record it in the ledger (no "
                   "consistency chain; still signed when the ledger key is here)")
    p.add_argument("--ledger", help="verify: the ledger folder (default: the data dir's; "
                   "'none' checks the signature against --trusted-key only)")
    p.add_argument("--json", action="store_true", help="verify: the verdict as JSON")
    p.add_argument("--no-catch-up", action="store_true",
                   help="read the projections as they are (do not project new entries first)")
    p.add_argument("--db", help="read this DuckDB file (e.g. a published snapshot) instead of "
                   "the data dir's")
    p.add_argument("--url", default=os.environ.get("CERTIFY_URL"),
                   help="have a running `certify serve` make the report (env CERTIFY_URL)")
    p.set_defaults(func=guarded(cmd_report))

    p = sub.add_parser("metrics", help="system metrics: certification accuracy, approval time "
                       "and success rate by level, violations, over/under-certification")
    p.add_argument("--format", choices=("text", "json", "prometheus"), default="text")
    p.add_argument("--from", dest="start", help="first day or ISO time (default: everything)")
    p.add_argument("--to", dest="end", help="last day (included) or ISO time (default: now)")
    p.add_argument("--no-catch-up", action="store_true")
    p.add_argument("--db", help="read this DuckDB file instead of the data dir's")
    p.add_argument("--url", default=os.environ.get("CERTIFY_URL"),
                   help="read GET /metrics of a running server (prometheus format)")
    p.set_defaults(func=guarded(cmd_metrics))


# --- local data -------------------------------------------------------------------------------


def open_projections(args: argparse.Namespace) -> tuple[Any, Any]:
    """(settings, read-only DuckDB connection), after catching up unless told not to."""
    import duckdb

    from projections import ProjectionError, connect_readonly, project
    from streams.cli import _settings

    settings = _settings(args)
    db = Path(args.db) if args.db else settings.duckdb_path
    try:
        if not args.db and not args.no_catch_up and settings.ledger_dir.is_dir():
            project(settings.ledger_dir, db)
        if not db.exists():
            raise Problem(f"{db}: no projections yet (certify run / certify projections "
                          "rebuild)")
        return settings, connect_readonly(db)
    except duckdb.IOException as error:
        raise Problem(f"{db}: held by another process ({str(error).splitlines()[0]}); while "
                      "`certify serve` runs, use --url") from None
    except ProjectionError as error:
        raise Problem(f"{error.code}: {error}") from None


def _trusted(args: argparse.Namespace, settings: Any) -> list[str]:
    from ledger import LedgerError, SigningKey

    keys = list(args.trusted_key)
    if not keys and settings.signing_key_path.exists():
        with contextlib.suppress(LedgerError, OSError, ValueError):
            keys.append(SigningKey.load(settings.signing_key_path).vkey())
    return keys


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from reports import Registry, ReportContext, build_report, framework, render
    from reports.period import parse_moment, parse_period
    from rules.policy import PolicyError
    from streams.cli import _policy

    if args.framework == "verify":
        return cmd_verify(args)
    if args.file:
        raise Problem(f"unexpected argument {args.file!r} (only `report verify` takes a file)",
                      EXIT_INPUT)
    if args.sample_size is not None and args.sample_size < 0:
        raise Problem("--sample-size: 0 or more", EXIT_INPUT)
    if args.url:
        return _remote_report(args)
    now = datetime.now(UTC)
    start, end = parse_period(args.start, args.end, now)
    try:
        policy = _policy(args)
    except PolicyError as error:
        raise Problem(f"policy: {error}") from None
    settings, con = open_projections(args)
    try:
        ledger_dir = settings.ledger_dir if settings.ledger_dir.is_dir() else None
        context = ReportContext(
            governance=policy.governance, policy_version=policy.version,
            policy_sha256=policy.sha256, ledger_dir=ledger_dir,
            registry=None if args.no_register else Registry(settings.data_dir / "reports"),
            trusted=_trusted(args, settings) if ledger_dir else [],
            now=parse_moment(args.as_of, what="--as-of") if args.as_of else now,
            seed=args.seed, sample_size=args.sample_size, proofs=args.proofs,
            verify_signatures=args.verify_signatures, lazy=True)
        if ledger_dir is not None:
            context.signer = _signer(settings)
            if context.signer is not None and not args.no_register:
                context.record = _recorder(settings, context.signer)
                context.generated_by = _who()
        document = build_report(con, framework(args.framework), start, end, context=context)
    finally:
        con.close()
    if context.record is not None and not args.db and not args.no_catch_up:
        _catch_up(settings)  # the report.generated entry reaches the projections now
    if args.format == "json" and context.json_bytes is not None:
        _write(context.json_bytes.decode("utf-8"), args.out)  # the bytes signed and registered
    else:
        _write(render(document, args.format, section=args.section), args.out)
    _say(document, args.out)
    return EXIT_OK


def _signer(settings: Any) -> Any:
    """The ledger's signing key, when this host has it (else the report is not signed)."""
    from ledger import LedgerError, SigningKey

    if not settings.signing_key_path.exists():
        print(f"certify: no ledger signing key at {settings.signing_key_path}: the report is "
              "not signed", file=sys.stderr)
        return None
    try:
        return SigningKey.load(settings.signing_key_path)
    except (LedgerError, OSError, ValueError) as error:
        raise Problem(f"ledger signing key {settings.signing_key_path}: {error}") from None


def _who() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"certify report (cli, {user}@{socket.gethostname()})"


def _recorder(settings: Any, signer: Any) -> Callable[[Any], int | None]:
    """Append report.generated to the local ledger (its partition chosen as every event's, by
    subject) and sign a checkpoint over it, so the report can be verified at once."""
    def record(event: Any) -> int | None:
        from ledger import Ledger, LedgerError, partition_for
        from reports.evidence import partitions
        from streams.embedded import ledger_record

        count = partitions(settings.ledger_dir)
        try:
            ledger = Ledger.open(settings.ledger_dir, signer=signer, origin=settings.origin,
                                 partitions=count)
        except LedgerError as error:
            if error.code == "ledger.locked":
                raise Problem(f"{settings.ledger_dir}: the ledger is held by another process "
                              "(while `certify serve` runs, use --url)") from None
            raise
        try:
            result = ledger.append(partition_for(event.subject, count), ledger_record(event))
            ledger.checkpoint_now()
        finally:
            ledger.close()
        return result.index
    return record


def _catch_up(settings: Any) -> None:
    import duckdb

    from projections import ProjectionError, project

    with contextlib.suppress(duckdb.Error, ProjectionError, OSError):
        project(settings.ledger_dir, settings.duckdb_path)


def cmd_verify(args: argparse.Namespace) -> int:
    """`certify report verify FILE`: 0 verified, 1 not verified, 2/3 bad input/environment."""
    from reports.signature import verify_report

    if not args.file:
        raise Problem("report verify: give the report file", EXIT_INPUT)
    try:
        data = Path(args.file).read_bytes()
    except OSError as error:
        raise Problem(f"{args.file}: {error.strerror or error}", EXIT_INPUT) from None
    from streams.cli import _settings

    settings = _settings(args)
    ledger_dir: Path | None = None
    if args.ledger != "none":
        ledger_dir = Path(args.ledger) if args.ledger else settings.ledger_dir
        if not ledger_dir.is_dir():
            raise Problem(f"{ledger_dir}: no ledger here (give --ledger DIR, or --ledger none "
                          "with --trusted-key)")
    verdict = verify_report(data, ledger_dir=ledger_dir, trusted=_trusted(args, settings))
    if args.json:
        sys.stdout.write(json.dumps(verdict.to_dict(), indent=2) + "\n")
    else:
        for c in verdict.checks:
            print(f"{'ok  ' if c['passed'] else 'FAIL'} {c['check']}: {c['detail']}")
        print(f"report {verdict.report_id or '?'}: "
              f"{'VERIFIED' if verdict.verified else 'NOT VERIFIED'}")
    return EXIT_OK if verdict.verified else 1


def _say(document: dict[str, Any], out: str | None) -> None:
    consistency = document.get("consistency") or {}
    verdict = {True: "verified", False: "FAILED", None: "n/a (first report)"}[
        consistency.get("verified")] if consistency else "n/a (not registered)"
    signature = document.get("signature") or {}
    where = signature.get("ledger") or {}
    signed = (f"signed by key {signature['key_id']}" + (
        f", recorded in the ledger at p{where['partition']}#{where['index']}" if where else
        ", not recorded in the ledger")) if signature else "not signed"
    print(f"report {document['report_id']}: {document['population']['count']} changes, "
          f"{document['exceptions']['count']} exceptions, sample {document['sample']['size']}"
          f"; consistency with the previous report: {verdict}; {signed}"
          + (f"; written to {out}" if out else ""), file=sys.stderr)


def _http(method: str, url: str, body: Any = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read())["error"]
            message = f"{detail['code']}: {detail['message']}"
        except (ValueError, KeyError, TypeError):
            message = str(error)
        raise Problem(f"{url}: {message}",
                      EXIT_INPUT if 400 <= error.code < 500 else EXIT_ENV) from None
    except (urllib.error.URLError, OSError) as error:
        raise Problem(f"{url}: {getattr(error, 'reason', error)}") from None


def _remote_report(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    body = {"framework": args.framework, "from": args.start, "to": args.end, "seed": args.seed,
            "sample_size": args.sample_size, "proofs": args.proofs,
            "verify_signatures": args.verify_signatures, "as_of": args.as_of}
    made = json.loads(_http("POST", f"{base}/reports",
                            {k: v for k, v in body.items() if v is not None}))
    query = f"?section={urllib.parse.quote(args.section)}" if args.format == "csv" else ""
    text = _http("GET", f"{base}{made['links'][args.format]}{query}").decode("utf-8")
    _write(text, args.out)
    document = json.loads(_http("GET", f"{base}{made['links']['json']}"))
    _say(document, args.out)
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:

    from reports import compute_metrics, to_prometheus, to_text
    from reports.period import parse_moment
    from streams.cli import _policy

    if args.url:
        if args.format != "prometheus":
            raise Problem("--url gives the server's GET /metrics: use --format prometheus",
                          EXIT_INPUT)
        sys.stdout.write(_http("GET", args.url.rstrip("/") + "/metrics").decode())
        return EXIT_OK
    start = parse_moment(args.start, what="--from") if args.start else None
    end = parse_moment(args.end, end=True, what="--to") if args.end else None
    _, con = open_projections(args)
    try:
        metrics = compute_metrics(con, governance=_policy(args).governance, start=start,
                                  end=end)
    finally:
        con.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(metrics, indent=2) + "\n")
    elif args.format == "prometheus":
        sys.stdout.write(to_prometheus(metrics))
    else:
        sys.stdout.write(to_text(metrics))
    return EXIT_OK
