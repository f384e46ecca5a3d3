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
         "request_sha256": V, "scope": J},
        ("permit_id",),
        {
            "permit_requests": f"""SELECT {LEDGER}, {cols(
                'permit_id', 'permit_type', 'task_id', 'decision_event_id', 'level',
                'requested_by', 'worker_id', 'justification', 'rollback_plan',
                'request_sha256', 'scope')},
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
        "operations", ("operation.authorized",),
        {"worker_id": V, "permit_id": V, "operation": J, "allowed": B, "reason_code": V,
         "message": V},
        ("worker_id", "allowed"),
        {"operations": f"""SELECT {LEDGER}, {cols(
            'worker_id', 'permit_id', 'operation', 'allowed', 'reason_code', 'message')},
            coalesce(p.operation->>'$.operation', p.operation->>'$.name',
                     p.operation->>'$.type', p.operation->>'$.action') AS operation_name
            FROM {{src}}"""},
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
        {"key": V, "metric": V, "value": F, "observed_at": V, "labels": J},
        ("key", "metric"),
        {"metric_samples": f"""SELECT {LEDGER}, {cols('key', 'metric', 'value', 'labels')},
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
         "step": V, "sla_minutes": F},
        ("rollback_id", "stage"),
        {"rollbacks": f"""SELECT {LEDGER}, {cols(
            'rollback_id', 'permit_id', 'stage', 'trigger', 'evidence', 'step',
            'sla_minutes')} FROM {{src}}"""},
    ),
    Projection(
        "escalations", ("escalation.raised",),
        {"subject_kind": V, "subject_id": V, "reason": V, "escalate_to": VL, "severity": V},
        ("subject_kind", "subject_id"),
        {"escalations": f"""SELECT {LEDGER}, {cols(
            'subject_kind', 'subject_id', 'reason', 'escalate_to', 'severity')}
            FROM {{src}}"""},
    ),
    Projection(
        "violations", ("violation.recorded",),
        {"worker_id": V, "permit_id": V, "rule": V, "message": V, "severity": V, "action": V},
        ("rule",),
        {"violations": f"""SELECT {LEDGER}, {cols(
            'worker_id', 'permit_id', 'rule', 'message', 'severity', 'action')}
            FROM {{src}}"""},
    ),
    Projection(
        "overrides", ("override.event",),
        {"override_id": V, "stage": V, "incident_ticket": V, "commander_id": V,
         "commander_role": V, "worker_id": V, "level": I, "expires_at": V, "reason": V},
        ("override_id", "stage"),
        {"overrides": f"""SELECT {LEDGER}, {cols(
            'override_id', 'stage', 'incident_ticket', 'commander_id', 'commander_role',
            'worker_id', 'level', 'reason')}, {ts('expires_at')} FROM {{src}}"""},
    ),
    Projection(
        "keys", ("key.event",),
        {"action": V, "key_name": V, "key_id": V, "vkey": V, "previous_key_id": V,
         "rotation_signature": V},
        ("action", "key_id"),
        {"keys": f"""SELECT {LEDGER}, {cols(
            'action', 'key_name', 'key_id', 'vkey', 'previous_key_id', 'rotation_signature')}
            FROM {{src}}"""},
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
        "ledger_truncations", ("ledger.tail_truncated",),
        {"partition": I, "cut_at_offset": I, "bytes_cut": I, "reason": V},
        ("partition",),
        {"ledger_truncations": f"""SELECT {LEDGER}, p.partition AS truncated_partition,
            {cols('cut_at_offset', 'bytes_cut', 'reason')} FROM {{src}}"""},
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
