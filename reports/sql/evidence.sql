-- The ledger entries behind each line: its request, decision, every permit transition,
-- approval (signed or refused), execution report, violation, rollback stage and override
-- stage, the entry that started its deployment, and the entries its findings cite. One row
-- per (change, entry), under the entry's most telling role, with the entry's type and leaf
-- hash as the typed row that cites it carries them (projections/schema.py ENTRY_COLUMNS; a
-- finding's entry is also cited under another role, which carries them).
CREATE OR REPLACE TEMP TABLE r_refs AS
WITH refs AS (
    SELECT change_id, 'request' AS role, request_partition AS partition,
           request_index AS ledger_index, request_type AS type, request_leaf AS leaf_hash
    FROM r_changes
    UNION ALL SELECT change_id, 'decision', decision_partition, decision_index, decision_type,
           decision_leaf
        FROM r_changes WHERE decision_index IS NOT NULL
    UNION ALL SELECT t.permit_id, 'transition', t.partition, t.ledger_index, t.type, t.leaf_hash
        FROM c_transitions t
    UNION ALL SELECT a.permit_id, 'approval', a.partition, a.ledger_index, a.type, a.leaf_hash
        FROM c_approvals a
    UNION ALL SELECT x.permit_id, 'execution', x.partition, x.ledger_index, x.type, x.leaf_hash
        FROM c_executions x
    UNION ALL SELECT x.change_id, 'execution', x.partition, x.ledger_index, x.type, x.leaf_hash
        FROM c_unpermitted x
    UNION ALL SELECT v.permit_id, 'violation', v.partition, v.ledger_index, v.type, v.leaf_hash
        FROM c_violations v
    UNION ALL SELECT r.permit_id, 'rollback', r.partition, r.ledger_index, r.type, r.leaf_hash
        FROM c_rollbacks r
    UNION ALL SELECT o.override_id, 'override', o.partition, o.ledger_index, o.type,
           o.leaf_hash
        FROM c_overrides o
    UNION ALL SELECT change_id, 'deployment', deployed_partition, deployed_index, deployed_type,
           deployed_leaf
        FROM r_timeline WHERE deployed_index IS NOT NULL
    UNION ALL SELECT change_id, 'finding', partition, ledger_index, NULL, NULL
        FROM r_exceptions WHERE change_id IS NOT NULL AND ledger_index IS NOT NULL
), best AS (
    SELECT change_id, partition, ledger_index,
           -- an entry that plays several roles is listed once, under its most telling role
           arg_min(role, list_position(
               ['request', 'decision', 'approval', 'deployment', 'execution', 'violation',
                'finding', 'transition', 'rollback', 'override'], role)) AS role,
           -- every row of one position names the same entry: any that carries them
           any_value(type) AS type, any_value(leaf_hash) AS leaf_hash
    FROM refs GROUP BY change_id, partition, ledger_index
)
SELECT * FROM best;

-- Every entry the report cites (the lines' evidence and every finding's entry), once: its
-- type and leaf hash (what evidence.entries gives), as r_refs carries them. Only an entry no
-- typed row gave them for (a finding of no change: a violation under no permit) is read from
-- `events`, on its position: found by the position columns alone (two integers), then that
-- row read by row id (with none to find, the join reads no row group of `events`).
CREATE OR REPLACE TEMP TABLE r_cited AS
WITH known AS (
    SELECT partition, ledger_index, any_value(type) AS type, any_value(leaf_hash) AS leaf_hash
    FROM r_refs WHERE leaf_hash IS NOT NULL
    GROUP BY partition, ledger_index
), unknown AS (
    SELECT partition, ledger_index FROM (
        SELECT partition, ledger_index FROM r_refs WHERE leaf_hash IS NULL
        UNION ALL
        SELECT partition, ledger_index FROM r_exceptions
        WHERE change_id IS NULL AND ledger_index IS NOT NULL) u
    ANTI JOIN known k USING (partition, ledger_index)
)
SELECT * FROM known
UNION ALL
SELECT e.partition, e.ledger_index, e.type, e.leaf_hash
FROM events e SEMI JOIN (
    SELECT f.rowid AS row_id
    FROM events f SEMI JOIN unknown x
    ON f.partition = x.partition AND f.ledger_index = x.ledger_index) k
    ON e.rowid = k.row_id;

-- Each line's evidence with the entries' ids and times (for auditors' own queries; the report
-- itself does not read it).
CREATE OR REPLACE TEMP VIEW r_evidence AS
SELECT b.change_id, b.role, e.event_id, e.type, b.partition, b.ledger_index, e.leaf_hash,
       e.occurred_at
FROM r_refs b JOIN events e ON e.partition = b.partition AND e.ledger_index = b.ledger_index;
