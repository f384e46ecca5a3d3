"""The DuckDB schema of the projections: every table is rebuildable from the ledger.

Columns shared by every typed table (`LEDGER_COLUMNS`): `event_id` (the ledger event the row
came from), `occurred_at` (its event time), `partition` and `ledger_index` (where it sits in the
ledger). projections/README.md describes every table and column.
"""

from __future__ import annotations

# Bump when a table changes shape: a file with another version must be rebuilt from the ledger.
# 2: permit refusals/follow-ups, authorization requests, override and rollback columns, zstd.
# 3: rollback stage reports from executors, permit expiry warnings, generated reports.
# 4: checkpoints filled from the ledger's signed notes (new columns); events.event_id no longer
#    carries a UNIQUE index (exactly once by ledger position; see projector.py).
SCHEMA_VERSION = 4

# The big JSON columns (every payload; the task documents) compress about 10x better with zstd
# than with DuckDB's default string compression, and store faster (bench: 25 MB -> 3 MB).
BIG_JSON = "JSON USING COMPRESSION 'zstd'"

LEDGER_COLUMNS = """
    occurred_at TIMESTAMPTZ,
    partition INTEGER NOT NULL,
    ledger_index BIGINT NOT NULL"""

TABLES: dict[str, str] = {
    "projection_meta": """
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL""",
    "projection_state": """
        partition INTEGER PRIMARY KEY,
        next_index BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL""",
    # No UNIQUE index on event_id: keeping an ART index over every id cost a third of a bulk
    # catch-up (insert + commit); an entry is projected once by its ledger position instead
    # (`projection_state.next_index`, exact per partition; see projector.py).
    "events": """
        event_id VARCHAR NOT NULL,
        type VARCHAR,
        schema_version INTEGER,
        producer VARCHAR,
        subject VARCHAR,
        correlation_id VARCHAR,
        causation_id VARCHAR,
        payload """ + BIG_JSON + """,
        leaf_hash VARCHAR NOT NULL,
        note VARCHAR,""" + LEDGER_COLUMNS,
    "tasks": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        master_id VARCHAR,
        task """ + BIG_JSON + """,""" + LEDGER_COLUMNS,
    "decisions": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        level INTEGER NOT NULL,
        worker_type VARCHAR,
        score INTEGER,
        score_level INTEGER,
        risk_level VARCHAR,
        approvals_required INTEGER,
        approver_roles VARCHAR[],
        approval_time_limit_hours DOUBLE,
        change_advisory_board BOOLEAN,
        environment VARCHAR,
        environment_confidence DOUBLE,
        hard_blocks VARCHAR[],
        compliance_frameworks VARCHAR[],
        required_artefacts VARCHAR[],
        audit_fields VARCHAR[],
        uncertainties VARCHAR[],
        retention_days INTEGER,
        retention_class VARCHAR,
        policy_version VARCHAR,
        policy_sha256 VARCHAR,
        decided_at TIMESTAMPTZ,""" + LEDGER_COLUMNS,
    "factors": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        ordinal INTEGER NOT NULL,
        factor VARCHAR,
        points INTEGER,
        value VARCHAR,
        rule VARCHAR,
        evidence VARCHAR[],""" + LEDGER_COLUMNS,
    "minimums": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        ordinal INTEGER NOT NULL,
        rule VARCHAR,
        level INTEGER,
        reason VARCHAR,
        evidence VARCHAR[],""" + LEDGER_COLUMNS,
    "task_blocks": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        rule VARCHAR,
        message VARCHAR,
        required_level INTEGER,""" + LEDGER_COLUMNS,
    "permit_requests": """
        event_id VARCHAR NOT NULL,
        permit_id VARCHAR NOT NULL,
        permit_type VARCHAR,
        task_id VARCHAR,
        decision_event_id VARCHAR,
        level INTEGER,
        requested_by VARCHAR,
        worker_id VARCHAR,
        environment VARCHAR,
        operations VARCHAR[],
        services VARCHAR[],
        data_classes VARCHAR[],
        regions VARCHAR[],
        not_before TIMESTAMPTZ,
        not_after TIMESTAMPTZ,
        scope JSON,
        justification VARCHAR,
        rollback_plan JSON,
        constraints JSON,
        request_sha256 VARCHAR,""" + LEDGER_COLUMNS,
    "permit_refusals": """
        event_id VARCHAR NOT NULL,
        permit_id VARCHAR,
        requested_by VARCHAR,
        code VARCHAR NOT NULL,
        message VARCHAR,
        request JSON,""" + LEDGER_COLUMNS,
    "permit_followups": """
        event_id VARCHAR NOT NULL,
        permit_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        requested_by VARCHAR,
        extension_hours DOUBLE,
        justification VARCHAR,
        summary JSON,""" + LEDGER_COLUMNS,
    "permit_transitions": """
        event_id VARCHAR NOT NULL,
        permit_id VARCHAR NOT NULL,
        type VARCHAR NOT NULL,
        from_state VARCHAR,
        to_state VARCHAR NOT NULL,
        reason VARCHAR,
        actor VARCHAR,
        details JSON,""" + LEDGER_COLUMNS,
    "approvals": """
        event_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        permit_id VARCHAR NOT NULL,
        request_sha256 VARCHAR,
        decision VARCHAR,
        approver_id VARCHAR,
        approver_role VARCHAR,
        decided_at TIMESTAMPTZ,
        comments VARCHAR,
        key_id VARCHAR,
        signature VARCHAR,
        refusal_code VARCHAR,
        refusal_message VARCHAR,
        approval JSON,""" + LEDGER_COLUMNS,
    "approvers": """
        event_id VARCHAR NOT NULL,
        approver_id VARCHAR NOT NULL,
        roles VARCHAR[],
        public_key VARCHAR,
        valid_from TIMESTAMPTZ,
        valid_until TIMESTAMPTZ,""" + LEDGER_COLUMNS,
    "authorization_requests": """
        event_id VARCHAR NOT NULL,
        request_id VARCHAR NOT NULL,
        worker_id VARCHAR,
        worker JSON,
        permit_id VARCHAR,
        operation_name VARCHAR,
        operation JSON,
        task JSON,""" + LEDGER_COLUMNS,
    "operations": """
        event_id VARCHAR NOT NULL,
        request_id VARCHAR,
        worker_id VARCHAR NOT NULL,
        permit_id VARCHAR,
        operation_name VARCHAR,
        operation JSON,
        allowed BOOLEAN NOT NULL,
        reason_code VARCHAR,
        message VARCHAR,
        required_level INTEGER,
        audit JSON,""" + LEDGER_COLUMNS,
    "executions": """
        event_id VARCHAR NOT NULL,
        execution_id VARCHAR NOT NULL,
        permit_id VARCHAR,
        task_id VARCHAR,
        worker_id VARCHAR,
        status VARCHAR NOT NULL,
        operations VARCHAR[],
        outcome JSON,""" + LEDGER_COLUMNS,
    "reviews": """
        event_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        assigned_level INTEGER NOT NULL,
        appropriate_level INTEGER NOT NULL,
        verdict VARCHAR NOT NULL,
        reviewer VARCHAR,
        notes VARCHAR,""" + LEDGER_COLUMNS,
    "metric_samples": """
        event_id VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,
        value DOUBLE,
        state VARCHAR,
        observed_at TIMESTAMPTZ,
        labels JSON,""" + LEDGER_COLUMNS,
    "alerts": """
        event_id VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        source VARCHAR,
        alert JSON,""" + LEDGER_COLUMNS,
    "rollbacks": """
        event_id VARCHAR NOT NULL,
        rollback_id VARCHAR NOT NULL,
        permit_id VARCHAR,
        stage VARCHAR NOT NULL,
        key VARCHAR,
        level INTEGER,
        operation_type VARCHAR,
        trigger VARCHAR,
        approval VARCHAR,
        scope VARCHAR,
        phases VARCHAR[],
        regions VARCHAR[],
        region VARCHAR,
        step VARCHAR,
        passed BOOLEAN,
        sla_minutes DOUBLE,
        decided_at TIMESTAMPTZ,
        actor VARCHAR,
        reason VARCHAR,
        evidence JSON,""" + LEDGER_COLUMNS,
    "rollback_reports": """
        event_id VARCHAR NOT NULL,
        rollback_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        executor VARCHAR,
        step VARCHAR,
        region VARCHAR,
        passed BOOLEAN,
        reason VARCHAR,
        details JSON,""" + LEDGER_COLUMNS,
    "permit_warnings": """
        event_id VARCHAR NOT NULL,
        permit_id VARCHAR NOT NULL,
        expires_at TIMESTAMPTZ,
        minutes_left INTEGER,
        notify VARCHAR[],""" + LEDGER_COLUMNS,
    "reports": """
        event_id VARCHAR NOT NULL,
        report_id VARCHAR NOT NULL,
        framework VARCHAR NOT NULL,
        period_from TIMESTAMPTZ,
        period_to TIMESTAMPTZ,
        format VARCHAR,
        report_sha256 VARCHAR,
        checkpoint JSON,
        previous_report_id VARCHAR,
        population BIGINT,
        exceptions BIGINT,
        key_id VARCHAR,
        signature VARCHAR,
        generated_by VARCHAR,""" + LEDGER_COLUMNS,
    "escalations": """
        event_id VARCHAR NOT NULL,
        subject_kind VARCHAR NOT NULL,
        subject_id VARCHAR NOT NULL,
        reason VARCHAR,
        escalate_to VARCHAR[],
        severity VARCHAR,
        code VARCHAR,
        actions VARCHAR[],
        details JSON,""" + LEDGER_COLUMNS,
    "violations": """
        event_id VARCHAR NOT NULL,
        worker_id VARCHAR,
        permit_id VARCHAR,
        rule VARCHAR NOT NULL,
        message VARCHAR,
        severity VARCHAR,
        action VARCHAR,
        details JSON,""" + LEDGER_COLUMNS,
    "overrides": """
        event_id VARCHAR NOT NULL,
        override_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        incident_ticket VARCHAR,
        commander_id VARCHAR,
        commander_role VARCHAR,
        worker_id VARCHAR,
        level INTEGER,
        trigger VARCHAR,
        scope JSON,
        expires_at TIMESTAMPTZ,
        review_due_at TIMESTAMPTZ,
        reason VARCHAR,
        requested_at TIMESTAMPTZ,
        request_sha256 VARCHAR,
        key_id VARCHAR,
        signature VARCHAR,
        reviewer_id VARCHAR,
        report JSON,
        audit JSON,
        details JSON,""" + LEDGER_COLUMNS,
    "keys": """
        event_id VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        key_name VARCHAR,
        key_id VARCHAR NOT NULL,
        vkey VARCHAR,
        previous_key_id VARCHAR,
        rotation_signature VARCHAR,""" + LEDGER_COLUMNS,
    "rejected_input": """
        event_id VARCHAR NOT NULL,
        source VARCHAR,
        code VARCHAR NOT NULL,
        message VARCHAR,
        raw_sha256 VARCHAR,
        raw_excerpt VARCHAR,
        raw_size BIGINT,""" + LEDGER_COLUMNS,
    "ledger_truncations": """
        event_id VARCHAR NOT NULL,
        truncated_partition INTEGER NOT NULL,
        segment VARCHAR,
        cut_at_offset BIGINT,
        bytes_cut BIGINT,
        sha256 VARCHAR,
        quarantine VARCHAR,
        next_index BIGINT,
        reason VARCHAR,""" + LEDGER_COLUMNS,
    "erasures": """
        event_id VARCHAR NOT NULL,
        data_subject VARCHAR NOT NULL,
        requested_by VARCHAR,
        legal_basis VARCHAR,""" + LEDGER_COLUMNS,
    # The ledger's signed checkpoints (C2SP signed notes), one row per checkpoint frame, as
    # stored: not verified here (`certify ledger verify` does that; `note` is the whole text).
    "checkpoints": """
        partition INTEGER NOT NULL,
        size BIGINT NOT NULL,
        root_hash VARCHAR NOT NULL,
        origin VARCHAR,
        key_name VARCHAR,
        key_id VARCHAR,
        signature VARCHAR,
        key_ids VARCHAR[],
        note VARCHAR,
        last_entry_at TIMESTAMPTZ""",
}

# Current permit state: a fold over permit_transitions (the latest move by event time, then by
# ledger position), joined to the request. A view, so it can never disagree with its sources.
PERMITS_VIEW = """
CREATE OR REPLACE VIEW permits AS
WITH latest AS (
    SELECT permit_id,
           arg_max(to_state, (occurred_at, partition, ledger_index)) AS state,
           arg_max(reason, (occurred_at, partition, ledger_index)) AS state_reason,
           arg_max(actor, (occurred_at, partition, ledger_index)) AS state_actor,
           max(occurred_at) AS state_since,
           count(*) AS transitions,
           arg_max(event_id, (occurred_at, partition, ledger_index)) AS last_event_id
    FROM permit_transitions
    GROUP BY permit_id
)
SELECT coalesce(r.permit_id, l.permit_id) AS permit_id,
       l.state, l.state_since, l.state_reason, l.state_actor, l.transitions, l.last_event_id,
       r.permit_type, r.task_id, r.decision_event_id, r.level, r.requested_by, r.worker_id,
       r.environment, r.operations, r.not_before, r.not_after, r.request_sha256,
       r.occurred_at AS requested_at, r.event_id AS request_event_id
FROM latest l FULL OUTER JOIN permit_requests r USING (permit_id)
"""

# Tables that are derived from the ledger (everything but the bookkeeping).
PROJECTED_TABLES = tuple(
    name for name in TABLES if name not in {"projection_meta", "projection_state"}
)


def ddl() -> list[str]:
    statements = [f"CREATE TABLE IF NOT EXISTS {name} ({columns}\n)"
                  for name, columns in TABLES.items()]
    statements.append(PERMITS_VIEW)
    return statements
