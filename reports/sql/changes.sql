-- The population: every change in the period, one row each.
--   permit       a permit request (permit_requests), at its request time
--   emergency    an emergency override that was granted, at its (signed) request time
--   unpermitted  an execution reported under no known permit (not a Level 0 task's), at its
--                first report: a "ticketless" change
-- _params (one row, columns p_*): see reports/build.py; {start}, {end}: the period as
-- TIMESTAMPTZ constants (so the scans skip row groups outside it).
-- (time, ledger position) as one number, for "the first/last by time, then ledger order"
-- (arg_min over a HUGEINT is much cheaper than over a struct; positions are < 10^13)
CREATE OR REPLACE TEMP MACRO pos_key(t, i) AS (epoch_us(t)::HUGEINT * 10000000000000 + i);
CREATE OR REPLACE TEMP MACRO nonempty(j) AS
    (j IS NOT NULL AND CAST(j AS VARCHAR) NOT IN ('null', '{}', '[]', '""', 'false'));

-- Decisions that put a change in scope (tagged with the framework, or finding its data
-- classes): the permits of the others are not even read (SOC 2 takes every change anyway).
-- The tags are one cheap scan of the decisions. Data classes (HIPAA, GDPR) are in the 5M-row
-- factors, so for them only the decisions the period's requests name are looked at
-- (r_named_ids, r_named). A decision comes before its request: first those of the 30 days
-- before and in the period (a constant time range: the scan skips the row groups of other
-- times), then any named that this did not find, wherever they are (a full scan only when
-- there are some: with none to look for, DuckDB's join filter skips the row groups). A
-- decision's factors and minimums are rows of its entry (its event id, time and position):
-- only the time range of those decisions is read. For a period longer than a quarter
-- ({long_period}: true) that costs more than one scan of all the factors, which is done instead.
CREATE OR REPLACE TEMP TABLE r_named_ids AS
SELECT DISTINCT r.decision_event_id AS event_id FROM r_permit_requests r, _params p
WHERE NOT {long_period} AND NOT p.p_all_changes AND len(p.p_classes) > 0
  AND r.occurred_at >= {start} AND r.occurred_at < {end} AND r.decision_event_id IS NOT NULL;
CREATE OR REPLACE TEMP TABLE r_named AS
SELECT d.event_id, d.occurred_at
FROM r_decisions d SEMI JOIN r_named_ids n ON d.event_id = n.event_id
WHERE d.occurred_at >= {start} - INTERVAL 30 DAY AND d.occurred_at < {end};
INSERT INTO r_named
SELECT d.event_id, d.occurred_at
FROM r_decisions d
SEMI JOIN (SELECT event_id FROM r_named_ids
           WHERE event_id NOT IN (SELECT event_id FROM r_named)) n ON d.event_id = n.event_id;
CREATE OR REPLACE TEMP TABLE r_scoped AS
SELECT d.event_id FROM r_decisions d, _params p
WHERE NOT p.p_all_changes AND list_contains(d.compliance_frameworks, p.p_framework)
UNION
SELECT m.event_id FROM r_minimums m, _params p
WHERE NOT p.p_all_changes AND len(p.p_classes) > 0 AND m.rule LIKE 'minimum.data.%'
  AND ({long_period} OR (m.event_id IN (SELECT event_id FROM r_named_ids)
       AND m.occurred_at BETWEEN (SELECT min(occurred_at) FROM r_named)
                             AND (SELECT max(occurred_at) FROM r_named)))
  AND list_contains(p.p_classes, lower(replace(m.rule, 'minimum.data.', '')))
UNION
SELECT f.event_id FROM r_factors f, _params p
WHERE NOT p.p_all_changes AND len(p.p_classes) > 0 AND f.factor = 'data_sensitivity'
  AND ({long_period} OR (f.event_id IN (SELECT event_id FROM r_named_ids)
       AND f.occurred_at BETWEEN (SELECT min(occurred_at) FROM r_named)
                             AND (SELECT max(occurred_at) FROM r_named)))
  AND list_contains(p.p_classes, lower(f.value));

CREATE OR REPLACE TEMP TABLE r_candidates AS
WITH prm AS (
    SELECT r.permit_id AS change_id, 'permit' AS kind, r.permit_type, r.task_id, r.level,
           r.requested_by, r.worker_id, r.occurred_at AS changed_at, r.environment,
           r.operations, r.services, r.data_classes, r.regions, r.justification,
           r.rollback_plan, r.event_id AS request_event_id, r.decision_event_id,
           r.partition AS request_partition, r.ledger_index AS request_index,
           NULL::VARCHAR AS named_permit, NULL::TIMESTAMPTZ AS review_due_at
    FROM r_permit_requests r, _params p
    WHERE r.occurred_at >= {start} AND r.occurred_at < {end}
      AND (p.p_all_changes OR r.decision_event_id IN (SELECT event_id FROM r_scoped)
           OR list_has_any(list_transform(coalesce(r.data_classes, []::VARCHAR[]),
                                          lambda x: lower(x)), p.p_classes))
    QUALIFY row_number() OVER (PARTITION BY r.permit_id
                               ORDER BY r.occurred_at, r.ledger_index) = 1
), granted AS (
    SELECT override_id, arg_min(level, pos_key(occurred_at, ledger_index)) AS level,
           min(review_due_at) AS review_due_at
    FROM r_overrides WHERE stage = 'granted' GROUP BY override_id
), ovr AS (
    SELECT o.override_id AS change_id, 'emergency' AS kind, 'emergency' AS permit_type,
           NULL::VARCHAR AS task_id, coalesce(g.level, 3)::INTEGER AS level,
           o.commander_id AS requested_by, o.worker_id, o.occurred_at AS changed_at,
           o.scope->>'$.environment' AS environment,
           from_json(o.scope->'$.operations', '["VARCHAR"]') AS operations,
           from_json(o.scope->'$.services', '["VARCHAR"]') AS services,
           from_json(o.scope->'$.data_classes', '["VARCHAR"]') AS data_classes,
           from_json(o.scope->'$.regions', '["VARCHAR"]') AS regions,
           o.reason AS justification, NULL::JSON AS rollback_plan,
           o.event_id AS request_event_id, NULL::VARCHAR AS decision_event_id,
           o.partition AS request_partition, o.ledger_index AS request_index,
           NULL::VARCHAR AS named_permit, g.review_due_at
    FROM r_overrides o JOIN granted g USING (override_id), _params p
    WHERE o.stage = 'requested' AND o.occurred_at >= {start} AND o.occurred_at < {end}
    QUALIFY row_number() OVER (PARTITION BY o.override_id
                               ORDER BY o.occurred_at, o.ledger_index) = 1
), orphans AS (
    -- executions with a report in the period under no known permit (only the period's
    -- reports are checked against every permit: an execution whose reports in the period
    -- all name known permits would start outside it, and is not the period's change)
    SELECT DISTINCT y.execution_id FROM r_executions y
    WHERE y.occurred_at >= {start} AND y.occurred_at < {end}
      AND NOT EXISTS (SELECT 1 FROM r_permit_requests r WHERE r.permit_id = y.permit_id)
      AND NOT EXISTS (SELECT 1 FROM r_overrides o WHERE o.override_id = y.permit_id)
), exe_raw AS (
    -- every report of those executions under no known permit (the first may precede the
    -- period: such a change is not the period's, exe_in drops it)
    SELECT x.* FROM r_executions x SEMI JOIN orphans o ON x.execution_id = o.execution_id
    WHERE NOT EXISTS (SELECT 1 FROM r_permit_requests r WHERE r.permit_id = x.permit_id)
      AND NOT EXISTS (SELECT 1 FROM r_overrides o WHERE o.override_id = x.permit_id)
), exe AS (
    SELECT 'exec:' || x.execution_id AS change_id, 'unpermitted' AS kind,
           NULL::VARCHAR AS permit_type,
           arg_min(x.task_id, pos_key(x.occurred_at, x.ledger_index)) AS task_id,
           NULL::INTEGER AS level, NULL::VARCHAR AS requested_by,
           arg_min(x.worker_id, pos_key(x.occurred_at, x.ledger_index)) AS worker_id,
           min(x.occurred_at) AS changed_at, NULL::VARCHAR AS environment,
           list_distinct(flatten(list(x.operations))) AS operations,
           NULL::VARCHAR[] AS services, NULL::VARCHAR[] AS data_classes,
           NULL::VARCHAR[] AS regions, NULL::VARCHAR AS justification,
           NULL::JSON AS rollback_plan,
           arg_min(x.event_id, pos_key(x.occurred_at, x.ledger_index)) AS request_event_id,
           arg_min(x.partition, pos_key(x.occurred_at, x.ledger_index)) AS request_partition,
           arg_min(x.ledger_index, pos_key(x.occurred_at, x.ledger_index)) AS request_index,
           arg_min(x.permit_id, pos_key(x.occurred_at, x.ledger_index)) AS named_permit,
           NULL::TIMESTAMPTZ AS review_due_at
    FROM exe_raw x GROUP BY x.execution_id
), exe_in AS (
    SELECT e.*, d.event_id AS decision_event_id
    FROM exe e
    LEFT JOIN (SELECT task_id, arg_max(event_id, pos_key(occurred_at, ledger_index)) AS event_id
               FROM r_decisions WHERE task_id IN (SELECT task_id FROM exe_raw)
               GROUP BY task_id) d ON d.task_id = e.task_id
    CROSS JOIN _params p
    WHERE e.changed_at >= {start} AND e.changed_at < {end}
)
SELECT * FROM prm
UNION ALL BY NAME SELECT * FROM ovr
UNION ALL BY NAME SELECT * FROM exe_in;

-- The candidates' decisions, read once (the small side is the one hashed: a semi join,
-- probed by the decisions' scan, never a hash table over every decision). A decision comes
-- before its request: first those of the 30 days before and in the period (a constant time
-- range: the scan skips the other row groups), then any the candidates name that this did
-- not find, wherever they are (a full scan only when there are some: with none to look
-- for, DuckDB's join filter skips the row groups).
CREATE OR REPLACE TEMP TABLE c_decisions AS
SELECT d.* FROM r_decisions d SEMI JOIN r_candidates c ON d.event_id = c.decision_event_id
WHERE d.occurred_at >= {start} - INTERVAL 30 DAY AND d.occurred_at < {end};
INSERT INTO c_decisions
SELECT d.* FROM r_decisions d
SEMI JOIN (SELECT decision_event_id FROM r_candidates
           WHERE decision_event_id IS NOT NULL
             AND decision_event_id NOT IN (SELECT event_id FROM c_decisions)) m
    ON d.event_id = m.decision_event_id;

-- A decision's factors and minimums are rows of its entry (its event id, time and position):
-- only the time range of the candidates' decisions is read, and they are matched on the
-- position (two integers; a quarter of the cost of matching the event id over a year).
CREATE OR REPLACE TEMP TABLE r_changes AS
WITH cls AS (
    SELECT event_id, list_distinct(list(cls)) AS classes FROM (
        SELECT m.event_id, lower(replace(m.rule, 'minimum.data.', '')) AS cls
        FROM r_minimums m SEMI JOIN c_decisions d
            ON m.partition = d.partition AND m.ledger_index = d.ledger_index
        WHERE m.rule LIKE 'minimum.data.%' AND m.occurred_at BETWEEN
            (SELECT min(occurred_at) FROM c_decisions) AND (SELECT max(occurred_at) FROM c_decisions)
        UNION ALL
        SELECT f.event_id, lower(f.value) AS cls
        FROM r_factors f SEMI JOIN c_decisions d
            ON f.partition = d.partition AND f.ledger_index = d.ledger_index
        WHERE f.factor = 'data_sensitivity' AND f.value IS NOT NULL AND f.occurred_at BETWEEN
            (SELECT min(occurred_at) FROM c_decisions) AND (SELECT max(occurred_at) FROM c_decisions))
    GROUP BY event_id
), joined AS (
    SELECT c.* EXCLUDE (level), coalesce(c.level, d.level) AS level,
           d.level AS decision_level,
           coalesce(d.compliance_frameworks, []::VARCHAR[]) AS frameworks,
           coalesce(d.required_artefacts, []::VARCHAR[]) AS required_artefacts,
           d.retention_days, d.score, d.risk_level, d.event_id IS NOT NULL AS has_decision,
           d.partition AS decision_partition, d.ledger_index AS decision_index,
           list_sort(list_distinct(list_concat(
               list_transform(coalesce(c.data_classes, []::VARCHAR[]), lambda x: lower(x)),
               coalesce(cls.classes, []::VARCHAR[])))) AS all_classes
    FROM r_candidates c
    LEFT JOIN c_decisions d ON d.event_id = c.decision_event_id
    LEFT JOIN cls ON cls.event_id = c.decision_event_id
)
SELECT j.*, list_contains(j.frameworks, p.p_framework) AS tagged
FROM joined j, _params p
WHERE NOT (j.kind = 'unpermitted' AND j.decision_level = 0)
  AND (p.p_all_changes OR j.kind = 'emergency'
       OR (j.kind = 'unpermitted' AND NOT j.has_decision)
       OR list_contains(j.frameworks, p.p_framework)
       OR list_has_any(j.all_classes, p.p_classes));
