-- The report's view of the projections: only ledger entries below the signed checkpoint of
-- their partition (_cut: partition, size), so a report is exactly "the ledger up to these
-- checkpoints". Every other report query reads these r_* views, never the tables.
CREATE OR REPLACE TEMP VIEW r_events AS
    SELECT t.* FROM events t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_decisions AS
    SELECT t.* FROM decisions t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_factors AS
    SELECT t.* FROM factors t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_minimums AS
    SELECT t.* FROM minimums t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_permit_requests AS
    SELECT t.* FROM permit_requests t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_permit_transitions AS
    SELECT t.* FROM permit_transitions t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_approvals AS
    SELECT t.* FROM approvals t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_approvers AS
    SELECT t.* FROM approvers t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_operations AS
    SELECT t.* FROM operations t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_executions AS
    SELECT t.* FROM executions t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_reviews AS
    SELECT t.* FROM reviews t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_rollbacks AS
    SELECT t.* FROM rollbacks t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_violations AS
    SELECT t.* FROM violations t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_overrides AS
    SELECT t.* FROM overrides t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
CREATE OR REPLACE TEMP VIEW r_erasures AS
    SELECT t.* FROM erasures t JOIN _cut c ON t.partition = c.partition AND t.ledger_index < c.size;
