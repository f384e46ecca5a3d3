"""Event type -> projection: which typed table(s) each ledger event lands in, and how.

Each `Projection` reads the payloads of its event types once (`json_transform` into a struct:
one parse per payload, inside DuckDB, vectorised) and inserts into one or more tables with
`INSERT ... BY NAME SELECT`. A payload that lacks a required field (or has it in a shape that
cannot be read) is not projected into the typed table; its `events` row gets a note instead.
Every event, known or not, lands in `events`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from events import EVENT_TYPES

V = "VARCHAR"
I = "BIGINT"  # noqa: E741 - one-letter type aliases keep the field tables readable
F = "DOUBLE"
B = "BOOLEAN"
J = "JSON"
VL = [V]

# Selected in every typed insert: where the row came from.
LEDGER = "event_id, occurred_at, partition, ledger_index"


@dataclass(frozen=True)
class Projection:
    """How the events of `types` become rows: payload fields to read, the fields without which
    a row means nothing, and one SELECT per target table ({src} = the read payloads as `p`)."""

    name: str
    types: tuple[str, ...]
    fields: dict[str, object]
    required: tuple[str, ...]
    inserts: dict[str, str] = field(default_factory=dict)

    @property
    def structure(self) -> str:
        """The json_transform structure: field -> DuckDB type, as JSON."""
        return json.dumps(self.fields, separators=(",", ":"))


def ts(name: str) -> str:
    return f"try_cast(p.{name} AS TIMESTAMPTZ) AS {name}"


def cols(*names: str) -> str:
    return ", ".join(f"p.{name} AS {name}" for name in names)


SCOPE = {"operations": VL, "services": VL, "environment": V, "data_classes": VL, "regions": VL,
         "not_before": V, "not_after": V}

# The operation's name, whichever key the worker used for it.
OPERATION_NAME = """coalesce(p.operation->>'$.operation', p.operation->>'$.operation_type',
    p.operation->>'$.name', p.operation->>'$.type', p.operation->>'$.action')"""

TRANSITION_TYPES = tuple(
    name for name, model in EVENT_TYPES.items()
    if name.startswith("permit.") and model.__name__ == "PermitTransition"
)

PROJECTIONS: tuple[Projection, ...] = (
    Projection(
        "tasks", ("task.submitted",),
        {"task_id": V, "master_id": V, "task": J}, ("task_id",),
        {"tasks": f"SELECT {LEDGER}, {cols('task_id', 'master_id', 'task')} FROM {{src}}"},
    ),
    Projection(
        "decisions", ("certification.decided",),
        {"task_id": V, "worker_type": V, "level": I, "score": I, "score_level": I,
         "risk_level": V, "approvals_required": I, "approver_roles": VL,
         "approval_time_limit_hours": F, "change_advisory_board": B, "environment": V,
         "environment_confidence": F, "hard_blocks": VL, "compliance_frameworks": VL,
         "required_artefacts": VL, "audit_fields": VL, "uncertainties": VL,
         "retention_days": I, "retention_class": V, "policy_version": V, "policy_sha256": V,
         "factors": [{"factor": V, "points": I, "value": V, "rule": V, "evidence": VL}],
         "minimums": [{"rule": V, "level": I, "reason": V, "evidence": VL}]},
        ("task_id", "level"),
        {
            "decisions": f"""SELECT {LEDGER}, occurred_at AS decided_at, {cols(
                'task_id', 'worker_type', 'level', 'score', 'score_level', 'risk_level',
                'approvals_required', 'approver_roles', 'approval_time_limit_hours',
                'change_advisory_board', 'environment', 'environment_confidence',
                'hard_blocks', 'compliance_frameworks', 'required_artefacts', 'audit_fields',
                'uncertainties', 'retention_days', 'retention_class', 'policy_version',
                'policy_sha256')} FROM {{src}}""",
            "factors": f"""SELECT {LEDGER}, task_id, ordinal, f.factor AS factor,
                f.points AS points, f.value AS value, f.rule AS rule, f.evidence AS evidence
                FROM (SELECT {LEDGER}, p.task_id AS task_id, unnest(p.factors) AS f,
                             generate_subscripts(p.factors, 1) AS ordinal FROM {{src}})""",
            "minimums": f"""SELECT {LEDGER}, task_id, ordinal, m.rule AS rule,
                m.level AS level, m.reason AS reason, m.evidence AS evidence
                FROM (SELECT {LEDGER}, p.task_id AS task_id, unnest(p.minimums) AS m,
                             generate_subscripts(p.minimums, 1) AS ordinal FROM {{src}})""",
        },
    ),
    Projection(
        "task_blocks", ("task.blocked",),
        {"task_id": V, "rule": V, "message": V, "required_level": I}, ("task_id",),
        {"task_blocks": f"""SELECT {LEDGER}, {cols('task_id', 'rule', 'message',
                                                   'required_level')} FROM {{src}}"""},
    ),
    Projection(
        "permit_requests", ("permit.requested",),
        {"permit_id": V, "permit_type": V, "task_id": V, "decision_event_id": V, "level": I,
         "requested_by": V, "worker_id": V, "justification": V, "rollback_plan": J,
         "constraints": J, "request_sha256": V, "scope": J},
        ("permit_id",),
        {
            "permit_requests": f"""SELECT {LEDGER}, {cols(
                'permit_id', 'permit_type', 'task_id', 'decision_event_id', 'level',
                'requested_by', 'worker_id', 'justification', 'rollback_plan',
                'constraints', 'request_sha256', 'scope')},
                s.environment AS environment, s.operations AS operations,
                s.services AS services, s.data_classes AS data_classes, s.regions AS regions,
                try_cast(s.not_before AS TIMESTAMPTZ) AS not_before,
                try_cast(s.not_after AS TIMESTAMPTZ) AS not_after
                FROM (SELECT *, json_transform(p.scope, '{json.dumps(SCOPE)}') AS s
                      FROM {{src}})""",
            # The request is the first move of every permit: state `requested`.
            "permit_transitions": f"""SELECT {LEDGER}, p.permit_id AS permit_id, type,
                NULL AS from_state, 'requested' AS to_state, p.justification AS reason,
                p.requested_by AS actor, NULL AS details FROM {{src}}""",
        },
    ),
    Projection(
        "permit_refusals", ("permit.request_refused",),
        {"permit_id": V, "requested_by": V, "code": V, "message": V, "request": J}, ("code",),
        {"permit_refusals": f"""SELECT {LEDGER}, {cols(
            'permit_id', 'requested_by', 'code', 'message', 'request')} FROM {{src}}"""},
    ),
    Projection(
        "permit_followups", ("permit.renewal_requested", "permit.closure_requested"),
        {"permit_id": V, "requested_by": V, "extension_hours": F, "justification": V,
         "summary": J},
        ("permit_id",),
        {"permit_followups": f"""SELECT {LEDGER}, {cols(
            'permit_id', 'requested_by', 'extension_hours', 'justification', 'summary')},
            CASE type WHEN 'permit.renewal_requested' THEN 'renewal' ELSE 'closure' END AS kind
            FROM {{src}}"""},
    ),
    Projection(
        "permit_transitions", TRANSITION_TYPES,
        {"permit_id": V, "from_state": V, "to_state": V, "reason": V, "actor": V,
         "details": J},
        ("permit_id", "to_state"),
        {"permit_transitions": f"""SELECT {LEDGER}, type, {cols(
            'permit_id', 'from_state', 'to_state', 'reason', 'actor', 'details')}
            FROM {{src}}"""},
    ),
    Projection(
        "approvals_signed", ("approval.signed",),
        {"permit_id": V, "request_sha256": V, "decision": V, "approver_id": V,
         "approver_role": V, "decided_at": V, "comments": V, "key_id": V, "signature": V},
        ("permit_id", "decision"),
        {"approvals": f"""SELECT {LEDGER}, 'signed' AS status, {cols(
            'permit_id', 'request_sha256', 'decision', 'approver_id', 'approver_role',
            'comments', 'key_id', 'signature')}, {ts('decided_at')} FROM {{src}}"""},
    ),
    Projection(
        "approvals_refused", ("approval.refused",),
        {"permit_id": V, "approver_id": V, "code": V, "message": V, "approval": J},
        ("permit_id", "code"),
        {"approvals": f"""SELECT {LEDGER}, 'refused' AS status, {cols(
            'permit_id', 'approver_id', 'approval')}, p.code AS refusal_code,
            p.message AS refusal_message,
            p.approval->>'$.decision' AS decision,
            p.approval->>'$.approver_role' AS approver_role,
            p.approval->>'$.request_sha256' AS request_sha256,
            p.approval->>'$.key_id' AS key_id,
            try_cast(p.approval->>'$.decided_at' AS TIMESTAMPTZ) AS decided_at
            FROM {{src}}"""},
    ),
    Projection(
        "approvers", ("approver.registered",),
        {"approver_id": V, "roles": VL, "public_key": V, "valid_from": V, "valid_until": V},
        ("approver_id",),
        {"approvers": f"""SELECT {LEDGER}, {cols('approver_id', 'roles', 'public_key')},
            {ts('valid_from')}, {ts('valid_until')} FROM {{src}}"""},
    ),
    Projection(
        "authorization_requests", ("authorization.requested",),
        {"request_id": V, "worker": J, "permit_id": V, "operation": J, "task": J},
        ("request_id",),
        {"authorization_requests": f"""SELECT {LEDGER}, {cols(
            'request_id', 'worker', 'permit_id', 'operation', 'task')},
            coalesce(p.worker->>'$.worker_id', p.worker->>'$.id') AS worker_id,
            {OPERATION_NAME} AS operation_name FROM {{src}}"""},
    ),
    Projection(
        "operations", ("operation.authorized",),
        {"worker_id": V, "permit_id": V, "operation": J, "allowed": B, "reason_code": V,
         "message": V, "request_id": V, "required_level": I, "audit": J},
        ("worker_id", "allowed"),
        {"operations": f"""SELECT {LEDGER}, {cols(
            'worker_id', 'permit_id', 'operation', 'allowed', 'reason_code', 'message',
            'request_id', 'required_level', 'audit')},
            {OPERATION_NAME} AS operation_name FROM {{src}}"""},
    ),
    Projection(
        "executions", ("execution.reported",),
        {"execution_id": V, "permit_id": V, "task_id": V, "worker_id": V, "status": V,
         "operations": VL, "outcome": J},
        ("execution_id", "status"),
        {"executions": f"""SELECT {LEDGER}, {cols(
            'execution_id', 'permit_id', 'task_id', 'worker_id', 'status', 'operations',
            'outcome')} FROM {{src}}"""},
    ),
    Projection(
        "reviews", ("review.post_execution",),
        {"task_id": V, "assigned_level": I, "appropriate_level": I, "reviewer": V, "notes": V},
        ("task_id", "assigned_level", "appropriate_level"),
        {"reviews": f"""SELECT {LEDGER}, {cols(
            'task_id', 'assigned_level', 'appropriate_level', 'reviewer', 'notes')},
            CASE WHEN p.appropriate_level < p.assigned_level THEN 'over_certified'
                 WHEN p.appropriate_level > p.assigned_level THEN 'under_certified'
                 ELSE 'appropriate' END AS verdict
            FROM {{src}}"""},
    ),
    Projection(
        "metric_samples", ("metric.sample",),
        {"key": V, "metric": V, "value": F, "state": V, "observed_at": V, "labels": J},
        ("key", "metric"),
        {"metric_samples": f"""SELECT {LEDGER}, {cols('key', 'metric', 'value', 'state',
                                                      'labels')},
            {ts('observed_at')} FROM {{src}}"""},
    ),
    Projection(
        "alerts", ("alert.received",),
        # An open payload: the whole document is kept as `alert` when it has no `alert` field.
        {"key": V, "source": V, "alert": J},
        ("key",),
        {"alerts": f"""SELECT {LEDGER}, {cols('key', 'source', 'alert')} FROM {{src}}"""},
    ),
    Projection(
        "rollbacks", ("rollback.event",),
        {"rollback_id": V, "permit_id": V, "stage": V, "trigger": V, "evidence": J,
         "step": V, "sla_minutes": F, "key": V, "level": I, "operation_type": V,
         "approval": V, "scope": V, "phases": VL, "regions": VL, "region": V, "passed": B,
         "decided_at": V, "actor": V, "reason": V},
        ("rollback_id", "stage"),
        {"rollbacks": f"""SELECT {LEDGER}, {cols(
            'rollback_id', 'permit_id', 'stage', 'trigger', 'evidence', 'step',
            'sla_minutes', 'key', 'level', 'operation_type', 'approval', 'scope', 'phases',
            'regions', 'region', 'passed', 'actor', 'reason')}, {ts('decided_at')}
            FROM {{src}}"""},
    ),
    Projection(
        "rollback_reports", ("rollback.stage_reported",),
        {"rollback_id": V, "stage": V, "executor": V, "step": V, "region": V, "passed": B,
         "reason": V, "details": J},
        ("rollback_id", "stage"),
        {"rollback_reports": f"""SELECT {LEDGER}, {cols(
            'rollback_id', 'stage', 'executor', 'step', 'region', 'passed', 'reason',
            'details')} FROM {{src}}"""},
    ),
    Projection(
        "permit_warnings", ("permit.expiry_warning",),
        {"permit_id": V, "expires_at": V, "minutes_left": I, "notify": VL},
        ("permit_id",),
        {"permit_warnings": f"""SELECT {LEDGER}, {cols('permit_id', 'minutes_left', 'notify')},
            {ts('expires_at')} FROM {{src}}"""},
    ),
    Projection(
        "reports", ("report.generated",),
        {"report_id": V, "framework": V, "period_from": V, "period_to": V, "format": V,
         "report_sha256": V, "checkpoint": J, "previous_report_id": V, "population": I,
         "exceptions": I, "key_id": V, "signature": V, "generated_by": V},
        ("report_id", "framework"),
        {"reports": f"""SELECT {LEDGER}, {cols(
            'report_id', 'framework', 'format', 'report_sha256', 'checkpoint',
            'previous_report_id', 'population', 'exceptions', 'key_id', 'signature',
            'generated_by')}, {ts('period_from')}, {ts('period_to')} FROM {{src}}"""},
    ),
    Projection(
        "escalations", ("escalation.raised",),
        {"subject_kind": V, "subject_id": V, "reason": V, "escalate_to": VL, "severity": V,
         "code": V, "actions": VL, "details": J},
        ("subject_kind", "subject_id"),
        {"escalations": f"""SELECT {LEDGER}, {cols(
            'subject_kind', 'subject_id', 'reason', 'escalate_to', 'severity', 'code',
            'actions', 'details')}
            FROM {{src}}"""},
    ),
    Projection(
        "violations", ("violation.recorded",),
        {"worker_id": V, "permit_id": V, "rule": V, "message": V, "severity": V, "action": V,
         "details": J},
        ("rule",),
        {"violations": f"""SELECT {LEDGER}, {cols(
            'worker_id', 'permit_id', 'rule', 'message', 'severity', 'action', 'details')}
            FROM {{src}}"""},
    ),
    Projection(
        "overrides", ("override.event",),
        {"override_id": V, "stage": V, "incident_ticket": V, "commander_id": V,
         "commander_role": V, "worker_id": V, "level": I, "expires_at": V, "reason": V,
         "trigger": V, "scope": J, "review_due_at": V, "audit": J, "details": J},
        ("override_id", "stage"),
        {"overrides": f"""SELECT {LEDGER}, {cols(
            'override_id', 'stage', 'incident_ticket', 'commander_id', 'commander_role',
            'worker_id', 'level', 'reason', 'trigger', 'scope', 'audit', 'details')},
            {ts('expires_at')}, {ts('review_due_at')} FROM {{src}}"""},
    ),
    Projection(
        "override_requests", ("override.requested",),
        # The signed request, as the first row of the override's life: stage `requested`.
        {"override_id": V, "incident_ticket": V, "trigger": V, "commander_id": V,
         "commander_role": V, "worker_id": V, "scope": J, "reason": V, "requested_at": V,
         "request_sha256": V, "key_id": V, "signature": V},
        ("override_id",),
        {"overrides": f"""SELECT {LEDGER}, 'requested' AS stage, {cols(
            'override_id', 'incident_ticket', 'trigger', 'commander_id', 'commander_role',
            'worker_id', 'scope', 'reason', 'request_sha256', 'key_id', 'signature')},
            {ts('requested_at')} FROM {{src}}"""},
    ),
    Projection(
        "override_reviews", ("override.review_submitted",),
        {"override_id": V, "reviewer_id": V, "report": J},
        ("override_id",),
        {"overrides": f"""SELECT {LEDGER}, 'review_submitted' AS stage, {cols(
            'override_id', 'reviewer_id', 'report')} FROM {{src}}"""},
    ),
    Projection(
        "rejected_input", ("input.rejected",),
        {"source": V, "code": V, "message": V, "raw_sha256": V, "raw_excerpt": V,
         "raw_size": I},
        ("code",),
        {"rejected_input": f"""SELECT {LEDGER}, {cols(
            'source', 'code', 'message', 'raw_sha256', 'raw_excerpt', 'raw_size')}
            FROM {{src}}"""},
    ),
    Projection(
        "keys_ledger", ("ledger.key_added", "ledger.key_rotated"),
        # The ledger's own key registry events (ledger/keyring.py): vkeys are C2SP note keys,
        # "name+keyid_hex+base64(key)"; a rotation is signed by the outgoing key (sig_old).
        {"action": V, "new_vkey": V, "old_vkey": V, "sig_new": V, "sig_old": V},
        ("action", "new_vkey"),
        {"keys": f"""SELECT {LEDGER}, p.action AS action, p.new_vkey AS vkey,
            split_part(p.new_vkey, '+', 1) AS key_name,
            split_part(p.new_vkey, '+', 2) AS key_id,
            nullif(split_part(p.old_vkey, '+', 2), '') AS previous_key_id,
            p.sig_old AS rotation_signature FROM {{src}}"""},
    ),
    Projection(
        "ledger_truncations", ("ledger.tail_truncated",),
        # What ledger/store.py records (events.payloads.LedgerTailTruncated); the partition is
        # the entry's own.
        {"offset": I, "bytes_cut": I, "reason": V, "segment": V, "sha256": V, "quarantine": V,
         "next_index": I},
        ("reason",),
        {"ledger_truncations": f"""SELECT {LEDGER}, partition AS truncated_partition,
            p.offset AS cut_at_offset,
            {cols('bytes_cut', 'reason', 'segment', 'sha256', 'quarantine', 'next_index')}
            FROM {{src}}"""},
    ),
    Projection(
        "erasures", ("subject.erased",),
        {"data_subject": V, "requested_by": V, "legal_basis": V},
        ("data_subject",),
        {"erasures": f"""SELECT {LEDGER}, {cols('data_subject', 'requested_by',
                                                 'legal_basis')} FROM {{src}}"""},
    ),
)

# The table of type -> projection. Types missing here still land in `events` (with a note).
PROJECTORS: dict[str, Projection] = {
    event_type: projection for projection in PROJECTIONS for event_type in projection.types
}
