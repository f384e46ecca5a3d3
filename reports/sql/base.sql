-- The report's view of the projections: only ledger entries below the signed checkpoint of
-- their partition, so a report is exactly "the ledger up to these checkpoints". Every other
-- report query reads these r_* views, never the tables. {cut} is the size per partition as
-- a CASE expression (a filter DuckDB pushes into the scans), e.g.
--   CASE partition WHEN 0 THEN 5120 WHEN 1 THEN 4988 ELSE 0 END
-- (the same sizes are in the temp table _cut).
CREATE OR REPLACE TEMP VIEW r_events AS
    SELECT * FROM events WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_decisions AS
    SELECT * FROM decisions WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_factors AS
    SELECT * FROM factors WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_minimums AS
    SELECT * FROM minimums WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_permit_requests AS
    SELECT * FROM permit_requests WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_permit_transitions AS
    SELECT * FROM permit_transitions WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_approvals AS
    SELECT * FROM approvals WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_approvers AS
    SELECT * FROM approvers WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_operations AS
    SELECT * FROM operations WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_executions AS
    SELECT * FROM executions WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_reviews AS
    SELECT * FROM reviews WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_rollbacks AS
    SELECT * FROM rollbacks WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_violations AS
    SELECT * FROM violations WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_overrides AS
    SELECT * FROM overrides WHERE ledger_index < {cut};
CREATE OR REPLACE TEMP VIEW r_erasures AS
    SELECT * FROM erasures WHERE ledger_index < {cut};
