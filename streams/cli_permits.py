"""`certify permit request|renew|approve|deny|revoke|show|list`, `certify approver keygen|add`.

Permit commands talk to a running server with --url (env CERTIFY_URL), or else work on the
local ledger directly (embedded: they take the ledger's single-writer lock, so not while
`certify serve` runs on the same data dir). Approvals are signed here, with the approver's
private key (--key FILE), over the request hash recomputed from the request shown (with
--renewal: over the hash of the pending renewal's document, recomputed from the document shown).

Exit codes: 0 done; 1 refused (the refusal's code and reason on stderr); 2 bad input;
3 environment (no key, ledger locked, server unreachable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_APPROVER_KEY_DIR = Path("~/.local/share/worker-certification/approvers")
EXIT_OK, EXIT_FAIL, EXIT_ENV = 0, 1, 3  # as in streams.cli


class Problem(Exception):
    """One line for stderr and an exit code (handled here: this module may run under
    `python -m streams.cli`, where streams.cli's own exception classes are another copy)."""

    def __init__(self, message: str, exit_code: int = EXIT_ENV) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except Problem as problem:
            print(f"certify: {problem}", file=sys.stderr)
            return problem.exit_code
    return run


def register(sub: argparse._SubParsersAction) -> None:
    permit = sub.add_parser("permit", help="request, approve, deny, revoke, show, list permits")
    psub = permit.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=os.environ.get("CERTIFY_URL"),
                       help="a running `certify serve` (env CERTIFY_URL); default: local ledger")
        return p

    p = common(psub.add_parser("request", help="request a permit for a certified task"))
    p.add_argument("--file", help="the whole request as JSON (fields below override it)")
    p.add_argument("--task-id")
    p.add_argument("--decision-event-id")
    p.add_argument("--permit-type")
    p.add_argument("--permit-id")
    p.add_argument("--requested-by")
    p.add_argument("--worker")
    p.add_argument("--operations", help="comma-separated")
    p.add_argument("--services", help="comma-separated")
    p.add_argument("--environment")
    p.add_argument("--data-classes", help="comma-separated")
    p.add_argument("--regions", help="comma-separated")
    p.add_argument("--not-before", help="ISO-8601 (default now)")
    p.add_argument("--not-after", help="ISO-8601 (default: the permit type's duration)")
    p.add_argument("--justification")
    p.add_argument("--rollback-plan", help="JSON, or @FILE")
    p.set_defaults(func=guarded(cmd_request))

    for action, decision in (("approve", "approve"), ("deny", "deny"), ("revoke", "revoke")):
        p = common(psub.add_parser(action, help=f"{action} a permit (signed with --key)"))
        p.add_argument("permit_id")
        p.add_argument("--approver", required=True, help="your approver id")
        p.add_argument("--role", required=True, help="the role you act in")
        p.add_argument("--key", required=True, help="your private key file (certify approver "
                       "keygen)")
        p.add_argument("--comments", default="")
        if action != "revoke":
            p.add_argument("--renewal", action="store_true",
                           help="decide on the permit's pending renewal, not the permit")
        p.set_defaults(func=guarded(cmd_sign), decision=decision)

    p = common(psub.add_parser("renew", help="ask to extend a permit in force (the requester; "
                               "standard/advanced renewals then need their approvers again)"))
    p.add_argument("permit_id")
    p.add_argument("--requested-by", required=True)
    p.add_argument("--extension-hours", type=float, required=True)
    p.add_argument("--justification", required=True)
    p.set_defaults(func=guarded(cmd_renew))

    p = common(psub.add_parser("show", help="one permit as JSON"))
    p.add_argument("permit_id")
    p.set_defaults(func=guarded(cmd_show))

    p = common(psub.add_parser("list", help="permits by state (pending = awaiting approvals)"))
    p.add_argument("--state", default=None)
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=guarded(cmd_list))

    approver = sub.add_parser("approver", help="approver keys and the approver registry")
    asub = approver.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = asub.add_parser("keygen", help="new Ed25519 key: private key to a 0600 file outside "
                        "the repository, public key printed")
    p.add_argument("approver_id")
    p.add_argument("--out", help=f"private key file (default {DEFAULT_APPROVER_KEY_DIR}/ID.key)")
    p.set_defaults(func=guarded(cmd_keygen))
    p = asub.add_parser("add", help="register an approver's public key and roles in the ledger "
                        "(an operator action on the local ledger)")
    p.add_argument("approver_id")
    p.add_argument("--role", action="append", required=True, help="repeat for several roles")
    p.add_argument("--public-key", required=True, help="base64 raw Ed25519 public key")
    p.add_argument("--valid-from", help="ISO-8601 (default now)")
    p.add_argument("--valid-until", help="ISO-8601 (default: no end)")
    p.set_defaults(func=guarded(cmd_add))


# --- backends: the same operations over HTTP or on the local ledger ----------------------------


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Remote:
    def __init__(self, url: str) -> None:
        from streams.client import Client

        self.client = Client(url)

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        from streams.client import ClientError

        try:
            return fn(*args)
        except ClientError as error:
            if error.status == 0:
                raise Problem(error.message) from None
            if error.status == 400:
                from events import InputError

                raise InputError(error.code, error.message) from None
            raise Refused(error.code, error.message) from None

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.client.request_permit, body)

    def view(self, permit_id: str) -> dict[str, Any]:
        return self._call(self.client.permit, permit_id)

    def query(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        return self._call(self.client.permits, state, limit)

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.client.send_signed, body)

    def renew(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.client.renew, body["permit_id"], body["requested_by"],
                          body["extension_hours"], body["justification"])

    def close(self) -> None:
        return None


class Local:
    def __init__(self, args: argparse.Namespace) -> None:
        from streams.cli import _policy, _settings
        from streams.embedded import EmbeddedRunner

        self.runner = EmbeddedRunner(_settings(args), _policy(args))
        self.pipe = self.runner.pipeline

    def _result(self, outcome: Any, permit_id: str) -> dict[str, Any]:
        from events import InputError

        if outcome.rejected is not None:
            raise InputError(outcome.rejected.code, outcome.rejected.message)
        if outcome.refusal is not None:
            raise Refused(outcome.refusal.code, outcome.refusal.message)
        return self.view(permit_id)

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        from events import Envelope
        from streams.web import Refused as WebRefused
        from streams.web import build_request

        now = self.runner.clock()
        try:
            req = build_request(body, self.pipe, now)
        except WebRefused as refused:
            raise Refused(refused.refusal.code, refused.refusal.message) from None
        envelope = Envelope(type="permit.requested", occurred_at=now, producer="cli",
                            subject=req.permit_id, payload=req.model_dump(mode="json"))
        return self._result(self.pipe.handle_event(envelope, now, source="cli"), req.permit_id)

    def view(self, permit_id: str) -> dict[str, Any]:
        view = self.pipe.permits.view(permit_id)
        if view is None:
            raise Refused("permit.unknown", f"no permit {permit_id!r}")
        return view

    def query(self, state: str | None, limit: int) -> list[dict[str, Any]]:
        return self.pipe.permits.query(state, limit)

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        from events import Envelope
        from events.payloads import ApprovalSigned
        from streams.permit_service import parse_model

        now = self.runner.clock()
        approval = parse_model(ApprovalSigned, body)
        envelope = Envelope(type="approval.signed", occurred_at=now, producer="cli",
                            subject=approval.permit_id, payload=approval.model_dump(mode="json"))
        return self._result(self.pipe.handle_event(envelope, now, source="cli"),
                            approval.permit_id)

    def renew(self, body: dict[str, Any]) -> dict[str, Any]:
        from events import Envelope
        from events.payloads import PermitRenewalRequested
        from streams.permit_service import parse_model

        now = self.runner.clock()
        renewal = parse_model(PermitRenewalRequested, body)
        envelope = Envelope(type="permit.renewal_requested", occurred_at=now, producer="cli",
                            subject=renewal.permit_id, payload=renewal.model_dump(mode="json"))
        return self._result(self.pipe.handle_event(envelope, now, source="cli"),
                            renewal.permit_id)

    def close(self) -> None:
        self.runner.close()  # checkpoints what is unsigned


def _backend(args: argparse.Namespace) -> Remote | Local:
    return Remote(args.url) if args.url else Local(args)


def _run(args: argparse.Namespace, action: Callable[[Remote | Local], Any]) -> int:
    from ledger import LedgerError
    from streams.cli import _print_json

    try:
        backend = _backend(args)
    except LedgerError as error:
        raise Problem(f"ledger: {error} (is `certify serve` running? use --url)") from None
    try:
        _print_json(action(backend))
        return EXIT_OK
    except Refused as refused:
        print(f"certify: refused ({refused.code}): {refused.message}", file=sys.stderr)
        return EXIT_FAIL
    finally:
        backend.close()


# --- permit commands ----------------------------------------------------------------------------


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _json_arg(value: str, what: str) -> Any:
    from events import InputError, decode_json

    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise InputError("input.unreadable", f"{what}: {error.strerror}") from None
    return decode_json(value)


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    from events import InputError

    body: dict[str, Any] = _json_arg(f"@{args.file}", "--file") if args.file else {}
    if not isinstance(body, dict):
        raise InputError("input.schema", "--file: expected a JSON object")
    scope = dict(body.get("scope") or {})
    for flag, key in (("task_id", "task_id"), ("decision_event_id", "decision_event_id"),
                      ("permit_type", "permit_type"), ("permit_id", "permit_id"),
                      ("requested_by", "requested_by"), ("worker", "worker_id"),
                      ("justification", "justification")):
        if getattr(args, flag) is not None:
            body[key] = getattr(args, flag)
    for flag, key in (("operations", "operations"), ("services", "services"),
                      ("data_classes", "data_classes"), ("regions", "regions")):
        if getattr(args, flag) is not None:
            scope[key] = _csv(getattr(args, flag))
    for flag in ("environment", "not_before", "not_after"):
        if getattr(args, flag) is not None:
            scope[flag] = getattr(args, flag)
    if args.rollback_plan is not None:
        body["rollback_plan"] = _json_arg(args.rollback_plan, "--rollback-plan")
    body["scope"] = scope
    return body


def cmd_request(args: argparse.Namespace) -> int:
    body = request_body(args)
    return _run(args, lambda backend: backend.request(body))


def cmd_sign(args: argparse.Namespace) -> int:
    from streams.client import load_private_key, signable_sha256

    try:
        key = load_private_key(args.key)
    except (OSError, ValueError, TypeError) as error:
        raise Problem(f"--key {args.key}: {error}") from None

    def action(backend: Remote | Local) -> dict[str, Any]:
        from events.signing import sign_approval

        view = backend.view(args.permit_id)
        if getattr(args, "renewal", False):
            sha = _renewal_sha256(view)
            document = view["pending_renewal"]["document"]
            print(f"signing {args.decision} of renewal {document['renewal']} of "
                  f"{view['permit_type']} permit {view['permit_id']} (ends "
                  f"{document['not_after']}, +{document['extension_hours']:g} h asked: "
                  f"{document['justification']}) as {args.approver} ({args.role})",
                  file=sys.stderr)
        else:
            try:
                sha = signable_sha256(view)
            except ValueError as error:
                raise Refused("approval.request_unverifiable", str(error)) from None
            print(f"signing {args.decision} of {view['permit_type']} permit "
                  f"{view['permit_id']} (Level {view['level']}, {view['state']}): "
                  f"{', '.join(view['scope']['operations'])} in "
                  f"{view['scope']['environment']} as {args.approver} ({args.role})",
                  file=sys.stderr)
        body = sign_approval(key, permit_id=args.permit_id, request_sha256=sha,
                             decision=args.decision, decided_at=datetime.now(UTC),
                             approver_id=args.approver, approver_role=args.role)
        return backend.send({**body, "comments": args.comments})

    return _run(args, action)


def _renewal_sha256(view: dict[str, Any]) -> str:
    """The pending renewal's hash, recomputed from the document shown (never merely told)."""
    from rules.permits import renewal_sha256

    pending = view.get("pending_renewal")
    if not pending:
        raise Refused("approval.no_pending_renewal",
                      f"permit {view['permit_id']} has no renewal waiting for approval")
    sha = renewal_sha256(pending["document"])
    if sha != pending["request_sha256"]:
        raise Refused("approval.request_unverifiable",
                      f"permit {view['permit_id']}: the renewal hash the server shows is not "
                      "the hash of the renewal it shows; refusing to sign")
    return sha


def cmd_renew(args: argparse.Namespace) -> int:
    body = {"permit_id": args.permit_id, "requested_by": args.requested_by,
            "extension_hours": args.extension_hours, "justification": args.justification}
    return _run(args, lambda backend: backend.renew(body))


def cmd_show(args: argparse.Namespace) -> int:
    return _run(args, lambda backend: backend.view(args.permit_id))


def cmd_list(args: argparse.Namespace) -> int:
    return _run(args, lambda backend: backend.query(args.state, args.limit))


# --- approver commands ----------------------------------------------------------------------------


def _inside_git_repository(path: Path) -> Path | None:
    for parent in [path.parent, *path.parent.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from events.signing import key_id_for, public_key_of

    path = Path(args.out or DEFAULT_APPROVER_KEY_DIR / f"{args.approver_id}.key").expanduser()
    path = path.absolute()
    repo = _inside_git_repository(path)
    if repo is not None:
        raise Problem(f"{path}: refusing to write a private key inside the git repository "
                      f"{repo}; choose a path outside it (--out)")
    if path.exists():
        raise Problem(f"{path}: exists; not overwriting a key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    public = public_key_of(key)
    print(f"private key: {path} (0600; keep it there)", file=sys.stderr)
    print(json.dumps({"approver_id": args.approver_id, "public_key": public,
                      "key_id": key_id_for(public)}))
    return EXIT_OK


def _time(value: str | None, what: str) -> datetime | None:
    from events import InputError

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("input.schema", f"{what}: not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise InputError("input.schema", f"{what}: needs a time zone (Z for UTC)")
    return moment


def cmd_add(args: argparse.Namespace) -> int:
    from events import Envelope, InputError
    from events.payloads import ApproverRegistered
    from events.signing import SigningError, key_id_for
    from ledger import LedgerError
    from streams.cli import _print_json, _policy, _settings
    from streams.embedded import EmbeddedRunner
    from streams.permit_service import parse_model

    try:
        key_id = key_id_for(args.public_key)
    except SigningError as error:
        raise InputError("input.schema", f"--public-key: {error}") from None
    try:
        runner = EmbeddedRunner(_settings(args), _policy(args))
    except LedgerError as error:
        raise Problem(f"ledger: {error} (approvers are added while `certify serve` is "
                      "stopped)") from None
    try:
        now = runner.clock()
        payload = parse_model(ApproverRegistered, {
            "approver_id": args.approver_id, "roles": args.role, "public_key": args.public_key,
            "valid_from": _time(args.valid_from, "--valid-from") or now,
            "valid_until": _time(args.valid_until, "--valid-until")})
        envelope = Envelope(type="approver.registered", occurred_at=now, producer="operator",
                            subject=args.approver_id, payload=payload.model_dump(mode="json"))
        runner.pipeline.record(envelope)
    finally:
        runner.close()
    _print_json({"approver_id": args.approver_id, "roles": args.role, "key_id": key_id,
                 "event_id": envelope.event_id})
    return EXIT_OK
