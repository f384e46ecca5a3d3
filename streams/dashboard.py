"""The dashboard, compliance reports and Prometheus metrics, served by the API's own aiohttp app
(`streams.web.create_app` calls `register`).

    GET  /                                   -> /dashboard/
    GET  /dashboard/                         the page (static/index.html, dashboard.js, .css)
    GET  /dashboard/static/{file}            its script and style sheet
    GET  /dashboard/api/overview             ledger, keys, checkpoints, projections, frameworks
    GET  /dashboard/api/audit?...            audit log entries with their inclusion proofs
    GET  /dashboard/api/metrics?from=&to=    the system metrics as JSON (charts)
    POST /reports                            make (and register) a report: {framework, from, to,
                                             seed?, sample_size?, proofs?, verify_signatures?}
    GET  /reports                            the report registry
    GET  /reports/{report_id}.{json|html|csv|md}[?section=]   a registered report
    GET  /metrics                            Prometheus text format

Approvals are not here: the page signs in the browser and posts to the API's own
`POST /v1/permits/{id}/approvals` (the server never sees a private key).

Where the data comes from: in embedded mode (`certify serve`) the Pipeline records through an
EmbeddedRunner, whose projector connection (cursors), ledger folder and data folder the
dashboard uses; another host calls `configure(app, ...)` after `create_app`. Without a
source, the data routes answer 503 `dashboard.no_data`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from aiohttp import web

from events import InputError, format_time
from reports import (
    FORMATS,
    FRAMEWORKS,
    CheckpointBook,
    EvidenceError,
    Registry,
    ReportContext,
    ReportError,
    build_report,
    compute_metrics,
    framework,
    render,
    to_prometheus,
)
from reports.evidence import Prover, choose_checkpoints, leaf_data, origin_of
from reports.period import PeriodError, parse_moment, parse_period

log = logging.getLogger("certify.dashboard")
STATIC = Path(__file__).parent / "static"
AUDIT_MAX = 200
BOOK_EVERY_S = 1.0
CONTENT_TYPES = {"json": "application/json", "html": "text/html", "csv": "text/csv",
                 "md": "text/markdown"}


class Unavailable(Exception):
    """The dashboard cannot answer now (no data source, a query failed): 503."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(code: str, message: str, status: int) -> web.Response:
    """The API's error shape (streams.web.error_response), for the statuses we choose here."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def guarded(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
            ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Unavailable as error:
            return _error(error.code, error.message, 503)
        except (ReportError, EvidenceError) as error:
            status = 400 if error.code == "reports.bad_argument" else 503
            return _error(error.code, error.message, status)
    return run


@dataclass
class Source:
    """What the dashboard reads: a DuckDB reader, the ledger folder, the data folder."""

    reader: Callable[[], duckdb.DuckDBPyConnection] | None = None
    ledger_dir: Path | None = None
    data_dir: Path | None = None
    trusted: list[str] = field(default_factory=list)
    book: CheckpointBook = field(default_factory=CheckpointBook)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self.reader is None:
            raise Unavailable("dashboard.no_data", "this server has no projections to read "
                              "(run it with `certify serve`)")
        return self.reader()

    @property
    def registry(self) -> Registry | None:
        return Registry(self.data_dir / "reports") if self.data_dir else None


SOURCE = web.AppKey("dashboard_source", Source)
SERVICE = web.AppKey("dashboard_service", object)  # the Pipeline (policy, permits, clock)


def _discover(service: Any) -> Source:
    """The embedded runner behind the pipeline, if there is one (certify serve)."""
    owner = getattr(getattr(service, "_record", None), "__self__", None)
    projector = getattr(owner, "projector", None)
    settings = getattr(owner, "settings", None)
    if projector is None or settings is None:
        return Source()
    trusted = []
    ledger = getattr(owner, "ledger", None)
    with contextlib.suppress(Exception):
        trusted.append(ledger.signer.vkey())  # type: ignore[union-attr]
    return Source(reader=projector.cursor, ledger_dir=Path(settings.ledger_dir),
                  data_dir=Path(settings.data_dir), trusted=trusted)


def configure(app: web.Application, *, reader: Callable[[], duckdb.DuckDBPyConnection] | None,
              ledger_dir: Path | None, data_dir: Path | None,
              trusted: list[str] | None = None) -> None:
    """Point the dashboard at its data (hosts other than the embedded runner)."""
    app[SOURCE] = Source(reader=reader, ledger_dir=ledger_dir, data_dir=data_dir,
                         trusted=list(trusted or []))


def register(app: web.Application, service: Any) -> None:
    """Add the dashboard, report and metrics routes to the API app."""
    app[SOURCE] = _discover(service)
    app[SERVICE] = service
    app.router.add_get("/", redirect)
    app.router.add_get("/dashboard", redirect)
    app.router.add_get("/dashboard/", index)
    app.router.add_get("/dashboard/static/{name}", static)
    app.router.add_get("/dashboard/api/overview", guarded(overview))
    app.router.add_get("/dashboard/api/audit", guarded(audit))
    app.router.add_get("/dashboard/api/metrics", guarded(metrics_json))
    app.router.add_post("/reports", guarded(make_report))
    app.router.add_get("/reports", guarded(list_reports))
    app.router.add_get("/reports/{name}", guarded(get_report))
    app.router.add_get("/metrics", guarded(prometheus))
    app.cleanup_ctx.append(_book_keeper)


async def redirect(_: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


async def _book_keeper(app: web.Application) -> AsyncIterator[None]:
    """Remember recent checkpoints, so a report can use one the projections have reached."""
    source = app[SOURCE]

    async def loop() -> None:
        while True:
            if source.ledger_dir is not None:
                with contextlib.suppress(Exception):
                    source.book.observe(source.ledger_dir)
            await asyncio.sleep(BOOK_EVERY_S)

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _source(request: web.Request) -> Source:
    return request.app[SOURCE]


def _policy(request: web.Request) -> Any:
    return request.app[SERVICE].policy


# --- the page ----------------------------------------------------------------------------------


async def index(_: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html",
                        headers={"Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    types = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}
    if name not in types:
        raise web.HTTPNotFound()
    return web.Response(body=(STATIC / name).read_bytes(), content_type=types[name],
                        headers={"Cache-Control": "no-cache"})


# --- overview, audit ---------------------------------------------------------------------------


def _projected(con: duckdb.DuckDBPyConnection) -> dict[int, int]:
    return dict(con.execute("SELECT partition, next_index FROM projection_state").fetchall())


async def overview(request: web.Request) -> web.Response:
    source = _source(request)
    policy = _policy(request)

    def work() -> dict[str, Any]:
        con = source.connection()
        try:
            projected = _projected(con)
        finally:
            con.close()
        checkpoints = {}
        if source.ledger_dir is not None:
            chosen = choose_checkpoints(source.ledger_dir, projected, trusted=source.trusted,
                                        book=source.book)
            checkpoints = {str(p): cp.to_dict() for p, cp in chosen.items()}
        return {"origin": origin_of(source.ledger_dir) if source.ledger_dir else None,
                "trusted_keys": source.trusted, "checkpoints": checkpoints,
                "projected": {str(p): n for p, n in sorted(projected.items())},
                "policy": {"version": policy.version, "sha256": policy.sha256},
                "frameworks": [{"key": f.key, "title": f.title} for f in FRAMEWORKS.values()],
                "formats": list(FORMATS)}

    return web.json_response(await _run(work))


AUDIT_SQL = """
WITH permit_level AS (SELECT permit_id, max(level) AS level FROM permit_requests
                      GROUP BY permit_id),
     task_level AS (SELECT task_id, max(level) AS level FROM decisions GROUP BY task_id),
     e AS (SELECT *, coalesce(payload->>'$.permit_id', payload->>'$.override_id') AS pid,
                  payload->>'$.task_id' AS tid,
                  coalesce(payload->>'$.worker_id', payload->'$.worker'->>'$.id',
                           payload->'$.worker'->>'$.worker_id') AS wid
           FROM events)
SELECT e.event_id, e.type, e.occurred_at, e.producer, e.subject, e.partition, e.ledger_index,
       e.leaf_hash, e.note, e.pid AS permit_id, e.tid AS task_id, e.wid AS worker_id,
       coalesce(try_cast(e.payload->>'$.level' AS INTEGER),
                try_cast(e.payload->>'$.assigned_level' AS INTEGER),
                pl.level, tl.level) AS level
FROM e
LEFT JOIN permit_level pl ON pl.permit_id = coalesce(e.pid, e.subject)
LEFT JOIN task_level tl ON tl.task_id = coalesce(e.tid, e.subject)
WHERE ($task IS NULL OR e.tid = $task OR e.subject = $task)
  AND ($permit IS NULL OR e.pid = $permit OR e.subject = $permit)
  AND ($worker IS NULL OR e.wid = $worker)
  AND ($type IS NULL OR starts_with(e.type, $type))
  AND ($start IS NULL OR e.occurred_at >= $start)
  AND ($end IS NULL OR e.occurred_at < $end)
  AND ($level IS NULL OR coalesce(try_cast(e.payload->>'$.level' AS INTEGER),
                                  try_cast(e.payload->>'$.assigned_level' AS INTEGER),
                                  pl.level, tl.level) = $level)
ORDER BY e.occurred_at DESC, e.partition, e.ledger_index DESC
LIMIT $limit OFFSET $offset
"""


def _query_text(request: web.Request, name: str, limit: int = 200) -> str | None:
    value = request.query.get(name, "").strip()
    if len(value) > limit:
        raise InputError("input.schema", f"{name}: at most {limit} characters")
    return value or None


def _query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int
               ) -> int | None:
    text = _query_text(request, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError("input.schema", f"{name}: a whole number") from None
    if not lo <= value <= hi:
        raise InputError("input.schema", f"{name}: {lo}..{hi}")
    return value


def _query_time(request: web.Request, name: str, end: bool = False) -> datetime | None:
    text = _query_text(request, name)
    if text is None:
        return None
    try:
        return parse_moment(text, end=end, what=name)
    except PeriodError as error:
        raise InputError("input.schema", str(error)) from None


async def audit(request: web.Request) -> web.Response:
    """Audit log entries, newest first, each with its position, leaf data and inclusion proof
    against the partition's signed checkpoint (the page verifies them in the browser: leaf
    hash, path to the root, Ed25519 signature of the checkpoint); `server_verified` says the
    server checked the same before answering."""
    source = _source(request)
    params = {"task": _query_text(request, "task"), "permit": _query_text(request, "permit"),
              "worker": _query_text(request, "worker"), "type": _query_text(request, "type"),
              "level": _query_int(request, "level", None, 0, 4),
              "start": _query_time(request, "from"), "end": _query_time(request, "to", True),
              "limit": _query_int(request, "limit", 50, 1, AUDIT_MAX),
              "offset": _query_int(request, "offset", 0, 0, 10_000_000)}

    def work() -> dict[str, Any]:
        con = source.connection()
        try:
            projected = _projected(con)
            cursor = con.execute(AUDIT_SQL, params)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            con.close()
        checkpoints = {}
        if source.ledger_dir is not None and rows:
            checkpoints = choose_checkpoints(source.ledger_dir, projected,
                                             trusted=source.trusted, book=source.book)
        entries = [_audit_entry(row) for row in rows]
        _prove(source, entries, checkpoints)
        return {"entries": entries, "count": len(entries), "limit": params["limit"],
                "offset": params["offset"],
                "checkpoints": {str(p): cp.to_dict() for p, cp in checkpoints.items()},
                "trusted_keys": source.trusted,
                "verification": "every entry: leafData -> leaf hash -> inclusion path -> the "
                                "checkpoint root -> the checkpoint's Ed25519 signature; "
                                "checked by the server (server_verified) and again in the "
                                "browser"}

    return web.json_response(await _run(work))


def _audit_entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": row["event_id"], "type": row["type"],
            "occurred_at": format_time(row["occurred_at"]) if row["occurred_at"] else None,
            "producer": row["producer"], "subject": row["subject"],
            "partition": int(row["partition"]), "index": int(row["ledger_index"]),
            "leaf_hash": row["leaf_hash"], "note": row["note"], "permit_id": row["permit_id"],
            "task_id": row["task_id"], "worker_id": row["worker_id"], "level": row["level"],
            "tree_size": None, "proof": None, "leaf_data": None, "server_verified": False,
            "status": "unsigned"}


def _prove(source: Source, entries: list[dict[str, Any]], checkpoints: dict[int, Any]) -> None:
    from hashlib import sha256

    by_partition: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        by_partition.setdefault(entry["partition"], []).append(entry)
    for partition, group in by_partition.items():
        cp = checkpoints.get(partition)
        if cp is None or source.ledger_dir is None:
            continue
        covered = [e for e in group if e["index"] < cp.size]
        data = leaf_data(source.ledger_dir, partition, [e["index"] for e in covered])
        prover = Prover(source.ledger_dir, cp)
        try:
            for entry in covered:
                leaf = data.get(entry["index"])
                if leaf is None:
                    entry["status"] = "missing"
                    continue
                path = prover.path(entry["index"])
                stored = prover.leaf(entry["index"])
                ok = sha256(b"\x00" + leaf).digest() == stored and \
                    stored.hex() == entry["leaf_hash"]
                entry.update(tree_size=cp.size, leaf_data=base64.b64encode(leaf).decode(),
                             proof=[base64.b64encode(h).decode() for h in path],
                             server_verified=ok, status="verified" if ok else "mismatch")
        except EvidenceError as error:
            for entry in covered:
                if entry["proof"] is None:
                    entry["status"] = f"error: {error.message}"
        finally:
            prover.close()


# --- metrics -----------------------------------------------------------------------------------


async def metrics_json(request: web.Request) -> web.Response:
    source = _source(request)
    start, end = _query_time(request, "from"), _query_time(request, "to", True)
    governance = _policy(request).governance

    def work() -> dict[str, Any]:
        con = source.connection()
        try:
            return compute_metrics(con, governance=governance, start=start, end=end)
        finally:
            con.close()

    return web.json_response(await _run(work))


async def prometheus(request: web.Request) -> web.Response:
    source = _source(request)
    governance = _policy(request).governance
    service = request.app[SERVICE]

    def work() -> str:
        con = source.connection()
        try:
            metrics = compute_metrics(con, governance=governance)
            projected = _projected(con)
        finally:
            con.close()
        extra = {"certify_projected_entries": float(sum(projected.values())),
                 "certify_pending_approvals": float(sum(
                     1 for x in service.permits.permits.values() if x.state == "in_review"))}
        return to_prometheus(metrics, extra)

    text = await _run(work)
    return web.Response(text=text, content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"},
                        charset="utf-8")


# --- reports -----------------------------------------------------------------------------------


def _links(report_id: str) -> dict[str, str]:
    return {fmt: f"/reports/{report_id}.{fmt}" for fmt in FORMATS}


async def make_report(request: web.Request) -> web.Response:
    source = _source(request)
    policy = _policy(request)
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise InputError("input.malformed_json", "body: not JSON") from None
    if not isinstance(body, dict):
        raise InputError("input.schema", "body: a JSON object")
    try:
        fw = framework(str(body.get("framework", "")))
    except KeyError:
        raise InputError("input.schema", "framework: one of " + ", ".join(FRAMEWORKS)) from None
    service = request.app[SERVICE]
    now = service.now_fn()
    try:
        start, end = parse_period(_opt(body, "from"), _opt(body, "to"), now)
        as_of = parse_moment(body["as_of"], what="as_of") if body.get("as_of") else now
    except PeriodError as error:
        raise InputError("input.schema", str(error)) from None
    size = body.get("sample_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise InputError("input.schema", "sample_size: a whole number >= 0")
    if source.ledger_dir is None or source.registry is None:
        raise Unavailable("dashboard.no_data", "this server has no ledger to report from")
    context = ReportContext(
        governance=policy.governance, policy_version=policy.version,
        policy_sha256=policy.sha256, ledger_dir=source.ledger_dir, registry=source.registry,
        trusted=source.trusted, book=source.book, now=as_of, seed=_opt(body, "seed"),
        sample_size=size, proofs=str(body.get("proofs", "all")),
        verify_signatures=bool(body.get("verify_signatures", False)), lazy=True)
    # Signed with the ledger's key and recorded as report.generated through the Pipeline (on
    # this loop, like every other event), before the report is registered.
    ledger = getattr(getattr(getattr(service, "_record", None), "__self__", None), "ledger",
                     None)
    if ledger is not None and hasattr(service, "record"):
        loop = asyncio.get_running_loop()

        async def on_loop(event: Any) -> int | None:
            from ledger import partition_for

            partition = partition_for(event.subject, ledger.partitions)
            fresh = service.record(event)
            return ledger.size(partition) - 1 if fresh else None

        def record(event: Any) -> int | None:
            index = asyncio.run_coroutine_threadsafe(on_loop(event), loop).result(timeout=60)
            ledger.checkpoint_now()  # signed at once: the report verifies as soon as it is out
            return index

        context.signer, context.record = ledger.signer, record
        context.generated_by = f"certify serve ({request.remote or 'unknown'} POST /reports)"

    def work() -> dict[str, Any]:
        con = source.connection()
        try:
            return build_report(con, fw, start, end, context=context)
        finally:
            con.close()

    async with source.lock:  # one report at a time: the registry is a chain
        document = await _run(work)
    entry = next((e for e in reversed(source.registry.entries())
                  if e["report_id"] == document["report_id"]), {"report_id": document["report_id"]})
    return web.json_response({"report": entry, "links": _links(document["report_id"])},
                             status=201)


def _opt(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError("input.schema", f"{name}: text")
    return value


async def list_reports(request: web.Request) -> web.Response:
    registry = _source(request).registry
    entries = registry.entries() if registry else []
    for entry in entries:
        entry.pop("checkpoints", None)
        entry["links"] = _links(entry["report_id"])
    return web.json_response({"reports": entries[::-1]})


async def get_report(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    report_id, _, fmt = name.rpartition(".")
    if fmt not in FORMATS or not report_id:
        raise InputError("input.schema", f"ask for <report id>.{{{','.join(FORMATS)}}}")
    registry = _source(request).registry
    document = registry.load(report_id) if registry else None
    if document is None:
        raise web.HTTPNotFound()
    section = request.query.get("section", "changes")
    stored = registry.raw(report_id) if registry and fmt == "json" else None
    if stored is not None:  # the bytes that were signed, as they were signed
        return web.Response(body=stored, content_type=CONTENT_TYPES[fmt], charset="utf-8",
                            headers={"Content-Disposition":
                                     f'attachment; filename="{report_id}.json"'})
    try:
        text = render(document, fmt, section=section)
    except ValueError as error:
        raise InputError("input.schema", str(error)) from None
    headers = {}
    if fmt != "html":
        suffix = f"-{section}" if fmt == "csv" and section != "changes" else ""
        headers["Content-Disposition"] = f'attachment; filename="{report_id}{suffix}.{fmt}"'
    return web.Response(text=text, content_type=CONTENT_TYPES[fmt], charset="utf-8",
                        headers=headers)


async def _run(work: Callable[[], Any]) -> Any:
    """Blocking work (DuckDB, ledger files) in a thread; our errors become API errors."""
    try:
        return await asyncio.to_thread(work)
    except duckdb.Error as error:
        log.warning("dashboard query failed: %s", error)
        raise Unavailable("dashboard.query_failed", f"projections: {str(error)[:200]}") from None

