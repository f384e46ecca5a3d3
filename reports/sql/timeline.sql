-- Per change: when it was approved, when deployment started (the first of: execution
-- started, an execution report, an allowed operation), its approvers, its state, whether it
-- carries test evidence and a usable rollback plan, and (emergency) its post-incident review.
-- The rows about the period's changes, read once from each big table (the timeline, the
-- exceptions and the evidence all work on these).
CREATE OR REPLACE TEMP TABLE c_transitions AS
    SELECT t.* FROM r_permit_transitions t SEMI JOIN r_changes c ON t.permit_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_approvals AS
    SELECT a.* FROM r_approvals a SEMI JOIN r_changes c ON a.permit_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_executions AS
    SELECT x.* FROM r_executions x SEMI JOIN r_changes c ON x.permit_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_operations AS
    SELECT o.* FROM r_operations o SEMI JOIN r_changes c ON o.permit_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_overrides AS
    SELECT o.* FROM r_overrides o SEMI JOIN r_changes c ON o.override_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_violations AS
    SELECT v.* FROM r_violations v SEMI JOIN r_changes c ON v.permit_id = c.change_id;
CREATE OR REPLACE TEMP TABLE c_rollbacks AS
    SELECT r.* FROM r_rollbacks r SEMI JOIN r_changes c ON r.permit_id = c.change_id;
-- the execution reports of the ticketless changes (change id "exec:<execution id>")
CREATE OR REPLACE TEMP TABLE c_unpermitted AS
    SELECT 'exec:' || x.execution_id AS change_id, x.*
    FROM r_executions x
    SEMI JOIN (SELECT substr(change_id, 6) AS execution_id FROM r_changes
               WHERE kind = 'unpermitted') u ON x.execution_id = u.execution_id;

CREATE OR REPLACE TEMP TABLE r_timeline AS
WITH approved AS (
    SELECT t.permit_id AS change_id, min(t.occurred_at) AS approved_at,
           arg_min(t.event_id, pos_key(t.occurred_at, t.ledger_index)) AS approved_event,
           arg_min(t.partition, pos_key(t.occurred_at, t.ledger_index)) AS approved_partition,
           arg_min(t.ledger_index, pos_key(t.occurred_at, t.ledger_index)) AS approved_index
    FROM c_transitions t
    WHERE t.to_state = 'approved'
    GROUP BY t.permit_id
), deploys AS (
    SELECT t.permit_id AS change_id, t.occurred_at, t.partition, t.ledger_index, t.event_id
    FROM c_transitions t
    WHERE t.type = 'permit.execution_started'
    UNION ALL
    SELECT x.permit_id, x.occurred_at, x.partition, x.ledger_index, x.event_id
    FROM c_executions x
    UNION ALL
    SELECT x.change_id, x.occurred_at, x.partition, x.ledger_index, x.event_id
    FROM c_unpermitted x
    UNION ALL
    SELECT o.permit_id, o.occurred_at, o.partition, o.ledger_index, o.event_id
    FROM c_operations o
    WHERE o.allowed
), deployed AS (
    SELECT change_id, min(occurred_at) AS deployed_at,
           arg_min(event_id, pos_key(occurred_at, ledger_index)) AS deployed_event,
           arg_min(partition, pos_key(occurred_at, ledger_index)) AS deployed_partition,
           arg_min(ledger_index, pos_key(occurred_at, ledger_index)) AS deployed_index
    FROM deploys GROUP BY change_id
), signed AS (
    SELECT a.permit_id AS change_id,
           -- in ledger order: sorted by (time, position) after the aggregate (cheaper than
           -- an ordered aggregate)
           list_transform(list_sort(list({
               'k': pos_key(a.occurred_at, a.ledger_index),
               'v': {'approver_id': a.approver_id, 'role': a.approver_role,
                     'decided_at': a.decided_at, 'recorded_at': a.occurred_at,
                     'event_id': a.event_id}})), lambda x: x.v) AS approvals
    FROM c_approvals a
    WHERE a.status = 'signed' AND a.decision = 'approve'
    GROUP BY a.permit_id
), tested AS (
    SELECT x.permit_id AS change_id,
           bool_or(list_bool_or(list_transform(
               json_extract(x.outcome, ['$.test_results', '$.tests']), lambda j: nonempty(j))))
               AS tested
    FROM c_executions x
    GROUP BY x.permit_id
), state AS (
    SELECT t.permit_id AS change_id,
           arg_max(t.to_state, pos_key(t.occurred_at, t.ledger_index)) AS state
    FROM c_transitions t
    GROUP BY t.permit_id
), stages AS (
    SELECT o.override_id AS change_id,
           arg_max(o.stage, pos_key(o.occurred_at, o.ledger_index)) AS stage,
           min(o.occurred_at) FILTER (WHERE o.stage IN ('review_submitted', 'review_completed'))
               AS reviewed_at,
           arg_min(o.event_id, pos_key(o.occurred_at, o.ledger_index))
               FILTER (WHERE o.stage IN ('review_submitted', 'review_completed'))
               AS review_event
    FROM c_overrides o
    GROUP BY o.override_id
)
SELECT c.change_id,
       a.approved_at, a.approved_event, a.approved_partition, a.approved_index,
       d.deployed_at, d.deployed_event, d.deployed_partition, d.deployed_index,
       coalesce(s.approvals, []) AS approvals,
       coalesce(st.state, CASE c.kind WHEN 'emergency' THEN g.stage
                                      WHEN 'unpermitted' THEN 'no permit' END) AS state,
       (nonempty(c.pj[1]) OR nonempty(c.pj[2]) OR coalesce(te.tested, false)) AS tested,
       (c.plan_object AND ((nonempty(c.pj[3]) AND nonempty(c.pj[4]))
                           OR (nonempty(c.pj[5]) AND nonempty(c.pj[6])))) IS TRUE AS plan_ok,
       g.reviewed_at, g.review_event
FROM (SELECT change_id, kind, json_type(rollback_plan) = 'OBJECT' AS plan_object,
             -- the plan parsed once: test results (two spellings), steps + verification,
             -- or rollback_procedure + verification_procedure
             json_extract(rollback_plan, ['$.testing_evidence.test_results', '$.test_results',
                                          '$.steps', '$.verification', '$.rollback_procedure',
                                          '$.verification_procedure']) AS pj
      FROM r_changes) c
LEFT JOIN approved a USING (change_id)
LEFT JOIN deployed d USING (change_id)
LEFT JOIN signed s USING (change_id)
LEFT JOIN tested te USING (change_id)
LEFT JOIN state st USING (change_id)
LEFT JOIN stages g USING (change_id);
