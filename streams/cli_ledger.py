"""`certify ledger ...` and `certify keys ...`: thin wrappers over ledger/."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from events import InputError
from ledger import (
    SigningKey,
    VerificationError,
    consistency_proof,
    export_jsonl,
    export_parquet,
    inclusion_proof,
    keys_generate,
    keys_rotate,
    tlog_proof,
    verify,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # keys never go inside the source tree


def _settings(args: argparse.Namespace):
    from streams.cli import _settings as settings

    return settings(args)


def _trusted(args: argparse.Namespace) -> list[str] | None:
    """Trust anchors: --trust VKEY (repeatable), else our own public key if we hold it."""
    if args.trust:
        return list(args.trust)
    settings = _settings(args)
    if settings.signing_key_path.exists():
        return [SigningKey.load(settings.signing_key_path).vkey()]
    return None  # trust on first use: the report says it is not anchored


def cmd_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = Path(args.since_checkpoint).read_text() if args.since_checkpoint else None
    try:
        report = verify(settings.ledger_dir, trusted=_trusted(args), partition=args.partition,
                        since_checkpoint=since, allow_unsigned_tail=args.allow_unsigned_tail)
    except VerificationError as error:
        d = error.diagnostics()
        print(f"certify: ledger NOT sound: partition {d.get('partition')}, first bad index "
              f"{d.get('index')}: {d.get('reason', error.code)}: {error.message}",
              file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for part in report.partitions:
        print(f"partition {part.partition}: {part.size} entries sound "
              f"(checked from {part.verified_from}), {part.checkpoints} checkpoints, "
              f"latest signed size {part.checkpoint_size}")
    anchor = "anchored to the given key" if report.anchored else (
        "NOT anchored (no trusted key given: trusted the genesis key on first use)")
    print(f"ledger sound: {report.entries} entries verified, {anchor}")
    return 0


def cmd_checkpoint(args: argparse.Namespace) -> int:
    settings = _settings(args)
    report = verify(settings.ledger_dir, trusted=_trusted(args), partition=args.partition,
                    allow_unsigned_tail=True)
    note = report.partitions[0].latest_checkpoint
    if note is None:
        print(f"certify: partition {args.partition} has no signed checkpoint yet",
              file=sys.stderr)
        return 1
    sys.stdout.write(note if note.endswith("\n") else note + "\n")
    return 0


def cmd_prove(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.kind == "inclusion":
        if args.index is None:
            raise InputError("input.usage", "--index: required for an inclusion proof")
        proof = inclusion_proof(settings.ledger_dir, args.partition, args.index,
                                tree_size=args.tree_size)
        if args.format == "tlog":
            sys.stdout.write(tlog_proof(settings.ledger_dir, args.partition, args.index))
            return 0
    else:
        if args.old is None:
            raise InputError("input.usage", "--old: required for a consistency proof")
        proof = consistency_proof(settings.ledger_dir, args.partition, args.old, args.new)
    json.dump(proof, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.format == "parquet":
        if not args.out:
            raise InputError("input.usage", "--out: a file is required for parquet")
        count = export_parquet(settings.ledger_dir, Path(args.out), partition=args.partition)
    elif args.out:
        count = export_jsonl(settings.ledger_dir, Path(args.out), partition=args.partition)
    else:
        count = export_jsonl(settings.ledger_dir, sys.stdout, partition=args.partition)
    print(f"exported {count} entries", file=sys.stderr)
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.out) if args.out else settings.signing_key_path
    key = keys_generate(path, args.name or settings.key_name, ledger_dir=settings.ledger_dir,
                        repo_dir=PROJECT_ROOT)
    print(key.vkey())
    print(f"private key written to {path} (0600)", file=sys.stderr)
    return 0


def cmd_keys_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.key) if args.key else settings.signing_key_path
    print(SigningKey.load(path).vkey())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """New key; the rotation is a ledger event on every partition, signed by the outgoing key.
    Crash-safe: an interrupted rotation resumes from the staged key on the next attempt."""
    settings = _settings(args)
    result = keys_rotate(settings.signing_key_path, settings.ledger_dir, origin=settings.origin)
    print(result["new"])
    print(f"rotated: {result['old']} -> {result['new']}; old key kept at "
          f"{result['retired_file']}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    ledger = sub.add_parser("ledger", help="verify, checkpoint, prove, export")
    lsub = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = lsub.add_parser("verify", help="check every hash, link and signature; exit 1 if not sound")
    p.add_argument("--partition", type=int)
    p.add_argument("--since-checkpoint", metavar="FILE",
                   help="a checkpoint kept from an earlier audit: verify from there on")
    p.add_argument("--trust", action="append", metavar="VKEY",
                   help="verifier key to trust (name+keyid+base64); default: our own key")
    p.add_argument("--allow-unsigned-tail", action="store_true",
                   help="accept entries after the last checkpoint (a ledger being written)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = lsub.add_parser("checkpoint", help="the latest signed checkpoint, as text")
    p.add_argument("--partition", type=int, default=0)
    p.add_argument("--trust", action="append", metavar="VKEY")
    p.set_defaults(func=cmd_checkpoint)

    p = lsub.add_parser("prove", help="inclusion or consistency proof (test-vector JSON fields)")
    p.add_argument("kind", choices=["inclusion", "consistency"])
    p.add_argument("--partition", type=int, required=True)
    p.add_argument("--index", type=int, help="entry index (inclusion)")
    p.add_argument("--tree-size", type=int, help="prove against this size (default: latest)")
    p.add_argument("--old", type=int, help="older tree size (consistency)")
    p.add_argument("--new", type=int, help="newer tree size (default: latest)")
    p.add_argument("--format", choices=["json", "tlog"], default="json",
                   help="tlog: the C2SP tlog-proof text form (inclusion)")
    p.set_defaults(func=cmd_prove)

    p = lsub.add_parser("export", help="every entry as JSON lines or Parquet")
    p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    p.add_argument("--partition", type=int)
    p.add_argument("--out", help="file to write (jsonl default: stdout)")
    p.set_defaults(func=cmd_export)

    keys = sub.add_parser("keys", help="generate, rotate, show the ledger signing key")
    ksub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ksub.add_parser("generate", help="a new Ed25519 signing key (0600, outside the repo)")
    p.add_argument("--name", help="key name (default CERTIFY_KEY_NAME)")
    p.add_argument("--out", help="where to write it (default: the key dir)")
    p.set_defaults(func=cmd_keys_generate)
    p = ksub.add_parser("show", help="print the verifier key: name+keyid+base64key")
    p.add_argument("--key", help="key file (default: the ledger signing key)")
    p.set_defaults(func=cmd_keys_show)
    ksub.add_parser("rotate", help="new key; the rotation is recorded in the ledger, signed by "
                    "the outgoing key").set_defaults(func=cmd_keys_rotate)
