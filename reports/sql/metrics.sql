-- System metrics (reports/metrics.py). Each query is named by the comment line before it;
-- {t} is the table prefix ("r_" inside a report: the checkpoint's cut; "" for GET /metrics);
-- $start and $end bound the event time. A CTE read more than once, or joined, is MATERIALIZED:
-- computed once (DuckDB would otherwise inline it at each use; over a year that costs
-- ~0.15 s per report).

-- name: decisions
SELECT level, count(*) AS n FROM {t}decisions
WHERE occurred_at >= $start AND occurred_at < $end
GROUP BY level ORDER BY level;

-- name: approval_times
WITH req AS MATERIALIZED (
    SELECT permit_id, arg_min(level, occurred_at) AS level, min(occurred_at) AS requested_at
    FROM {t}permit_requests WHERE occurred_at >= $start AND occurred_at < $end
    GROUP BY permit_id
), appr AS MATERIALIZED (
    SELECT permit_id, min(occurred_at) AS approved_at FROM {t}permit_transitions
    WHERE to_state = 'approved' AND occurred_at >= $start
    GROUP BY permit_id
), secs AS (
    SELECT r.level, greatest(epoch(a.approved_at - r.requested_at), 0) AS s
    FROM req r JOIN appr a USING (permit_id)
)
SELECT level, count(*) AS n, avg(s) AS mean, quantile_cont(s, 0.5) AS p50,
       quantile_cont(s, 0.95) AS p95, max(s) AS max, sum(s) AS total
FROM secs GROUP BY level ORDER BY level;

-- name: executions
WITH fin AS MATERIALIZED (
    SELECT execution_id, arg_max(status,
               epoch_us(occurred_at)::HUGEINT * 10000000000000 + ledger_index) AS status,
           arg_max(permit_id,
               epoch_us(occurred_at)::HUGEINT * 10000000000000 + ledger_index) AS permit_id,
           arg_max(task_id,
               epoch_us(occurred_at)::HUGEINT * 10000000000000 + ledger_index) AS task_id
    FROM {t}executions
    WHERE occurred_at >= $start AND occurred_at < $end AND status IN ('completed', 'failed')
    GROUP BY execution_id
), permit_level AS (
    SELECT permit_id, max(level) AS level FROM {t}permit_requests
    WHERE permit_id IN (SELECT permit_id FROM fin) GROUP BY permit_id
    UNION ALL
    SELECT override_id, max(level) FROM {t}overrides
    WHERE stage = 'granted' AND override_id IN (SELECT permit_id FROM fin) GROUP BY override_id
), leveled AS MATERIALIZED (
    SELECT f.*, p.level FROM fin f LEFT JOIN permit_level p USING (permit_id)
), task_level AS (  -- only for executions under no permit
    SELECT task_id, max(level) AS level FROM {t}decisions
    WHERE task_id IN (SELECT task_id FROM leveled WHERE level IS NULL) GROUP BY task_id
)
SELECT coalesce(l.level, d.level) AS level, l.status, count(*) AS n
FROM leveled l LEFT JOIN task_level d USING (task_id)
GROUP BY ALL ORDER BY ALL;

-- name: violations
SELECT coalesce(severity, 'unknown') AS severity, rule, count(*) AS n FROM {t}violations
WHERE occurred_at >= $start AND occurred_at < $end
GROUP BY ALL ORDER BY ALL;

-- name: reviews
SELECT assigned_level AS level, verdict, count(*) AS n FROM {t}reviews
WHERE occurred_at >= $start AND occurred_at < $end
GROUP BY ALL ORDER BY ALL;

-- name: emergency
SELECT coalesce(sum(n), 0) AS total, coalesce(max(n), 0) AS max_per_day FROM (
    SELECT date_trunc('day', occurred_at) AS day, count(*) AS n FROM {t}overrides
    WHERE stage = 'granted' AND occurred_at >= $start AND occurred_at < $end
    GROUP BY day) AS days;

-- name: plans
SELECT count(*) AS union_l2, count(*) FILTER (
           WHERE json_type(rollback_plan) = 'OBJECT' AND CAST(rollback_plan AS VARCHAR) <> '{}')
           AS with_plan
FROM {t}permit_requests
WHERE level >= 2 AND occurred_at >= $start AND occurred_at < $end;

-- name: permit_states
WITH req AS MATERIALIZED (
    SELECT DISTINCT permit_id FROM {t}permit_requests
    WHERE occurred_at >= $start AND occurred_at < $end
)
SELECT state, count(*) AS n FROM (
    SELECT t.permit_id, arg_max(t.to_state,
        epoch_us(t.occurred_at)::HUGEINT * 10000000000000 + t.ledger_index) AS state
    FROM {t}permit_transitions t SEMI JOIN req ON t.permit_id = req.permit_id
    GROUP BY t.permit_id)
GROUP BY state ORDER BY state;
