"""A report document (reports.build) as JSON, CSV, Markdown or self-contained HTML.

JSON is the document itself (what the registry keeps; every other format renders from it).
CSV is one table per call (`section`): changes (the population, default), exceptions, sample,
evidence (every cited entry: type, leaf hash, whether a multiproof proves it), multiproofs
(one per partition), checkpoints, consistency, and the framework's own sections (phi_access,
processing, erasures, retention).
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

FORMATS = ("json", "csv", "md", "html")
CSV_SECTIONS = ("changes", "exceptions", "sample", "evidence", "multiproofs", "checkpoints",
                "consistency", "phi_access", "processing", "erasures", "retention")


def render(document: dict[str, Any], fmt: str, *, section: str = "changes") -> str:
    if fmt == "json":  # compact; lines and entries still as text are written as they are
        from reports.signature import dumps

        return dumps(document).decode("utf-8") + "\n"
    if fmt == "csv":
        return to_csv(document, section)
    if fmt == "md":
        return to_markdown(document)
    if fmt == "html":
        return to_html(document)
    raise ValueError(f"format: one of {', '.join(FORMATS)}")


# --- shared ----------------------------------------------------------------------------------


def _list(value: Any, sep: str = "; ") -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return sep.join(str(v) for v in value)
    return str(value)


def _refs(evidence: list[str]) -> str:
    """Entries cited as "<partition>:<index>", written p<partition>#<index>."""
    return " ".join("p" + key.replace(":", "#") for key in evidence)


def _approvers(line: dict[str, Any]) -> str:
    return "; ".join(f"{a['approver_id']} ({a['role']}) {a['recorded_at']}"
                     for a in line.get("approvers", []))


def change_row(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "change_id": line["change_id"], "kind": line["kind"],
        "permit_type": line.get("permit_type") or "", "task_id": line.get("task_id") or "",
        "level": line.get("level"), "decision_level": line.get("decision_level"),
        "frameworks": _list(line.get("frameworks")),
        "data_classes": _list(line.get("data_classes")),
        "environment": line.get("environment") or "",
        "operations": _list(line.get("operations")),
        "requested_by": line.get("requested_by") or "", "worker_id": line.get("worker_id") or "",
        "changed_at": line.get("changed_at"), "approved_at": line.get("approved_at") or "",
        "approvers": _approvers(line), "deployed_at": line.get("deployed_at") or "",
        "state": line.get("state") or "", "test_evidence": line.get("test_evidence"),
        "rollback_plan": line.get("rollback_plan"),
        "exceptions": _list(line.get("exceptions")),
        "sampled": line.get("sampled") or "", "evidence": _refs(line.get("evidence", [])),
    }


def _table_rows(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    if section == "changes":
        return [change_row(x) for x in document["population"]["changes"]]
    if section == "exceptions":
        return [{"change_id": x["change_id"] or "", "code": x["code"], "detail": x["detail"],
                 "evidence": _refs(x["evidence"])} for x in document["exceptions"]["items"]]
    if section == "sample":
        return [{**s, "seed": document["sample"]["seed"]} for s in document["sample"]["changes"]]
    if section == "evidence":
        proven = _proven(document)
        return [{"entry": _refs([key]), "partition": key.split(":")[0],
                 "index": key.split(":")[1], "type": e["type"], "leaf_hash": e["leaf_hash"],
                 "proven": key in proven}
                for key, e in document["evidence"]["entries"].items()]
    if section == "multiproofs":
        return [{"partition": p, "tree_size": m["tree_size"], "leaves": len(m["indexes"]),
                 "indexes": " ".join(map(str, m["indexes"])), "nodes": " ".join(m["nodes"])}
                for p, m in document["evidence"].get("multiproofs", {}).items()]
    if section == "checkpoints":
        return [{**c, "signed_by": _list(c["signed_by"])} for c in document["checkpoints"]]
    if section == "consistency":
        proofs = (document.get("consistency") or {}).get("proofs", [])
        return [{**p, "proof": " ".join(p.get("proof", []))} for p in proofs]
    rows = document["sections"].get(section)
    if rows is None:
        raise ValueError(f"section {section!r} is not in a {document['framework']['key']} "
                         f"report (sections: {', '.join(CSV_SECTIONS[:6])}, "
                         f"{', '.join(document['sections']) or 'no others'})")
    out = []
    for row in rows:
        flat = {k: (_refs(v) if k == "evidence" else _list(v)) for k, v in row.items()}
        out.append(flat)
    return out


def _cell(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ as formulas: such text gets a leading
    apostrophe (numbers stay numbers)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def to_csv(document: dict[str, Any], section: str = "changes") -> str:
    rows = _table_rows(document, section)
    buffer = io.StringIO()
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    if not fields and section == "changes":
        fields = list(change_row({"change_id": "", "kind": ""}))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _summary(document: dict[str, Any]) -> list[tuple[str, str]]:
    fw, period = document["framework"], document["period"]
    consistency = document.get("consistency") or {}
    verdict = {True: "verified", False: "FAILED", None: "none (first report)"}[
        consistency.get("verified")] if consistency else "not computed"
    kinds = ", ".join(f"{k} {v}" for k, v in document["population"]["by_kind"].items())
    return [
        ("Report", document["report_id"]),
        ("Framework", (f"{fw['title']} (minimum Level {fw['min_level']}; controls: "
                       f"{', '.join(fw['controls'])}; retention {fw['retention_days']} days)")),
        ("Scope", fw["scope"]),
        ("Period", f"{period['from']} to {period['to']} (as of {period['as_of']})"),
        ("Policy", f"{document['policy']['version']} sha256 {document['policy']['sha256']}"),
        ("Ledger", (f"{document['ledger'].get('origin', 'n/a')}: "
                    f"{document['ledger']['entries']} entries in "
                    f"{document['ledger']['partitions']} partitions at the named checkpoints; "
                    f"anchored: {document['ledger']['anchored']}")),
        ("Consistency with the previous report",
         f"{verdict}" + (f" (from {consistency['previous_report']})"
                         if consistency.get("previous_report") else "")),
        ("Population", (f"{document['population']['count']} changes ({kinds or 'none'}); "
                        f"digest {document['population']['digest']}")),
        ("Exceptions", f"{document['exceptions']['count']}" + (
            " (" + ", ".join(f"{k} {v}" for k, v in document["exceptions"]["by_code"].items())
            + ")" if document["exceptions"]["count"] else "")),
        ("Sample", (f"{document['sample']['size']} of {document['population']['count']} "
                    f"(seed {document['sample']['seed']})")),
        ("Signature", _signature(document.get("signature"))),
    ]


def _signature(block: dict[str, Any] | None) -> str:
    if not block:
        return "not signed"
    where = block.get("ledger") or {}
    recorded = (f"; recorded as {where.get('type')} {where.get('event_id')} at "
                f"p{where.get('partition')}#{where.get('index')}") if where else \
        "; not recorded in the ledger"
    return (f"Ed25519 by {block['vkey']} over the JSON rendering of this report (sha256 "
            f"{block['sha256']}): {block['value']}{recorded}. Check the JSON file with "
            "`certify report verify`")


# --- Markdown ----------------------------------------------------------------------------------


def _md(value: Any) -> str:
    return _list(value).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return out + [""]


def to_markdown(document: dict[str, Any]) -> str:
    fw = document["framework"]
    out = [f"# {fw['title']}", ""]
    out += [f"- **{k}**: {_md(v)}" for k, v in _summary(document)]
    out += ["", "Evidence for: " + "; ".join(fw["clauses"]), "", "## Signed checkpoints", ""]
    for c in document["checkpoints"]:
        out += [(f"Partition {c['partition']} (size {c['size']}, signed by "
                 f"{', '.join(c['signed_by'])}):"), "", "```", c["note"].rstrip("\n"), "```", ""]
    consistency = document.get("consistency")
    if consistency and consistency.get("proofs"):
        out += ["## Consistency with the previous report", ""]
        out += _md_table(["partition", "size1", "size2", "verified", "proof"],
                         [[p["partition"], p.get("size1", ""), p.get("size2", ""),
                           p["verified"], " ".join(p.get("proof", [])) or p.get("error", "")]
                          for p in consistency["proofs"]])
    out += ["## Exceptions", ""]
    out += _md_table(["change", "code", "detail", "evidence"],
                     [[x["change_id"] or "(none)", x["code"], x["detail"], _refs(x["evidence"])]
                      for x in document["exceptions"]["items"]])
    out += ["## Sample", "", f"Method: {document['sample']['method']}.", ""]
    out += _md_table(["rank", "change", "weight"],
                     [[s["rank"], s["change_id"], s["weight"]]
                      for s in document["sample"]["changes"]])
    for name, rows in document["sections"].items():
        out += [f"## {SECTION_TITLES.get(name, name)}", ""]
        if rows:
            headers = list(rows[0])
            out += _md_table(headers, [[_refs(r[h]) if h == "evidence" else r[h]
                                        for h in headers] for r in rows])
        else:
            out += ["(none)", ""]
    out += ["## Metrics", ""]
    out += _md_table(["metric", "value", "target", "met"],
                     [[t["metric"], _fmt(t["value"]), t["target"], t["met"]]
                      for t in document["metrics"]["targets"]])
    out += ["## Population", ""]
    rows = [change_row(x) for x in document["population"]["changes"]]
    cols = ["change_id", "kind", "level", "requested_by", "changed_at", "approvers",
            "deployed_at", "state", "exceptions", "sampled", "evidence"]
    out += _md_table(cols, [[r[c] for c in cols] for r in rows])
    out += ["## Evidence", ""]
    proven = _proven(document)
    for key, e in document["evidence"]["entries"].items():
        out.append(f"- `{_refs([key])}` {e['type']} leaf {e['leaf_hash']}"
                   + ("" if key in proven else " (no proof included)"))
    out += ["", "## Inclusion proofs (one multiproof per partition, against the checkpoints "
            "above)", ""]
    for p, m in document["evidence"].get("multiproofs", {}).items():
        out.append(f"- partition {p}, tree {m['tree_size']}, {len(m['indexes'])} entries: "
                   f"nodes {' '.join(m['nodes'])}")
    return "\n".join(out) + "\n"


def _proven(document: dict[str, Any]) -> set[str]:
    """The entries ("<partition>:<index>") the report's multiproofs prove."""
    return {f"{p}:{i}" for p, m in document["evidence"].get("multiproofs", {}).items()
            for i in m["indexes"]}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


SECTION_TITLES = {"phi_access": "Every access to PHI (HIPAA 164.312(b))",
                  "processing": "Record of processing activities (GDPR Art. 30)",
                  "erasures": "Erasures (GDPR Art. 17, crypto-shredding)",
                  "retention": "Retention checks (PCI DSS 10.5.1)"}


# --- HTML --------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2733}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccd;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#eef1f6}pre{background:#f5f6f8;padding:.5em;overflow-x:auto;font-size:12px}
.exc{color:#a40000;font-weight:600}.ok{color:#1a6b1a}code{font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
"""


def _h(value: Any) -> str:
    return html.escape(_list(value))


def _html_table(headers: list[str], rows: list[list[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _h(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _evidence_html(evidence: list[str], entries: dict[str, Any], proven: set[str]) -> str:
    items = []
    for key in evidence:
        e = entries.get(key, {})
        items.append(f"<li><code>{_refs([key])}</code> {_h(e.get('type'))} leaf "
                     f"<code>{_h(e.get('leaf_hash'))}</code>"
                     + ("" if key in proven else " (no proof included)") + "</li>")
    return (f"<details><summary>{len(evidence)} entries</summary><ul>{''.join(items)}</ul>"
            "</details>")


def to_html(document: dict[str, Any]) -> str:
    fw = document["framework"]
    entries = document["evidence"]["entries"]
    proven = _proven(document)
    parts = [(f"<!doctype html><html lang=en><meta charset=utf-8><title>{_h(fw['title'])} — "
              f"{_h(document['report_id'])}</title><style>{STYLE}</style><body>"),
             f"<h1>{_h(fw['title'])}</h1><dl>"]
    parts += [f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in _summary(document)]
    parts.append("</dl><p>Evidence for: " + _h("; ".join(fw["clauses"])) + "</p>")
    parts.append("<h2>Signed checkpoints</h2>")
    for c in document["checkpoints"]:
        parts.append(f"<p>Partition {c['partition']}, size {c['size']}, signed by "
                     f"<code>{_h(c['signed_by'])}</code></p><pre>{_h(c['note'])}</pre>")
    consistency = document.get("consistency")
    if consistency:
        parts.append("<h2>Consistency with the previous report</h2>")
        if consistency.get("proofs"):
            parts.append(_html_table(
                ["partition", "size1", "size2", "verified", "proof"],
                [[str(p["partition"]), str(p.get("size1", "")), str(p.get("size2", "")),
                  str(p["verified"]), " ".join(p.get("proof", [])) or p.get("error", "")]
                 for p in consistency["proofs"]]))
        else:
            parts.append(f"<p>{_h(consistency.get('note', ''))}</p>")
    parts.append("<h2>Exceptions</h2>")
    parts.append(_html_table(
        ["change", "code", "detail", "evidence"],
        [[_h(x["change_id"] or "(none)"), f"<span class=exc>{_h(x['code'])}</span>",
          _h(x["detail"]), _evidence_html(x["evidence"], entries, proven)]
         for x in document["exceptions"]["items"]], raw=True)
        if document["exceptions"]["items"] else "<p class=ok>No exceptions.</p>")
    parts.append(f"<h2>Sample</h2><p>{_h(document['sample']['method'])}; seed "
                 f"<code>{_h(document['sample']['seed'])}</code></p>")
    parts.append(_html_table(["rank", "change", "weight"],
                             [[str(s["rank"]), s["change_id"], str(s["weight"])]
                              for s in document["sample"]["changes"]]))
    for name, rows in document["sections"].items():
        parts.append(f"<h2>{_h(SECTION_TITLES.get(name, name))}</h2>")
        if not rows:
            parts.append("<p>(none)</p>")
            continue
        headers = list(rows[0])
        parts.append(_html_table(headers, [
            [_evidence_html(r[h], entries, proven) if h == "evidence" else _h(r[h]) for h in headers]
            for r in rows], raw=True))
    parts.append("<h2>Metrics</h2>")
    parts.append(_html_table(["metric", "value", "target", "met"],
                             [[t["metric"], _fmt(t["value"]), t["target"], str(t["met"])]
                              for t in document["metrics"]["targets"]]))
    parts.append("<h2>Population</h2>")
    cols = ["change_id", "kind", "level", "requested_by", "worker_id", "changed_at",
            "approvers", "deployed_at", "state", "test_evidence", "rollback_plan", "exceptions",
            "sampled"]
    rows = []
    for line in document["population"]["changes"]:
        row = change_row(line)
        cells = [_h(row[c]) for c in cols]
        if line["exceptions"]:
            at = cols.index("exceptions")
            cells[at] = f"<span class=exc>{cells[at]}</span>"
        rows.append([*cells, _evidence_html(line["evidence"], entries, proven)])
    parts.append(_html_table([*cols, "evidence"], rows, raw=True))
    parts.append("<h2>Inclusion proofs</h2><p>One Merkle multiproof per partition of every "
                 "proven entry against the checkpoint above (docs/reports.md)</p>")
    parts.append(_html_table(
        ["partition", "tree size", "entries", "nodes"],
        [[p, str(m["tree_size"]), str(len(m["indexes"])),
          f"<details><summary>{len(m['nodes'])} nodes</summary><code>"
          f"{html.escape(' '.join(m['nodes']))}</code></details>"]
         for p, m in document["evidence"].get("multiproofs", {}).items()], raw=True))
    parts.append("</body></html>\n")
    return "".join(parts)
