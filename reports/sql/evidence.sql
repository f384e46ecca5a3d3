-- The ledger entries behind each line: its request, decision, every permit transition,
-- approval (signed or refused), execution report, violation, rollback stage and override
-- stage, the entry that started its deployment, and the entries its findings cite. One row
-- per (change, entry), under the entry's most telling role. Positions come from the typed
-- tables; the leaf hash, type and time from `events`, joined on (partition, ledger_index)
-- (integers, and the narrow index range of a period lets DuckDB skip most row groups).
CREATE OR REPLACE TEMP TABLE r_refs AS
WITH refs AS (
    SELECT change_id, 'request' AS role, request_partition AS partition,
           request_index AS ledger_index FROM r_changes
    UNION ALL SELECT change_id, 'decision', decision_partition, decision_index
        FROM r_changes WHERE decision_index IS NOT NULL
    UNION ALL SELECT t.permit_id, 'transition', t.partition, t.ledger_index
        FROM c_transitions t
    UNION ALL SELECT a.permit_id, 'approval', a.partition, a.ledger_index
        FROM c_approvals a
    UNION ALL SELECT x.permit_id, 'execution', x.partition, x.ledger_index
        FROM c_executions x
    UNION ALL SELECT x.change_id, 'execution', x.partition, x.ledger_index
        FROM c_unpermitted x
    UNION ALL SELECT v.permit_id, 'violation', v.partition, v.ledger_index
        FROM c_violations v
    UNION ALL SELECT r.permit_id, 'rollback', r.partition, r.ledger_index
        FROM c_rollbacks r
    UNION ALL SELECT o.override_id, 'override', o.partition, o.ledger_index
        FROM c_overrides o
    UNION ALL SELECT change_id, 'deployment', deployed_partition, deployed_index
        FROM r_timeline WHERE deployed_index IS NOT NULL
    UNION ALL SELECT change_id, 'finding', partition, ledger_index
        FROM r_exceptions WHERE change_id IS NOT NULL AND ledger_index IS NOT NULL
), best AS (
    SELECT change_id, partition, ledger_index,
           -- an entry that plays several roles is listed once, under its most telling role
           arg_min(role, list_position(
               ['request', 'decision', 'approval', 'deployment', 'execution', 'violation',
                'finding', 'transition', 'rollback', 'override'], role)) AS role
    FROM refs GROUP BY change_id, partition, ledger_index
)
SELECT * FROM best;

-- Every entry the report cites (the lines' evidence and every finding's entry), read from
-- `events` once, on ledger position: its type and leaf hash (what evidence.entries gives). In
-- two steps of one statement: the cited rows are found by their position columns alone (two
-- integers), then only those rows' wide columns are read by row id; one join reading every
-- wide column of `events` costs about three times as much over a year. Semi joins both: an
-- entry cited by several lines is read once without first making the positions distinct.
CREATE OR REPLACE TEMP TABLE r_cited AS
SELECT e.partition, e.ledger_index, e.type, e.leaf_hash
FROM events e SEMI JOIN (
    SELECT f.rowid AS row_id
    FROM events f SEMI JOIN (
        SELECT partition, ledger_index FROM r_refs
        UNION ALL
        SELECT partition, ledger_index FROM r_exceptions
        WHERE change_id IS NULL AND ledger_index IS NOT NULL) x
    ON f.partition = x.partition AND f.ledger_index = x.ledger_index) k
    ON e.rowid = k.row_id;

-- Each line's evidence with the entries' ids and times (for auditors' own queries; the report
-- itself does not read it).
CREATE OR REPLACE TEMP VIEW r_evidence AS
SELECT b.change_id, b.role, e.event_id, e.type, b.partition, b.ledger_index, e.leaf_hash,
       e.occurred_at
FROM r_refs b JOIN events e ON e.partition = b.partition AND e.ledger_index = b.ledger_index;
