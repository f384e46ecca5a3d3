"""Build one compliance report: SQL over the projections, cut at signed checkpoints, with the
evidence (ledger position, leaf hash, inclusion proof) behind every line.

    document = build_report(con, framework("sox"), start, end, context=ReportContext(...))

The document is a JSON-able dict (format `worker-certification-report/2`, docs/reports.md);
`reports.render` turns it into HTML, CSV or Markdown. `con` may be read-only: everything the
report creates is a TEMP table or view of that connection (use a fresh connection or cursor
per report).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from events import format_time
from events.signing import SigningError, canonical_approval
from events.signing import verify as verify_signature
from ledger.errors import LedgerError
from projections import DEFAULT_RETENTION_DAYS
from reports import metrics as metrics_module
from reports import sample as sampling
from reports.evidence import (
    CheckpointBook,
    EvidenceError,
    Prover,
    SignedCheckpoint,
    choose_checkpoints,
    consistency,
    origin_of,
    verify_checkpoint,
)
from reports.frameworks import EXCEPTIONS, Framework
from reports.lazy import JSONDict, JSONList
from reports.registry import Registry
from reports.signature import Recorder, dumps, sign
from reports.sqlfiles import named, run
from rules.governance import Governance

if TYPE_CHECKING:
    from ledger.keys import SigningKey

FORMAT = "worker-certification-report/2"
PROOF_MODES = ("all", "tested", "none")


class ReportError(Exception):
    """A report that cannot be made as asked; `code` is stable."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class ReportContext:
    """Where a report reads from and writes to, and how it is made."""

    governance: Governance
    policy_version: str = ""
    policy_sha256: str = ""
    ledger_dir: Path | None = None  # None: no proofs (a projection copy without its ledger)
    registry: Registry | None = None  # None: not registered, no consistency proof
    trusted: list[str] = field(default_factory=list)  # verifier keys that anchor the ledger
    book: CheckpointBook | None = None
    now: datetime | None = None
    seed: str | None = None
    sample_size: int | None = None
    proofs: str = "all"  # all | tested (sample + exceptions) | none
    verify_signatures: bool = False
    # Signing: with a signer the report is signed (reports/signature.py); with `record` too,
    # a report.generated event is recorded before the report is registered.
    signer: SigningKey | None = None
    record: Recorder | None = None
    generated_by: str = ""
    want_json: bool = False  # make json_bytes even when neither signed nor registered
    # lazy: the document's lines and entries stay JSON text until read (reports/lazy.py);
    # write such a document with reports.render or reports.signature.dumps only
    lazy: bool = False
    json_bytes: bytes | None = None  # out: the JSON rendering, as signed and registered


def _t(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, dict):
        return {k: _t(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_t(v) for v in value]
    return value


def _literal(value: datetime) -> str:
    """A time as a TIMESTAMPTZ literal of DuckDB SQL (microseconds kept)."""
    return f"TIMESTAMPTZ '{value.astimezone(UTC).isoformat()}'"


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params) if params is not None else con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def build_report(con: duckdb.DuckDBPyConnection, fw: Framework, start: datetime,
                 end: datetime, *, context: ReportContext) -> dict[str, Any]:
    ctx = context
    if ctx.proofs not in PROOF_MODES:
        raise ReportError(f"proofs: one of {', '.join(PROOF_MODES)}", "reports.bad_argument")
    if end <= start:
        raise ReportError("the period is empty (--to must be after --from)",
                          "reports.bad_argument")
    generated = datetime.now(UTC)
    now = ctx.now or generated  # as of: when due dates are judged
    policy = fw.policy(ctx.governance)
    con.execute("SET TimeZone = 'UTC'")
    try:
        projected = dict(con.execute(
            "SELECT partition, next_index FROM projection_state").fetchall())
    except duckdb.CatalogException:
        raise ReportError("no projections in this DuckDB file (certify projections rebuild)",
                          "reports.no_projections") from None

    checkpoints: dict[int, SignedCheckpoint] = {}
    if ctx.ledger_dir is not None:
        checkpoints = choose_checkpoints(ctx.ledger_dir, projected, trusted=ctx.trusted,
                                         book=ctx.book)
        cut = {p: cp.size for p, cp in checkpoints.items()}
    else:
        cut = projected
    con.execute("CREATE OR REPLACE TEMP TABLE _cut (partition INTEGER, size BIGINT)")
    for partition, size in cut.items():
        con.execute("INSERT INTO _cut VALUES (?, ?)", [partition, size])
    con.execute("""CREATE OR REPLACE TEMP TABLE _params AS SELECT
        ?::VARCHAR AS p_framework, ?::BOOLEAN AS p_all_changes, ?::VARCHAR[] AS p_classes,
        ?::INTEGER AS p_min_level, ?::INTEGER AS p_plan_from_level,
        ?::INTEGER AS p_retention_days, ?::TIMESTAMPTZ AS p_start,
        ?::TIMESTAMPTZ AS p_end, ?::TIMESTAMPTZ AS p_as_of""",
                [fw.policy_key, fw.all_changes, list(fw.data_classes), policy.min_level,
                 ctx.governance.rollback.plan_required_from_level, policy.retention_days,
                 start, end, now])
    sizes = " ".join(f"WHEN {int(p)} THEN {int(n)}" for p, n in sorted(cut.items()))
    run(con, "base", {"cut": f"(CASE partition {sizes} ELSE 0 END)" if sizes else "0"})
    # The period as constants in the SQL ({start}, {end}, {as_of}), not read from _params: a
    # constant filter reaches the table scans, where DuckDB skips the row groups whose
    # min/max time lies outside it (the projections are appended in ledger order, about time
    # order); a filter against a _params column is a join condition and reads every row.
    values = {"start": _literal(start), "end": _literal(end), "as_of": _literal(now),
              "long_period": "true" if end - start > timedelta(days=92) else "false"}
    for name in ("changes", "timeline", "exceptions", "evidence"):
        run(con, name, values)

    exceptions = _exceptions(con)
    signature_findings = _signature_findings(con) if ctx.verify_signatures else []
    exceptions += signature_findings

    cp_dicts = [checkpoints[p].to_dict() for p in sorted(checkpoints)]
    seed = ctx.seed or sampling.default_seed(
        cp_dicts or [{"partition": p, "size": s, "root": ""} for p, s in sorted(cut.items())])
    size = ctx.sample_size if ctx.sample_size is not None else fw.sample_size
    drawn = _draw(con, seed, size)
    con.execute("CREATE OR REPLACE TEMP TABLE _sample AS SELECT unnest(?::VARCHAR[]) AS "
                "change_id, unnest(?::INTEGER[]) AS rank",
                [[d["change_id"] for d in drawn], [d["rank"] for d in drawn]])
    # The lines come whole from DuckDB (exception codes and sample ranks joined there); their
    # JSON text is kept to be written as it is (reports/signature.py dumps) unless changed here.
    lines_text: str | None = _text(con, "lines", "[]")
    lines: list[dict[str, Any]]
    if ctx.lazy and not signature_findings:
        lines = JSONList(lines_text)  # parsed when (if) something reads it
    else:
        lines = json.loads(lines_text)
    if signature_findings:
        by_id = {line["change_id"]: line for line in lines}
        for item in signature_findings:
            if item["change_id"] in by_id:
                line = by_id[item["change_id"]]
                line["exceptions"] = sorted({*line["exceptions"], item["code"]})
        lines_text = None
    count, digest, by_kind = _population(con)

    sections = _sections(con, fw, ctx, values, now, checkpoints, projected)
    document: dict[str, Any] = {
        "format": FORMAT,
        "report_id": None,
        "framework": {"key": fw.key, "policy_key": fw.policy_key, "title": fw.title,
                      "clauses": list(fw.clauses), "min_level": policy.min_level,
                      "controls": list(policy.controls),
                      "retention_days": policy.retention_days,
                      "scope": ("every change" if fw.all_changes else
                                f"changes tagged {fw.policy_key}" + (
                                    f" or touching {', '.join(fw.data_classes)} data"
                                    if fw.data_classes else ""))
                               + "; every emergency override; every change with no permit"},
        "period": {"from": format_time(start), "to": format_time(end), "as_of": format_time(now)},
        "generated_at": format_time(generated),
        "policy": {"version": ctx.policy_version, "sha256": ctx.policy_sha256},
        "ledger": _ledger_info(ctx, cut, projected),
        "checkpoints": cp_dicts,
        "consistency": None,
        "population": {
            "count": count,
            "digest": digest,
            "by_kind": by_kind,
            "changes": lines,
        },
        "exceptions": {"count": len(exceptions), "by_code": _count(e["code"] for e in exceptions),
                       "codes": EXCEPTIONS, "items": exceptions},
        "sample": {"seed": seed, "size": len(drawn), "requested": size,
                   "method": sampling.METHOD, "changes": drawn},
        "sections": sections,
        "metrics": metrics_module.compute(con, governance=ctx.governance, start=start, end=end,
                                          prefix="r_"),
        "evidence": {"proofs": ctx.proofs, "hash": "leaf_hash is hex (as in DuckDB "
                     "events.leaf_hash); multiproof nodes, roots and notes are base64 (RFC "
                     "9162 tree, C2SP tlog-checkpoint); a partition's multiproof lists the "
                     "subtrees holding none of its proven indexes, in depth-first order "
                     "(docs/reports.md)", "entries": {}, "multiproofs": {}},
    }
    entries_text = _attach_proofs(con, document, ctx, checkpoints)
    _consistency(document, ctx, checkpoints)
    raw = {("population", "changes"): lines_text, ("evidence", "entries"): entries_text}
    _register(document, ctx, fw, start, end, raw)
    return document


# --- lines and exceptions ----------------------------------------------------------------------


def _json(con: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    """One named query of sql/document.sql: a JSON list built inside DuckDB."""
    row = con.execute(named("document")[name]).fetchone()
    return json.loads(row[0]) if row and row[0] else []


def _population(con: duckdb.DuckDBPyConnection) -> tuple[int, str, dict[str, int]]:
    """count, digest (SHA-256 of the sorted change ids joined by newlines) and count by kind
    of the population (DuckDB sorts VARCHAR by code point, as Python sorts str)."""
    row = con.execute("SELECT count(*), coalesce(sha256(string_agg(change_id, chr(10) "
                      "ORDER BY change_id)), sha256('')) FROM r_changes").fetchone()
    kinds = con.execute("SELECT kind, count(*) FROM r_changes GROUP BY kind ORDER BY kind")
    return int(row[0]), str(row[1]), {str(k): int(n) for k, n in kinds.fetchall()}  # type: ignore[index]


def _text(con: duckdb.DuckDBPyConnection, name: str, empty: str) -> str:
    """One named query of sql/document.sql as the JSON text DuckDB built."""
    row = con.execute(named("document")[name]).fetchone()
    return str(row[0]) if row and row[0] else empty


def _exceptions(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    items = _json(con, "exceptions")
    for item in items:
        item["description"] = EXCEPTIONS[item["code"]]
    return items


def _signature_findings(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every signed approval of the population re-verified against the approver's registered
    keys (Ed25519 over the canonical approval, events/signing.py)."""
    keys: dict[str, list[dict[str, Any]]] = {}
    for row in _dicts(con, "SELECT approver_id, roles, public_key, valid_from, valid_until "
                           "FROM r_approvers"):
        keys.setdefault(row["approver_id"], []).append(row)
    findings = []
    for a in _dicts(con, """
            SELECT a.* FROM r_approvals a SEMI JOIN r_changes c ON a.permit_id = c.change_id
            WHERE a.status = 'signed' ORDER BY a.partition, a.ledger_index"""):
        ok = False
        try:
            message = canonical_approval(
                permit_id=a["permit_id"], request_sha256=a["request_sha256"],
                decision=a["decision"], decided_at=a["decided_at"],
                approver_id=a["approver_id"], approver_role=a["approver_role"])
        except (SigningError, TypeError, AttributeError):
            message = None
        for key in keys.get(a["approver_id"] or "", []):
            if message is None or a["approver_role"] not in (key["roles"] or []):
                continue
            if verify_signature(key["public_key"], message, a["signature"] or ""):
                ok = True
                break
        if not ok:
            findings.append({
                "change_id": a["permit_id"], "code": "approval_signature_invalid",
                "description": EXCEPTIONS["approval_signature_invalid"],
                "detail": f"{a['decision']} by {a['approver_id']} as {a['approver_role']}: "
                          "no registered key of that approver and role verifies it",
                "evidence": [f"{a['partition']}:{a['ledger_index']}"]})
    return findings


def _draw(con: duckdb.DuckDBPyConnection, seed: str, size: int) -> list[dict[str, Any]]:
    """The sample (reports/sample.py), its exact keys computed in Python for the changes whose
    approximate keys (sql/sample.sql, computed in DuckDB) rank first, for all of them only when
    those cannot settle it: hashing every change in Python costs ~3 us each."""
    if size <= 0:
        return []
    first = 2 * size + 16
    rows = con.execute(named("sample")["preselect"], [seed, first + 1]).fetchall()
    if len(rows) > first:
        drawn = sampling.draw_preselected([r[:3] for r in rows[:first]], rows[first][3], seed,
                                          size)
        if drawn is not None:
            return drawn
        rows = con.execute(named("sample")["preselect"], [seed, None]).fetchall()
    return sampling.draw([r[:3] for r in rows], seed, size)


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


# --- framework sections --------------------------------------------------------------------------


def _sections(con: duckdb.DuckDBPyConnection, fw: Framework, ctx: ReportContext,
              values: dict[str, str], now: datetime, checkpoints: dict[int, SignedCheckpoint], projected: dict[int, int]
              ) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    if "phi_access" in fw.sections:
        run(con, "phi_access", values)
        sections["phi_access"] = _json(con, "phi_access")
    if "processing" in fw.sections:
        run(con, "processing", values)
        sections["processing"] = _json(con, "processing")
        for activity in sections["processing"]:
            activity["data_subjects"] = "not recorded by this system (tasks name data " \
                                        "classes, not categories of data subjects)"
            activity["security_measures"] = (
                f"certified Level {activity['min_level']}-{activity['max_level']} workers; "
                "signed approvals before execution; hash-chained signed audit ledger; "
                "per-subject encryption with crypto-shredding")
    if "erasures" in fw.sections:
        run(con, "erasures", values)
        sections["erasures"] = _json(con, "erasures")
    if "retention" in fw.sections:
        sections["retention"] = _retention_checks(con, fw, ctx.governance, now, checkpoints,
                                                  projected)
    return sections


def _retention_checks(con: duckdb.DuckDBPyConnection, fw: Framework, gov: Governance,
                      now: datetime, checkpoints: dict[int, SignedCheckpoint],
                      projected: dict[int, int]) -> list[dict[str, Any]]:
    """PCI DSS 10.5.1: audit logs kept 12 months, the latest 3 months immediately available."""
    policy = fw.policy(gov)
    checks = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(passed), "detail": detail})

    check("policy keeps framework records >= 365 days", policy.retention_days >= 365,
          f"{fw.policy_key} retention_days = {policy.retention_days}")
    for level in range(policy.min_level, 5):
        audit = gov.audit_for(level)
        check(f"Level {level} audit records kept >= 365 days", audit.retention_days >= 365,
              f"{audit.retention_class}: {audit.retention_days} days")
    hot = ("permit_requests", "permit_transitions", "approvals", "operations", "executions",
           "violations", "overrides", "rollbacks")
    short = [f"{t} {DEFAULT_RETENTION_DAYS[t]} d" for t in hot
             if 0 <= DEFAULT_RETENTION_DAYS[t] < 90]
    check("projections (the queryable copy) keep audit tables >= 90 days", not short,
          "; ".join(short) or ", ".join(f"{t} {DEFAULT_RETENTION_DAYS[t]} d" for t in hot))
    first = con.execute("SELECT min(occurred_at) FROM r_events WHERE ledger_index = 0"
                        ).fetchone()
    oldest = con.execute("SELECT min(occurred_at) FROM r_events").fetchone()
    started = first[0] if first else None
    year_ago, quarter_ago = now - timedelta(days=365), now - timedelta(days=90)
    check("ledger keeps 12 months (append-only, never pruned; signed and proven consistent)",
          True, f"ledger started {_t(started) if started else 'n/a'}" + (
              "; it holds more than 12 months" if started and started <= year_ago else
              "; younger than 12 months: everything since its start is kept"))
    at_hand = oldest is not None and oldest[0] is not None and (
        oldest[0] <= quarter_ago or (started is not None and oldest[0] <= started))
    check("the latest 3 months are at hand in the projections", at_hand,
          f"oldest projected event {_t(oldest[0]) if oldest and oldest[0] else 'n/a'}; "
          f"3 months ago = {_t(quarter_ago)}")
    behind = [p for p, cp in checkpoints.items() if projected.get(p, 0) < cp.size]
    check("projections cover every signed entry the report names", not behind,
          "behind in partitions " + ", ".join(map(str, behind)) if behind else
          "projections reach every named checkpoint")
    return checks


# --- ledger: proofs, consistency, registry -------------------------------------------------------


def _ledger_info(ctx: ReportContext, cut: dict[int, int], projected: dict[int, int]
                 ) -> dict[str, Any]:
    info: dict[str, Any] = {"partitions": len(cut), "entries": sum(cut.values()),
                            "projected": {str(p): n for p, n in sorted(projected.items())},
                            "anchored": bool(ctx.trusted), "trusted_keys": list(ctx.trusted)}
    if ctx.ledger_dir is not None:
        info["origin"] = origin_of(ctx.ledger_dir)
    else:
        info["note"] = "no ledger available: the report is not cut at signed checkpoints and " \
                       "carries no proofs"
    return info


def _attach_proofs(con: duckdb.DuckDBPyConnection, document: dict[str, Any],
                   ctx: ReportContext, checkpoints: dict[int, SignedCheckpoint]) -> str:
    """Every ledger entry the report cites, once (evidence.entries: type and leaf hash), and
    the inclusion proofs of all of them, or only of those of the tested lines (the sample and
    the exceptions): one Merkle multiproof per partition (evidence.multiproofs). Returns the
    entries' JSON text as DuckDB built it."""
    extra = [f"SELECT partition, ledger_index FROM {t}" for name, t in
             (("phi_access", "r_phi_access"), ("erasures", "r_erasures_in"))
             if name in document["sections"]]
    sql = "SELECT partition, ledger_index, type, leaf_hash FROM r_cited"
    if extra:  # found on positions alone, then read by row id (sql/evidence.sql r_cited)
        sql += (" UNION SELECT e.partition, e.ledger_index, e.type, e.leaf_hash "
                "FROM events e SEMI JOIN (SELECT f.rowid AS row_id FROM events f SEMI JOIN "
                f"({' UNION ALL '.join(extra)}) x "
                "ON f.partition = x.partition AND f.ledger_index = x.ledger_index) k "
                "ON e.rowid = k.row_id")
    con.execute(f"CREATE OR REPLACE TEMP TABLE r_entries AS {sql}")
    text = _text(con, "entries", "{}")
    document["evidence"]["entries"] = JSONDict(text) if ctx.lazy else json.loads(text)
    wanted: list[tuple[int, int, str | None]] = []  # (partition, index, projected leaf hash)
    if checkpoints and ctx.proofs == "all":
        wanted = con.execute("SELECT partition, ledger_index, leaf_hash FROM r_entries"
                             ).fetchall()
    elif checkpoints and ctx.proofs == "tested":
        lines = document["population"]["changes"]
        keep = {key for line in lines if line["sampled"] is not None or line["exceptions"]
                for key in line["evidence"]}
        keep |= {key for item in document["exceptions"]["items"] for key in item["evidence"]}
        con.execute("CREATE OR REPLACE TEMP TABLE _tested AS SELECT "
                    "split_part(k, ':', 1)::INTEGER AS partition, "
                    "split_part(k, ':', 2)::BIGINT AS ledger_index FROM unnest(?::VARCHAR[]) "
                    "AS t(k)", [sorted(keep)])
        wanted = con.execute("SELECT partition, ledger_index, leaf_hash FROM r_entries "
                             "SEMI JOIN _tested USING (partition, ledger_index)").fetchall()
    by_partition: dict[int, dict[int, str | None]] = {}
    for p, index, leaf in wanted:
        by_partition.setdefault(p, {})[index] = leaf
    proofs: dict[str, Any] = {}
    for partition, leaves in sorted(by_partition.items()):
        prover = Prover(ctx.ledger_dir, checkpoints[partition])  # type: ignore[arg-type]
        try:
            indexes = sorted(leaves)
            for index, stored in prover.leaves_hex(indexes).items():
                if stored != leaves[index]:
                    raise EvidenceError(
                        f"partition {partition} entry {index}: the projection's leaf hash is "
                        "not the ledger's (rebuild the projections)",
                        "reports.projection_mismatch")
            # checked against the signed root before it is written
            proofs[str(partition)] = {"tree_size": checkpoints[partition].size,
                                      "indexes": indexes, "nodes": prover.multiproof(indexes)}
        finally:
            prover.close()
    document["evidence"]["multiproofs"] = proofs
    return text


def _consistency(document: dict[str, Any], ctx: ReportContext,
                 checkpoints: dict[int, SignedCheckpoint]) -> None:
    if ctx.registry is None or ctx.ledger_dir is None:
        return
    previous = ctx.registry.last()
    result: dict[str, Any] = {"previous_report": None, "verified": None, "proofs": []}
    if previous is None:
        result["note"] = "first registered report: no previous checkpoint to prove from"
        document["consistency"] = result
        return
    result["previous_report"] = previous["report_id"]
    verified = True
    for key, old in sorted(previous.get("checkpoints", {}).items(), key=lambda kv: int(kv[0])):
        partition = int(key)
        new = checkpoints.get(partition)
        try:
            if new is None:
                raise EvidenceError(f"partition {partition} is gone", "reports.inconsistent")
            old_cp = verify_checkpoint(ctx.ledger_dir, partition, old["note"], ctx.trusted)
            proof = consistency(ctx.ledger_dir, old_cp, new)
            result["proofs"].append({**proof, "verified": True})
        except EvidenceError as error:
            verified = False
            result["proofs"].append({"partition": partition, "verified": False,
                                     "error": error.message, "code": error.code,
                                     "checkpoint1": old.get("note")})
    result["verified"] = verified
    document["consistency"] = result


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def _register(document: dict[str, Any], ctx: ReportContext, fw: Framework, start: datetime,
              end: datetime, raw: dict[tuple[str, str], str | None]) -> None:
    """Name the report by what it says (framework, period, checkpoints, population,
    exceptions, sample); with a signer, sign it and record report.generated (reports/
    signature.py); with a registry, store it and append its entry."""
    core = {k: document[k] for k in ("framework", "period", "generated_at", "checkpoints",
                                     "exceptions", "sample")}
    core["population"] = {k: document["population"][k] for k in ("count", "digest")}
    digest = hashlib.sha256(canonical_bytes(core)).hexdigest()
    report_id = f"{fw.key}-{start:%Y%m%d}-{end:%Y%m%d}-{digest[:12]}"
    document["report_id"] = report_id
    if ctx.signer is not None:
        partitions = document["ledger"]["partitions"] or None
        try:
            rendered = sign(document, ctx.signer, partitions=partitions, record=ctx.record,
                            generated_by=ctx.generated_by, body=dumps(document, raw))
        except (LedgerError, OSError) as error:
            raise ReportError(f"the report could not be recorded in the ledger ({error})",
                              "reports.not_recorded") from None
    elif ctx.registry is not None or ctx.want_json:
        rendered = dumps(document, raw)
    else:
        return
    ctx.json_bytes = rendered + b"\n"
    if ctx.registry is None:
        return
    data = ctx.json_bytes
    entry = {"report_id": report_id, "framework": fw.key, "from": document["period"]["from"],
             "to": document["period"]["to"], "generated_at": document["generated_at"],
             "population": document["population"]["count"],
             "exceptions": document["exceptions"]["count"],
             "sha256": hashlib.sha256(data).hexdigest(),
             "checkpoints": {str(c["partition"]): {"size": c["size"], "root": c["root"],
                                                   "note": c["note"]}
                             for c in document["checkpoints"]}}
    signature = document.get("signature")
    if signature is not None:
        entry["signature"] = {k: signature[k] for k in ("sha256", "key_id", "value", "ledger")}
    ctx.registry.add(entry, data)
