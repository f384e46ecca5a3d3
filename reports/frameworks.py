"""The compliance frameworks a report can be made for: what is in scope, what is tested, how
the tester's sample is drawn, and which extra sections the framework asks for.

Policy values (minimum level, controls, retention) come from the governance policy
(rules/policy/governance.toml `[compliance.*]`); this module adds what only reports need.

Scope of a report (its population): every change in the period whose task's certification
decision names the framework (`decisions.compliance_frameworks`, from explicit tags or
keywords), or whose permit scope touches the framework's data classes (PHI for HIPAA, PII for
GDPR), plus every emergency override (emergency changes bypass the normal process: an auditor
wants all of them), plus every execution that ran with no known permit (a "ticketless" change
cannot be placed in or out of scope, so it is listed everywhere). SOC 2 takes every change.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.governance import ComplianceFramework, Governance

# Exception codes: stable, never renamed (auditors' workpapers cite them).
EXCEPTIONS: dict[str, str] = {
    "no_approval": "deployed without the required approval (no approval, or the quorum was "
                   "never reached; or no permit at all)",
    "late_approval": "the approval that completed the quorum came after deployment started",
    "self_approval": "approved by the requester or by the worker who ran it "
                     "(segregation of duties)",
    "level_below_minimum": "certified below the framework's minimum level",
    "missing_rollback_plan": "no rollback plan with steps and verification (required from "
                             "Level 2)",
    "missing_test_evidence": "no test evidence (the decision requires test_results)",
    "violation": "a safety violation was recorded against the change",
    "emergency_without_review": "emergency override without a post-incident review by its "
                                "due date",
    "approval_signature_invalid": "an approval signature does not verify against the "
                                  "approver's registered key (only with --verify-signatures)",
    "retention_below_requirement": "a record in scope is kept for less than the framework "
                                   "requires",
}


@dataclass(frozen=True)
class Framework:
    key: str  # the CLI name: sox, soc2, hipaa, pci, gdpr
    policy_key: str  # the governance key: SOX, SOC2, HIPAA, PCI_DSS, GDPR
    title: str
    clauses: tuple[str, ...]  # what the report gives evidence for
    all_changes: bool = False  # scope: every change, not only the tagged ones
    data_classes: tuple[str, ...] = ()  # permit scope data classes that put a change in scope
    sample_size: int = 25  # default; testers may ask for more (--sample-size)
    sample_max: int = 60
    sections: tuple[str, ...] = ()  # extra sections: phi_access, processing, erasures, retention

    def policy(self, governance: Governance) -> ComplianceFramework:
        return governance.compliance[self.policy_key]


FRAMEWORKS: dict[str, Framework] = {f.key: f for f in (
    Framework(
        "sox", "SOX", "SOX §404 ITGC — program change management",
        ("PCAOB AS 2201: changes authorized, tested and approved before production",
         "segregation of duties: approver differs from requester and developer",
         ("complete population from a system-generated list; stratified sample 25-60, "
          "weighted to emergency and weekend changes"))),
    Framework(
        "soc2", "SOC2", "SOC 2 CC8.1 — change management",
        ("CC8.1: changes authorized, designed, tested, approved and implemented",
         "emergency changes with retroactive review", "no bypass of approval"),
        all_changes=True),
    Framework(
        "hipaa", "HIPAA", "HIPAA Security Rule — audit controls and PHI access",
        ("45 CFR 164.312(b): activity in ePHI systems recorded and examined",
         "every access to PHI, with who, what, when and the outcome",
         "164.316(b)(2)(i): documentation kept 6 years"),
        data_classes=("phi",), sections=("phi_access",)),
    Framework(
        "pci", "PCI_DSS", "PCI DSS v4.0.1 — change control (6.5) and audit logs (10)",
        (("6.5.1-6.5.6: reason, security impact, approval by authorized parties, testing, "
          "return to a secure state; only reviewed and approved changes deployed"),
         "10.5.1: audit logs kept at least 12 months, the latest 3 months at hand"),
        sections=("retention",)),
    Framework(
        "gdpr", "GDPR", "GDPR — Art. 30 record of processing and Art. 17 erasures",
        ("Art. 30: record of processing activities involving personal data",
         "Art. 17 / 5(1)(e): erasures (crypto-shredding) and storage limitation",
         "Art. 32: security of processing (levels, approvals, audit)"),
        data_classes=("pii",), sections=("processing", "erasures")),
)}


def framework(name: str) -> Framework:
    """The framework for a CLI/URL name (sox, soc2, hipaa, pci, gdpr; case-insensitive; the
    policy spellings SOC2, PCI_DSS, PCI-DSS also work)."""
    wanted = name.strip().lower().replace("-", "_")
    for f in FRAMEWORKS.values():
        if wanted in (f.key, f.policy_key.lower()):
            return f
    raise KeyError(name)
