"""Compliance reports and system metrics over the DuckDB projections (docs/reports.md).

    from reports import build_report, framework, ReportContext, render
    document = build_report(con, framework("soc2"), start, end, context=ReportContext(gov, ...))
    text = render(document, "html")

Imports `events`, `rules` (governance), `ledger` (proofs) and `projections`; `streams` imports
it (the CLI and the web app).
"""

from reports.build import FORMAT, PROOF_MODES, ReportContext, ReportError, build_report
from reports.evidence import CheckpointBook, EvidenceError
from reports.frameworks import EXCEPTIONS, FRAMEWORKS, Framework, framework
from reports.metrics import compute as compute_metrics
from reports.metrics import to_prometheus, to_text
from reports.registry import Registry
from reports.render import FORMATS, render

__all__ = [
    "EXCEPTIONS", "FORMAT", "FORMATS", "FRAMEWORKS", "PROOF_MODES", "CheckpointBook",
    "EvidenceError", "Framework", "Registry", "ReportContext", "ReportError", "build_report",
    "compute_metrics", "framework", "render", "to_prometheus", "to_text",
]
