-- HIPAA 164.312(b): every access to PHI in the period. A permit touches PHI when its scope
-- names the data class, or its certification decision found PHI (minimum.data.phi, or PHI as
-- the sensitivity factor); an override when its scope names it; an operation when the
-- operation itself names it. Accesses are the workers' authorization answers (allowed or
-- denied: an attempt is an access too) and their execution reports.
CREATE OR REPLACE TEMP TABLE r_phi_access AS
WITH phi_decisions AS (
    SELECT event_id, partition, ledger_index FROM r_minimums WHERE rule = 'minimum.data.phi'
    UNION
    SELECT event_id, partition, ledger_index FROM r_factors
    WHERE factor = 'data_sensitivity' AND lower(value) = 'phi'
), phi_permits AS (
    SELECT r.permit_id FROM r_permit_requests r
    WHERE list_contains(list_transform(coalesce(r.data_classes, []::VARCHAR[]), lambda x: lower(x)), 'phi')
       OR r.decision_event_id IN (SELECT event_id FROM phi_decisions)
    UNION
    SELECT o.override_id FROM r_overrides o
    WHERE o.stage = 'requested' AND list_contains(list_transform(coalesce(
        from_json(o.scope->'$.data_classes', '["VARCHAR"]'), []::VARCHAR[]), lambda x: lower(x)), 'phi')
), phi_tasks AS (
    -- a decision's factors and minimums are rows of its entry: matched on its position
    SELECT d.task_id FROM r_decisions d SEMI JOIN phi_decisions x
        ON d.partition = x.partition AND d.ledger_index = x.ledger_index
)
SELECT * FROM (
    SELECT 'operation' AS access, o.occurred_at, o.worker_id, o.permit_id,
           o.operation_name AS operation,
           CASE WHEN o.allowed THEN 'allowed' ELSE 'denied' END AS outcome,
           o.reason_code AS detail, o.event_id, o.partition, o.ledger_index
    FROM r_operations o, _params p
    WHERE o.occurred_at >= {start} AND o.occurred_at < {end}
      AND (o.permit_id IN (SELECT permit_id FROM phi_permits)
           OR list_contains(list_transform(coalesce(
                  try(from_json(o.operation->'$.data_classes', '["VARCHAR"]')), []::VARCHAR[]),
                  lambda x: lower(x)), 'phi'))
    UNION ALL
    SELECT 'execution', x.occurred_at, x.worker_id, x.permit_id,
           array_to_string(x.operations, ', '), x.status, x.execution_id, x.event_id,
           x.partition, x.ledger_index
    FROM r_executions x, _params p
    WHERE x.occurred_at >= {start} AND x.occurred_at < {end}
      AND (x.permit_id IN (SELECT permit_id FROM phi_permits)
           OR x.task_id IN (SELECT task_id FROM phi_tasks))
)
ORDER BY occurred_at, event_id;
