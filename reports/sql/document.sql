-- The report's lines as JSON, built inside DuckDB (one string per section, parsed once in
-- Python, if at all): each row's JSON made on its own (in parallel) and the texts joined in
-- order (string_agg): ~3x cheaper than one to_json over a list of every row, which one thread
-- writes. Times in the one spelling of events.format_time; evidence cited as
-- "<partition>:<index>" (keys of the report's evidence.entries), in ledger order. Each query
-- is named by the comment before it.

-- name: lines
WITH ev AS (
    -- a line cites entries by position "<partition>:<index>"; evidence.entries has each
    -- entry's id, type, leaf hash and proof once (a report cites an entry from several places)
    -- (sorted as one BIGINT per position, cheaper than structs; indexes are < 10^13)
    SELECT change_id,
           list_transform(list_sort(list(partition::BIGINT * 10000000000000 + ledger_index)),
                          lambda x: (x // 10000000000000) || ':' || (x % 10000000000000))
               AS evidence
    FROM r_refs GROUP BY change_id
)
SELECT '[' || coalesce(string_agg(to_json({
    'change_id': c.change_id, 'kind': c.kind, 'permit_type': c.permit_type,
    'task_id': c.task_id, 'level': c.level, 'decision_level': c.decision_level,
    'frameworks': c.frameworks, 'data_classes': c.all_classes, 'environment': c.environment,
    'operations': c.operations, 'services': c.services, 'requested_by': c.requested_by,
    'worker_id': c.worker_id,
    'changed_at': strftime(c.changed_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'weekend': dayofweek(c.changed_at) IN (0, 6),
    'justification': c.justification, 'score': c.score, 'risk_level': c.risk_level,
    'state': t.state,
    'approved_at': strftime(t.approved_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'approvers': list_transform(t.approvals, lambda a: {
        'approver_id': a.approver_id, 'role': a.role,
        'decided_at': strftime(a.decided_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
        'recorded_at': strftime(a.recorded_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
        'event_id': a.event_id}),
    'deployed_at': strftime(t.deployed_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'test_evidence': t.tested, 'rollback_plan': t.plan_ok,
    'review_due_at': strftime(c.review_due_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'reviewed_at': strftime(t.reviewed_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'evidence': coalesce(ev.evidence, []),
    'exceptions': coalesce(xc.codes, []), 'sampled': s.rank})::VARCHAR, ','
    ORDER BY c.changed_at, c.change_id), '') || ']'
FROM r_changes c JOIN r_timeline t USING (change_id) LEFT JOIN ev USING (change_id)
-- the line's exception codes (sorted, once each) and its rank in the sample (_sample: drawn
-- in Python from the seed, reports/sample.py)
LEFT JOIN (SELECT change_id, list_sort(list_distinct(list(code))) AS codes FROM r_exceptions
           WHERE change_id IS NOT NULL GROUP BY change_id) xc USING (change_id)
LEFT JOIN _sample s USING (change_id);

-- name: entries
-- evidence.entries: every cited entry once, keyed "<partition>:<index>", in ledger order: its
-- type and leaf hash (the position and leaf hash pin the entry; its bytes are the ledger's).
-- The inclusion proofs are evidence.multiproofs, one per partition (reports/build.py).
SELECT '{' || coalesce(string_agg('"' || partition || ':' || ledger_index || '":' ||
    json_object('type', type, 'leaf_hash', leaf_hash)::VARCHAR, ','
    ORDER BY partition, ledger_index), '') || '}'
FROM r_entries;

-- name: exceptions
SELECT '[' || coalesce(string_agg(to_json({
    'change_id': x.change_id, 'code': x.code, 'detail': x.detail,
    'evidence': CASE WHEN x.ledger_index IS NULL THEN []
                     ELSE [x.partition || ':' || x.ledger_index] END})::VARCHAR, ','
    ORDER BY x.code, x.change_id NULLS LAST, x.partition, x.ledger_index), '') || ']'
FROM r_exceptions x;

-- name: phi_access
SELECT '[' || coalesce(string_agg(to_json({
    'access': a.access, 'at': strftime(a.occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'worker_id': a.worker_id, 'permit_id': a.permit_id, 'operation': a.operation,
    'outcome': a.outcome, 'detail': a.detail,
    'evidence': [a.partition || ':' || a.ledger_index]})::VARCHAR, ','
    ORDER BY a.occurred_at, a.partition, a.ledger_index), '') || ']'
FROM r_phi_access a;

-- name: erasures
SELECT '[' || coalesce(string_agg(to_json({
    'at': strftime(x.occurred_at, '%Y-%m-%dT%H:%M:%S.%fZ'), 'subject_ref': x.subject_ref,
    'requested_by': x.requested_by, 'legal_basis': x.legal_basis,
    'evidence': [x.partition || ':' || x.ledger_index]})::VARCHAR, ','
    ORDER BY x.occurred_at, x.partition, x.ledger_index), '') || ']'
FROM r_erasures_in x;

-- name: processing
SELECT '[' || coalesce(string_agg(to_json({
    'activity': activity, 'data_categories': data_categories, 'purposes': purposes,
    'operations': operations, 'recipients': recipients, 'regions': regions,
    'environments': environments, 'retention_days': retention_days,
    'min_level': min_level, 'max_level': max_level, 'changes': changes,
    'first_seen': strftime(first_seen, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'last_seen': strftime(last_seen, '%Y-%m-%dT%H:%M:%S.%fZ'),
    'example_changes': example_changes})::VARCHAR, ',' ORDER BY activity), '') || ']'
FROM r_processing;
