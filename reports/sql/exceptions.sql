-- Exceptions: one row per finding, with the ledger event that shows it. Codes are stable
-- (reports/frameworks.py EXCEPTIONS says what each means). Emergency changes are judged by
-- their post-incident review only; ticketless changes by their missing approval only.
CREATE OR REPLACE TEMP TABLE r_exceptions AS
WITH ct AS (SELECT c.*, t.* EXCLUDE (change_id) FROM r_changes c JOIN r_timeline t USING (change_id))
SELECT * FROM (
    SELECT change_id, 'no_approval' AS code,
           CASE WHEN kind = 'unpermitted'
                THEN 'executed with no permit' ||
                     coalesce(' (it names ' || named_permit || ', which does not exist)', '')
                ELSE 'deployment started ' || strftime(deployed_at, '%Y-%m-%dT%H:%M:%SZ') ||
                     ' but the permit was never approved (state ' || coalesce(state, '?') || ')'
           END AS detail,
           deployed_event AS event_id, deployed_partition AS partition,
           deployed_index AS ledger_index
    FROM ct WHERE kind <> 'emergency' AND deployed_at IS NOT NULL AND approved_at IS NULL
    UNION ALL
    SELECT change_id, 'late_approval',
           'approved ' || strftime(approved_at, '%Y-%m-%dT%H:%M:%SZ') ||
           ', after deployment started ' || strftime(deployed_at, '%Y-%m-%dT%H:%M:%SZ'),
           approved_event, approved_partition, approved_index
    FROM ct WHERE kind = 'permit' AND deployed_at IS NOT NULL AND approved_at IS NOT NULL
      AND (approved_at > deployed_at OR (approved_at = deployed_at
           AND approved_partition = deployed_partition AND approved_index > deployed_index))
    UNION ALL
    SELECT c.change_id, 'self_approval',
           'approved by ' || a.approver_id || ' as ' || coalesce(a.approver_role, '?') || ', who ' ||
           CASE WHEN a.approver_id = c.requested_by THEN 'requested it' ELSE 'ran it' END,
           a.event_id, a.partition, a.ledger_index
    FROM r_changes c JOIN c_approvals a ON a.permit_id = c.change_id
    WHERE c.kind = 'permit' AND a.status = 'signed' AND a.decision = 'approve'
      AND (a.approver_id = c.requested_by OR a.approver_id = c.worker_id)
    UNION ALL
    SELECT c.change_id, 'level_below_minimum',
           'Level ' || c.level || ' for a change the decision tags ' || p.p_framework ||
           ', which requires Level ' || p.p_min_level,
           c.decision_event_id, c.decision_partition, c.decision_index
    FROM r_changes c, _params p WHERE c.tagged AND c.level < p.p_min_level
    UNION ALL
    SELECT change_id, 'missing_rollback_plan',
           'Level ' || level || ' permit without a rollback plan with steps and verification',
           request_event_id, request_partition, request_index
    FROM ct, _params p WHERE kind = 'permit' AND level >= p.p_plan_from_level AND NOT plan_ok
    UNION ALL
    SELECT change_id, 'missing_test_evidence',
           'the decision requires test_results; neither the request nor an execution report '
           || 'carries any', request_event_id, request_partition, request_index
    FROM ct WHERE kind = 'permit' AND list_contains(required_artefacts, 'test_results')
      AND (approved_at IS NOT NULL OR deployed_at IS NOT NULL) AND NOT tested
    UNION ALL
    SELECT c.change_id, 'violation',
           v.rule || ' (' || coalesce(v.severity, '?') || ', ' || coalesce(v.action, '?') || '): '
           || coalesce(v.message, ''), v.event_id, v.partition, v.ledger_index
    FROM r_changes c JOIN c_violations v ON v.permit_id = c.change_id
    UNION ALL
    SELECT NULL, 'violation',
           v.rule || ' (' || coalesce(v.severity, '?') || ', ' || coalesce(v.action, '?') || ') by '
           || coalesce(v.worker_id, '?') || ' under no permit: ' || coalesce(v.message, ''),
           v.event_id, v.partition, v.ledger_index
    FROM r_violations v, _params p
    WHERE p.p_all_changes AND v.occurred_at >= {start} AND v.occurred_at < {end}
      AND NOT EXISTS (SELECT 1 FROM r_permit_requests r WHERE r.permit_id = v.permit_id)
      AND NOT EXISTS (SELECT 1 FROM r_overrides o WHERE o.override_id = v.permit_id)
    UNION ALL
    SELECT change_id, 'emergency_without_review',
           'no post-incident review' || coalesce(', due ' ||
               strftime(review_due_at, '%Y-%m-%dT%H:%M:%SZ'), ''), request_event_id,
           request_partition, request_index
    FROM ct, _params p WHERE kind = 'emergency' AND reviewed_at IS NULL
      AND (review_due_at IS NULL OR review_due_at <= {as_of})
    UNION ALL
    SELECT change_id, 'retention_below_requirement',
           'kept ' || retention_days || ' days; ' || p.p_framework || ' requires ' ||
           p.p_retention_days, decision_event_id, decision_partition, decision_index
    FROM r_changes, _params p WHERE tagged AND retention_days >= 0
      AND retention_days < p.p_retention_days
);
