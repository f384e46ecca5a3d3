-- The ledger entries behind each line: its request, decision, every permit transition,
-- approval (signed or refused), execution report, violation, rollback stage and override
-- stage, and the operation that started its deployment. One row per (change, entry).
CREATE OR REPLACE TEMP TABLE r_evidence AS
WITH refs AS (
    SELECT change_id, 'request' AS role, request_event_id AS event_id FROM r_changes
    UNION ALL SELECT change_id, 'decision', decision_event_id FROM r_changes
    UNION ALL SELECT t.permit_id, 'transition', t.event_id
        FROM r_permit_transitions t SEMI JOIN r_changes c ON t.permit_id = c.change_id
    UNION ALL SELECT a.permit_id, 'approval', a.event_id
        FROM r_approvals a SEMI JOIN r_changes c ON a.permit_id = c.change_id
    UNION ALL SELECT x.permit_id, 'execution', x.event_id
        FROM r_executions x SEMI JOIN r_changes c ON x.permit_id = c.change_id
    UNION ALL SELECT 'exec:' || x.execution_id, 'execution', x.event_id
        FROM r_executions x SEMI JOIN r_changes c ON 'exec:' || x.execution_id = c.change_id
    UNION ALL SELECT v.permit_id, 'violation', v.event_id
        FROM r_violations v SEMI JOIN r_changes c ON v.permit_id = c.change_id
    UNION ALL SELECT r.permit_id, 'rollback', r.event_id
        FROM r_rollbacks r SEMI JOIN r_changes c ON r.permit_id = c.change_id
    UNION ALL SELECT o.override_id, 'override', o.event_id
        FROM r_overrides o SEMI JOIN r_changes c ON o.override_id = c.change_id
    UNION ALL SELECT change_id, 'deployment', deployed_event FROM r_timeline
    UNION ALL SELECT change_id, 'finding', event_id FROM r_exceptions
)
SELECT change_id, role, event_id, type, partition, ledger_index, leaf_hash, occurred_at
FROM (
    SELECT f.change_id, f.role, f.event_id, e.type, e.partition, e.ledger_index, e.leaf_hash,
           e.occurred_at,
           -- an entry that plays several roles is listed once, under its most telling role
           row_number() OVER (PARTITION BY f.change_id, f.event_id ORDER BY list_position(
               ['request', 'decision', 'approval', 'deployment', 'execution', 'violation',
                'finding', 'transition', 'rollback', 'override'], f.role)) AS n
    FROM refs f JOIN r_events e ON e.event_id = f.event_id
    WHERE f.event_id IS NOT NULL)
WHERE n = 1
ORDER BY change_id, partition, ledger_index;
